"""The console's templates (Jinja2, autoescaped: whatever a buyer, a marketplace or a partner
wrote is text on every page) and the helpers they use: the two languages, local times, links
under the console's base path."""

from __future__ import annotations

from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import jinja2

from chalicelib.console.i18n import WORDS, word
from chalicelib.cs import templates as messages
from chalicelib.cs.alerts import Severity
from chalicelib.cs.cases import OUTCOMES
from chalicelib.cs.channels import Language

TEMPLATES = Path(__file__).with_name("templates")
ZONE = ZoneInfo("Asia/Shanghai")  # CS works in China time, as the rota and the cut-offs do
SEVERITIES = [s.value for s in sorted(Severity, key=lambda s: s.rank, reverse=True)]


@cache
def environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES),
                             autoescape=True,
                             trim_blocks=True, lstrip_blocks=True)
    env.filters["local"] = local_time
    env.globals["query"] = query_string
    return env


def local_time(value: Any) -> str:
    """An ISO or datetime moment as China time, to the minute; anything else as it is."""
    if isinstance(value, str) and value:
        text: str = value
        try:
            value = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            return text
    if isinstance(value, datetime) and value.tzinfo is not None:
        return str(value.astimezone(ZONE).strftime("%Y-%m-%d %H:%M"))
    return "" if value is None else str(value)


def query_string(values: dict[str, Any], **changes: Any) -> str:
    """`values` with `changes`, empty ones left out, as a query string (with its '?')."""
    merged = {k: v for k, v in {**values, **changes}.items() if v not in (None, "")}
    return "?" + urlencode(merged) if merged else ""


def render(name: str, language: Language, **context: Any) -> str:
    def t(key: str, **values: Any) -> str:
        text = word(key, language)
        return text.format(**values) if values else text

    def case_label(kind: str) -> str:
        return messages.label(kind, language)

    def severity_label(severity: str) -> str:
        return messages.SEVERITY_LABEL[language][Severity(severity)]

    return environment().get_template(name).render(
        t=t, known=lambda key: key in WORDS, lang=language.value, case_label=case_label,
        severity_label=severity_label, severities=SEVERITIES, outcomes=OUTCOMES, **context)
