"""The reports on the command line (the logic is chalicelib/flows/report_mail.py and
chalicelib/flows/reports.py; this only reads arguments and prints).

    python -m chalicelib.admin --stage local report show --kind daily --day 2026-12-07
    python -m chalicelib.admin --stage local report send --kind monthly --day 2026-11-15

`--day` is any Asia/Shanghai day of the period (default: today): the daily report of that day,
the weekly of its Friday-to-Thursday week, the monthly of its month. `show` computes the report
and prints its figures; `send` mails it to the report channel (REPORT_RULES_JSON `channel`,
default `email:manager`) now, even if it was sent, and leaves the schedule's sent-markers as
they were; a period not over yet is labelled "to date".
"""

from __future__ import annotations

import argparse
from datetime import date

from chalicelib.admin import connection
from chalicelib.core.clock import utcnow
from chalicelib.flows import report_mail
from chalicelib.flows.reports import build_report
from chalicelib.reports import periods, render
from chalicelib.reports.model import Report, local_day

COMMAND = "report"


def run(argv: list[str] | None) -> bool:
    """Run `argv` if it is a report command (False: it is not; the caller parses it)."""
    known = connection.command_word(argv)
    if known.command != COMMAND:
        return False
    args = _parser().parse_args(known.rest)
    connection.connect(known.stage)
    connection.stage_environment(known.stage)
    now = utcnow()
    period = periods.period_of(args.kind, args.day or local_day(now))
    if args.action == "show":
        _print(build_report(period, now), to_date=now < period.end_at)
    else:
        sent = report_mail.send_report(period, now, again=True)
        assert sent is not None  # `again` always sends
        print(f"sent {sent.subject} to {periods.report_rules().channel}: "
              f"message {sent.message_id}")
    return True


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m chalicelib.admin [--stage STAGE] report",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    actions = parser.add_subparsers(dest="action", required=True)
    for action, words in (("show", "compute a report and print its figures"),
                          ("send", "mail a report now, even if it was sent")):
        command = actions.add_parser(action, help=words)
        command.add_argument("--kind", required=True, choices=periods.KINDS)
        command.add_argument("--day", type=date.fromisoformat, default=None,
                             help="a day of the period, YYYY-MM-DD (default: today, Shanghai)")
    return parser


def _print(report: Report, to_date: bool) -> None:
    print(render.subject(report, to_date))
    if not report.sections:
        print("(no sections)")
    for section in report.sections:
        print(section.title)
        for figure in section.figures:
            print(f"  {figure.label}: {render.shown(figure)}")
    print(f"({report.reads} DynamoDB pages read)")
