"""The reports' sent-markers, in the jobs table beside the returns registers' (a partner id has
no `#`, so these keys are nobody's):

  pk = REPORT#<kind>  sk = PERIOD#<start>   building, sending or sent

The returns register's pattern (warehouse/job_store.py mark_register), with one step more, so
that a run that dies after SES took the mail never sends it twice:

  claim     put `building` (if absent, or a `building` claim older than the lease): the report
            is computed and the message built; a failure gives the claim back (`release`), a
            death leaves it to lapse, and a later run builds it again;
  sending   `building` -> `sending`, only by the holder of the claim (its token), just before
            the mail goes: from here the mail may have gone, so no run takes the period over,
            lapsed or not (`state` shows it; an operator looks in the mailbox and sends it
            by hand if it is not there: admin `report send`);
  sent      when SES answered with a message id. SES refusing the mail (an error answer:
            nothing was sent) gives the claim back too.
"""

from __future__ import annotations

import secrets
from datetime import date, datetime, timedelta
from typing import Any

from chalicelib.core import aws
from chalicelib.core.clock import iso
from chalicelib.core.dynamodb import from_attrs, is_condition_failure, to_attrs
from chalicelib.core.settings import settings
from chalicelib.reports.model import Kind

BUILDING, SENDING, SENT = "building", "sending", "sent"


def _table() -> str:
    return settings().jobs_table


def _key(kind: Kind, start: date) -> dict[str, Any]:
    return {"pk": f"REPORT#{kind}", "sk": f"PERIOD#{start.isoformat()}"}


def _conditional_put(item: dict[str, Any], condition: str, names: dict[str, str],
                     values: dict[str, Any]) -> bool:
    from botocore.exceptions import ClientError

    try:
        aws.client("dynamodb").put_item(
            TableName=_table(), Item=to_attrs(item), ConditionExpression=condition,
            ExpressionAttributeNames=names, ExpressionAttributeValues=to_attrs(values))
    except ClientError as error:
        if is_condition_failure(error):
            return False
        raise
    return True


def claim(kind: Kind, start: date, now: datetime, lease: timedelta) -> str | None:
    """Claim the building of a period's report: its token, or None if it was sent, is being
    sent, or another run claimed it less than `lease` ago."""
    token = secrets.token_hex(8)
    item = {**_key(kind, start), "state": BUILDING, "claimed_at": iso(now), "token": token}
    done = _conditional_put(item, "attribute_not_exists(pk) OR (#s = :building AND "
                                  "claimed_at < :t)", {"#s": "state"},
                            {":building": BUILDING, ":t": iso(now - lease)})
    return token if done else None


def sending(kind: Kind, start: date, token: str, now: datetime) -> bool:
    """The claim's holder is about to send: False if its claim lapsed and was taken over."""
    item = {**_key(kind, start), "state": SENDING, "sending_at": iso(now), "token": token}
    return _conditional_put(item, "#s = :building AND #t = :token",
                            {"#s": "state", "#t": "token"},
                            {":building": BUILDING, ":token": token}) if token else False


def mark_sent(kind: Kind, start: date, now: datetime, message_id: str) -> None:
    """No later run sends this period's report."""
    aws.client("dynamodb").put_item(TableName=_table(), Item=to_attrs({
        **_key(kind, start), "state": SENT, "sent_at": iso(now), "message_id": message_id}))


def release(kind: Kind, start: date, token: str) -> None:
    """Give back a claim whose building (or whose refused sending) failed: the next run tries
    again. Only our own claim: one taken over since is left alone."""
    from botocore.exceptions import ClientError

    try:
        aws.client("dynamodb").delete_item(
            TableName=_table(), Key=to_attrs(_key(kind, start)),
            ConditionExpression="#t = :token AND #s IN (:building, :sending)",
            ExpressionAttributeNames={"#s": "state", "#t": "token"},
            ExpressionAttributeValues=to_attrs({":token": token, ":building": BUILDING,
                                                ":sending": SENDING}))
    except ClientError as error:
        if not is_condition_failure(error):
            raise


def state(kind: Kind, start: date) -> dict[str, Any] | None:
    """The period's marker (state, when, the message id), if any."""
    answer = aws.client("dynamodb").get_item(TableName=_table(),
                                             Key=to_attrs(_key(kind, start)),
                                             ConsistentRead=True)
    item = from_attrs(answer.get("Item", {}))
    return {k: v for k, v in item.items() if k not in ("pk", "sk")} if item else None
