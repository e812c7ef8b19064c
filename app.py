"""Chalice app: registers the API blueprints and the event handlers, nothing else.

Handler bodies import their service lazily, so a webhook request loads only what it needs.
"""

from __future__ import annotations

import gc
import logging
import os
from typing import Any

# pydantic looks for plugins when it builds its first model: it reads the entry points of every
# distribution installed (each one's metadata, from disk), at every cold start. This app has no
# pydantic plugin. (Set the variable to "" to have them looked for again.)
os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
# Importing the app creates some 70,000 objects that live as long as the process
# (modules, classes, pydantic's validators, botocore's), and the cyclic collector, triggered by
# allocations, would scan them again and again while they are created (about a hundred
# collections, some of them full ones). Next to none of it is garbage (some 700 objects, kept
# once): collection is off until the app is set up, and those objects are then frozen out of
# the collector's reach (below).
_collecting = gc.isenabled()  # (a host that turned collection off keeps it off)
gc.disable()

# (E402: imported once the lines above have run, on purpose.)
from chalice.app import Chalice, DynamoDBEvent, Rate, SQSEvent  # noqa: E402

from chalicelib.api import chalice_errors, couriers, cs, warehouse, webhooks  # noqa: E402
from chalicelib.console import routes as console_routes  # noqa: E402
from chalicelib.core import observability  # noqa: E402

app = Chalice(app_name="order-backbone")
app.log.setLevel(logging.INFO)
logging.getLogger("chalicelib").setLevel(logging.INFO)
# JSON log lines carrying the work's ids, and metrics flushed once per invocation, for every
# route and event handler (chalicelib/core/observability.py).
observability.install(app)
# Chalice's own answers (wrong method, unsupported media type) in the error contract, for every
# blueprint's routes.
app.register_middleware(chalice_errors, "http")
# The console's file uploads (courier bills): API Gateway passes such a body base64-encoded,
# bytes intact, instead of as UTF-8 text (chalicelib/console/uploads.py).
app.api.binary_types.append("multipart/form-data")
app.register_blueprint(webhooks.bp)
app.register_blueprint(warehouse.bp)
app.register_blueprint(cs.bp)
app.register_blueprint(couriers.bp)
app.register_blueprint(console_routes.bp)
# Everything imported so far lives as long as the process: frozen (never scanned by a
# collection), and the collector is back on for what requests allocate.
gc.freeze()
if _collecting:
    gc.enable()

# Event source names come from the environment (wired from infra/resources.yaml locally);
# `chalice package` points them at the template's resources through that same file.
INBOX_STREAM_ARN = os.environ.get(
    "INBOX_STREAM_ARN",
    "arn:aws:dynamodb:us-east-1:123456789012:table/order-backbone-dev-inbox/stream/placeholder",
)
INBOX_DLQ_NAME = os.environ.get("INBOX_DLQ_NAME", "order-backbone-dev-inbox-dlq")
ALERTS_QUEUE_NAME = os.environ.get("ALERTS_QUEUE_NAME", "order-backbone-dev-alerts")
ALERTS_DLQ_NAME = os.environ.get("ALERTS_DLQ_NAME", "order-backbone-dev-alerts-dlq")
AMAZON_QUEUE_NAME = os.environ.get("AMAZON_QUEUE_NAME", "order-backbone-dev-amazon-notifications")
AMAZON_DLQ_NAME = os.environ.get("AMAZON_DLQ_NAME",
                                 "order-backbone-dev-amazon-notifications-dlq")


@app.on_dynamodb_record(stream_arn=INBOX_STREAM_ARN, batch_size=25,
                        starting_position="TRIM_HORIZON")
def order_worker(event: DynamoDBEvent) -> dict[str, Any]:
    """Stored deliveries become orders and jobs, exactly once (partial batch responses)."""
    from chalicelib.flows import order_worker

    return order_worker.on_stream(event.to_dict(), event.context)


@app.on_sqs_message(queue=INBOX_DLQ_NAME, batch_size=10)
def inbox_dead_letters(event: SQSEvent) -> dict[str, Any]:
    """The order worker gave up on a stream batch: CS hears (the deliveries stay pending)."""
    from chalicelib.flows import dead_letters

    return dead_letters.on_dead_letters(event.to_dict(), event.context)


@app.on_sqs_message(queue=ALERTS_QUEUE_NAME, batch_size=10)
def alert_dispatch(event: SQSEvent) -> dict[str, Any]:
    """Every alert becomes (part of) one CS case; a new or escalated case gets its notes."""
    from chalicelib.flows import alert_dispatch

    return alert_dispatch.on_queue(event.to_dict(), event.context)


@app.on_sqs_message(queue=ALERTS_DLQ_NAME, batch_size=10)
def alert_dead_letters(event: SQSEvent) -> dict[str, Any]:
    """An alert the dispatcher gave up on: kept where the CS API lists it, never dropped."""
    from chalicelib.flows import alert_dispatch

    return alert_dispatch.on_dead_letters(event.to_dict(), event.context)


@app.on_sqs_message(queue=AMAZON_QUEUE_NAME, batch_size=10)
def amazon_notifications(event: SQSEvent) -> dict[str, Any]:
    """Amazon SP-API ORDER_CHANGE messages: stored in the inbox like a webhook, then deleted."""
    from chalicelib.flows import feeds

    return feeds.on_amazon_queue(event.to_dict(), event.context)


@app.on_sqs_message(queue=AMAZON_DLQ_NAME, batch_size=10)
def amazon_dead_letters(event: SQSEvent) -> dict[str, Any]:
    """Amazon notifications their queue gave up on: each a CS case with its text, never dropped."""
    from chalicelib.flows import dead_letters

    return dead_letters.on_amazon_dead_letters(event.to_dict(), event.context)


@app.schedule(Rate(1, unit=Rate.MINUTES))
def poll_taobao(event: Any) -> None:
    """Taobao/Tmall TMC: consume each app's messages, store them, confirm the stored ones."""
    from chalicelib.flows import feeds

    feeds.on_schedule(event.context)


@app.schedule(Rate(1, unit=Rate.MINUTES))
def notify_cs(event: Any) -> None:
    """Send what the outbox holds (rate limits, digests, retries, fallback), remind the rest."""
    from chalicelib.flows import notifier

    notifier.on_schedule(event.context)


@app.schedule(Rate(5, unit=Rate.MINUTES))
def sweep_unprocessed(event: Any) -> None:
    """Deliveries still pending after the pickup deadline: CS hears, and each is re-driven."""
    from chalicelib.flows import order_worker

    order_worker.on_schedule()


@app.schedule(Rate(5, unit=Rate.MINUTES))
def sweep_deadlines(event: Any) -> None:
    """Acceptance, dispatch and intercept deadlines: CS hears of what is late."""
    from chalicelib.flows import warehouse

    warehouse.on_schedule()


@app.schedule(Rate(1, unit=Rate.MINUTES))
def track_parcels(event: Any) -> None:
    """Subscribe, query or judge the parcels whose check is due (an index read when none is)."""
    from chalicelib.flows import tracker

    tracker.on_schedule(event.context)


@app.schedule(Rate(1, unit=Rate.MINUTES))
def write_back(event: Any) -> None:
    """Tell the marketplaces of the shipments due (retries back off; a give-up is a CS case)."""
    from chalicelib.flows import writeback

    writeback.on_schedule(event.context)


@app.schedule(Rate(15, unit=Rate.MINUTES))
def reconcile_shops(event: Any) -> None:
    """Every platform recommends it: list each shop's recent orders and queue what we missed."""
    from chalicelib.flows import reconciliation

    reconciliation.on_schedule(event.context)


@app.schedule(Rate(5, unit=Rate.MINUTES))
def send_returns_register(event: Any) -> None:
    """The day's returns register to sales, once, after the registration window closes (15
    minutes past 14:30 local: the first run after that sends it)."""
    from chalicelib.flows import returns_register

    returns_register.on_schedule()
