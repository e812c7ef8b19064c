"""The labels the print gate hands back (`waybills` in a print or wave answer), written to files
a person or a print spooler opens: a Kuaidi100 label as the image or PDF it is, a platform
channel's label (Cainiao, Douyin) as its encrypted print data with the template, which only the
platform's print component can render (hand the file to it)."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

_SAFE = re.compile(r"[^A-Za-z0-9_-]")
_SUFFIX = {"pdf": ".pdf", "png": ".png"}


def save_labels(waybills: Iterable[Mapping[str, Any]], directory: Path) -> list[Path]:
    """One file per waybill, named after its number (a reprint overwrites it); the paths."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for waybill in waybills:
        label = waybill.get("label") or {}
        name = _SAFE.sub("_", str(waybill.get("waybill_number") or "unnumbered"))
        kind = str(label.get("format", ""))
        if kind in _SUFFIX and label.get("content_base64"):
            path = directory / f"{name}{_SUFFIX[kind]}"
            path.write_bytes(base64.b64decode(label["content_base64"]))
        else:
            path = directory / f"{name}.{_SAFE.sub('_', kind) or 'label'}.json"
            path.write_text(json.dumps({
                "waybill_number": waybill.get("waybill_number"),
                "provider": waybill.get("provider"), "format": kind,
                "print_data": label.get("print_data", ""),
                "template_url": label.get("template_url", ""), "url": label.get("url", ""),
            }, ensure_ascii=False, indent=2), encoding="utf-8")
        written.append(path)
    return written
