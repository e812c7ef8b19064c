"""The operator's commands on the pipeline: what is stuck in the inbox, and putting it through
again (the logic is chalicelib/flows/redrive.py; this only reads arguments and prints).

    python -m chalicelib.admin --stage dev pending [--limit 20] [--newest-first] [--after CURSOR]
    python -m chalicelib.admin --stage dev replay SOURCE DELIVERY_ID [--force] [--dry-run]
    python -m chalicelib.admin --stage dev redrive inbox|alerts|amazon [--dry-run] [--max 100]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from datetime import datetime, timedelta

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.admin import connection
from chalicelib.core.clock import utcnow
from chalicelib.flows import redrive

COMMANDS = ("pending", "replay", "redrive")


def run(argv: list[str] | None) -> bool:
    """Run `argv` if it is one of these commands (False: it is not; the caller parses it)."""
    known = connection.command_word(argv)
    if known.command not in COMMANDS:
        return False
    args = _parser().parse_args([known.command, *known.rest])
    stage = args.stage or known.stage
    connection.connect(stage)
    connection.stage_environment(stage)
    if args.command == "pending":
        _pending(args)
    elif args.command == "replay":
        _replay(args, stage)
    else:
        _redrive(args, stage)
    return True


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m chalicelib.admin [--stage STAGE]",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    pending = commands.add_parser(
        "pending", help="the inbox's deliveries not yet applied (no bodies)",
        description="The inbox's deliveries the order worker has not applied: source, delivery "
                    "id, when received, age, and whether CS was alerted. Bodies are never "
                    "shown: they may carry buyer data.")
    pending.add_argument("--limit", type=_count(1000), default=20,
                         help="deliveries per page (default 20, at most 1000)")
    pending.add_argument("--newest-first", action="store_true",
                         help="newest first (default: oldest first, the longest stuck)")
    pending.add_argument("--after", metavar="CURSOR",
                         help="the next page: the cursor the previous page printed")
    replay = commands.add_parser(
        "replay", help="apply one stored delivery through the order worker",
        description="Apply one stored delivery through the order worker, as the inbox's "
                    "stream would. One already applied changes nothing, and says so; "
                    "--force re-runs one whose outcome was invalid (e.g. after a fix).")
    replay.add_argument("source", help="the delivery's source, or SOURCE#DELIVERY_ID (the "
                        "inbox key a CS alert names)")
    replay.add_argument("delivery_id", nargs="?", help="the delivery id (see pending)")
    replay.add_argument("--force", action="store_true",
                        help="also re-run a delivery whose outcome was invalid")
    replay.add_argument("--dry-run", action="store_true", help="say what it would do")
    again = commands.add_parser(
        "redrive", help="put a dead-letter queue's messages through again",
        description="alerts, amazon: move the dead-letter queue's messages back to the queue "
                    "whose redrive policy names it, body and attributes as they were (its "
                    "consumer deduplicates). inbox: its messages are Lambda's on-failure "
                    "records, which name a batch of the inbox's stream, not a message to send "
                    "back (a stream cannot be written to): the deliveries the batch names are "
                    "applied through the order worker here, as `replay` does (read from the "
                    "stream while it keeps them, 24 h; after that, every delivery still "
                    "pending received by the batch's end), and the record is deleted once "
                    "none is left pending.")
    again.add_argument("queue", choices=sorted(connection.QUEUES),
                       help="which dead-letter queue")
    again.add_argument("--dry-run", action="store_true",
                       help="list what would move (or be applied) and leave it")
    again.add_argument("--max", type=_count(10_000), default=100,
                       help="messages to take at most (default 100)")
    for command in (pending, replay, again):
        command.add_argument("--stage", help=argparse.SUPPRESS)  # also after the command
    return parser


def _count(most: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        value = int(text)
        if not 1 <= value <= most:
            raise argparse.ArgumentTypeError(f"from 1 to {most}")
        return value
    return parse


# --- pending ---------------------------------------------------------------------------------


def _pending(args: argparse.Namespace) -> None:
    try:
        page = redrive.pending(utcnow(), newest_first=args.newest_first, limit=args.limit,
                               cursor=args.after)
    except ValueError as exc:
        sys.exit(f"--after: {exc}")
    if not page.deliveries:
        print("no deliveries pending" + (" after that cursor" if args.after else ""))
        return
    rows = [("SOURCE", "DELIVERY ID", "RECEIVED (UTC)", "AGE", "ALERTED (UTC)")]
    rows += [(d.source, d.delivery_id, _when(d.received_at), age(d.age),
              _when(d.alerted_at) if d.alerted_at else "no") for d in page.deliveries]
    widths = [max(len(row[n]) for row in rows) for n in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
              .rstrip())
    order = "newest" if args.newest_first else "oldest"
    more = (f"; next page: --after {page.cursor}" if page.cursor else "; no more")
    print(f"{len(page.deliveries)} shown, {order} first{more}")


def _when(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def age(span: timedelta) -> str:
    """A span the way an operator reads it: 45s, 12m, 3h05m, 2d04h."""
    seconds = max(0, int(span.total_seconds()))
    days, seconds = divmod(seconds, 86400)
    hours, seconds = divmod(seconds, 3600)
    minutes, seconds = divmod(seconds, 60)
    if days:
        return f"{days}d{hours:02d}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m" if minutes else f"{seconds}s"


# --- replay ----------------------------------------------------------------------------------


def _replay(args: argparse.Namespace, stage: str) -> None:
    if args.delivery_id:
        key = f"{args.source}#{args.delivery_id}"
    elif "#" in args.source:
        key = args.source
    else:
        sys.exit("replay needs SOURCE DELIVERY_ID (or SOURCE#DELIVERY_ID)")
    if not args.dry_run:
        connection.alerts_topic(stage)  # an invalid order is alerted, as in the worker
    try:
        result = redrive.replay(key, utcnow(), force=args.force, dry_run=args.dry_run)
    except (BotoCoreError, ClientError):
        raise  # the command line's one line (cli.main)
    except Exception as exc:  # the worker raises only what may pass: the platform, a conflict
        fault = " ".join(str(exc).split())[:300]
        sys.exit(f"{key}: not applied, a temporary fault: {type(exc).__name__}: {fault}; it "
                 "stays pending: try again later")
    print(replay_line(result))
    if result.status in ("refused", "missing"):
        sys.exit(1)


def replay_line(result: redrive.Replay) -> str:
    what = _outcome(result)
    if result.status == "missing":
        return (f"{result.key}: no such delivery in the inbox (it keeps them "
                "DELIVERY_RETENTION_DAYS, default 30 days)")
    if result.status == "applied":
        was = f" (was {result.previous})" if result.previous else ""
        return f"{result.key}: applied now: {what}{was}"
    if result.status == "would_apply":
        return (f"{result.key}: {result.previous}; would be re-run (--force)" if result.previous
                else f"{result.key}: pending; would be applied")
    if result.status == "refused":
        return (f"{result.key}: already applied: {what}; --force re-runs only an invalid "
                "delivery; nothing changed")
    hint = "; --force re-runs it" if result.outcome in redrive.FORCEABLE else ""
    return f"{result.key}: already applied: {what}; nothing changed{hint}"


def _outcome(result: redrive.Replay) -> str:
    text = result.outcome or "?"
    if result.detail:
        text += f" ({result.detail[:200]})"
    if result.processed_at:
        text += f" at {result.processed_at}"
    return text


# --- redrive ---------------------------------------------------------------------------------


def _redrive(args: argparse.Namespace, stage: str) -> None:
    from chalicelib.core import aws

    sqs = aws.client("sqs")
    dlq_name = connection.queue_name(stage, args.queue)
    dlq = sqs.get_queue_url(QueueName=dlq_name)["QueueUrl"]
    if args.queue == "inbox":
        _redrive_inbox(args, stage, dlq_name, dlq)
        return
    try:
        target = redrive.source_queue(dlq)
    except LookupError as exc:
        sys.exit(str(exc))
    describe = redrive.describe_alert if args.queue == "alerts" else redrive.describe_amazon
    moved = redrive.move(dlq, target, dry_run=args.dry_run, limit=args.max, describe=describe)
    print(f"{args.queue}: {dlq_name} -> {target.rsplit('/', 1)[-1]}")
    verb = "would move" if args.dry_run else "moved"
    for message in moved.messages:
        print(f"  {verb} {_message(message)}")
    for message, reason in moved.failed:
        print(f"  NOT moved {_message(message)}: {reason}")
    print(f"{len(moved.messages)} message(s) {verb}"
          + (" (dry run: nothing moved)" if args.dry_run else "")
          + (f"; {len(moved.failed)} left in {dlq_name}" if moved.failed else ""))
    if moved.failed:
        sys.exit(1)


def _redrive_inbox(args: argparse.Namespace, stage: str, dlq_name: str, dlq: str) -> None:
    if not args.dry_run:
        connection.alerts_topic(stage)
    batches = redrive.redrive_inbox(dlq, utcnow(), dry_run=args.dry_run, limit=args.max)
    print(f"inbox: {dlq_name}: Lambda's on-failure records; the deliveries each names are "
          "applied through the order worker here")
    for batch in batches:
        print(f"  record {_message(batch.message)}")
        if batch.named_by:
            print(f"    deliveries: {batch.named_by}")
        for result in batch.replays:
            print(f"    {replay_line(result)}")
        if batch.error:
            print(f"    FAILED {batch.error}; the record stays in {dlq_name}")
        elif batch.deleted:
            print("    record deleted: none of its deliveries is pending")
    kept = [b for b in batches if not b.deleted]
    print(f"{len(batches)} record(s)"
          + (" (dry run: nothing applied or deleted)" if args.dry_run
             else f", {len(batches) - len(kept)} done, {len(kept)} left in the queue"))
    if kept and not args.dry_run:
        sys.exit(1)


def _message(message: redrive.Message) -> str:
    sent = _when(message.sent_at) if message.sent_at else "?"
    return (f"{message.message_id} (sent {sent} UTC, received {message.receives}x): "
            f"{message.summary}")
