"""`make run`: the whole system on this machine, no AWS account, no Docker.

1. moto's server as the local AWS endpoint (in this process, 127.0.0.1 only), and beside it the
   AWS Parameters and Secrets Lambda Extension as the functions reach it in Lambda
   (devstack/parameters_extension.py);
2. the resources from infra/resources.yaml (devstack.provision);
3. fresh webhook secrets in the local SSM, and demo API keys for a partner and a CS agent;
4. the HTTP API as `chalice local --no-autoreload` serves it (devstack/local_api.py, a child
   process);
5. the event runner for the app's stream, queue and schedule handlers (threads here).
Ctrl-C or SIGTERM (what a supervisor, a CI job or a container stop sends) stops all of it.
What `make demo-order` needs is written to .local/run.json.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RUN_FILE = Path(os.environ.get("LOCAL_RUN_FILE", ROOT / ".local" / "run.json"))
log = logging.getLogger("devstack.stack")


def _port(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def _require_free(port: int) -> None:
    with socket.socket() as sock:
        if sock.connect_ex(("127.0.0.1", port)) == 0:
            sys.exit(f"port {port} on 127.0.0.1 is in use; stop what holds it or set "
                     "LOCAL_API_PORT / LOCAL_AWS_PORT")


def _wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the API server exited with code {process.returncode}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise RuntimeError(f"the API server did not listen on port {port} within {timeout} s")


@contextmanager
def local_aws(port: int) -> Iterator[dict[str, str]]:
    from devstack.endpoint import LocalAWS

    env = {
        "AWS_ACCESS_KEY_ID": "local",
        "AWS_SECRET_ACCESS_KEY": "local",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_SESSION_TOKEN": "local-" + secrets.token_hex(8),  # the extension checks it
        "AWS_ACCOUNT_ID_ENDPOINT_MODE": "disabled",
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_READ_TIMEOUT_SECONDS": "30",  # moto is slower than DynamoDB under load
        "WEBHOOK_DEADLINE_SECONDS": "30",  # so a webhook waits for it too
    }
    os.environ.update(env)
    server = LocalAWS(port)
    server.start()
    try:
        yield env
    finally:
        server.stop()


def seed() -> dict[str, Any]:
    """Secrets for this run only (never in the repo) and the demo principals' keys."""
    from chalicelib.access import accounts_store as accounts
    from chalicelib.access import directory_store as directory
    from chalicelib.access.keys import Role, hash_key, new_key
    from chalicelib.core.clock import utcnow
    from chalicelib.core.settings import settings

    shopify_secret = "shpss_" + secrets.token_hex(16)
    standard_secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
    sources = {
        "shopify": {"scheme": "shopify", "secrets": [shopify_secret]},
        "erp": {"scheme": "standard", "secrets": [standard_secret]},
    }
    settings.cache_clear()
    accounts.register_sources(sources)
    keys = {}
    for kind, principal, role in (("partner", settings().warehouse_partner, Role.PARTNER),
                                  ("staff", "cs-demo", Role.BACK_OFFICE)):
        key = new_key()
        directory.add_key(hash_key(key), kind, principal, role, utcnow())
        keys[principal] = key
    return {"sources": sources, "partner_key": keys[settings().warehouse_partner],
            "cs_key": keys["cs-demo"], "partner": settings().warehouse_partner}


def start_api(port: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """`chalice local --no-autoreload`, answering an unknown route in the error contract
    (devstack/local_api.py)."""
    return subprocess.Popen(
        [sys.executable, "-m", "devstack.local_api", "--host", "127.0.0.1", "--port", str(port),
         "--stage", "local"],
        cwd=ROOT, env={**os.environ, **env}, start_new_session=True,
    )


def stop_api(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def start_events(env: dict[str, str]) -> Any:
    """The event runner, with schedules LOCAL_SCHEDULE_SPEEDUP (default 12) times as often, so
    the 1-minute tracking tick keeps up with the compressed journeys (every 5 s)."""
    import boto3

    from chalicelib.core.clock import utcnow
    from devstack.events import EventRunner

    speedup = float(os.environ.get("LOCAL_SCHEDULE_SPEEDUP", 12))
    started = utcnow()

    sys.path.insert(0, str(ROOT))
    import app as app_module  # after the environment names the local resources

    # Each function's context has its configured timeout (a scheduled run works to it), and a
    # failed scheduled run is not retried: as deployed (EventInvokeConfig, infra/).
    config = json.loads((ROOT / ".chalice" / "config.json").read_text())
    runner = EventRunner(app_module.app, app_module, boto3.session.Session(),
                         stream_failure_queue_url=env["INBOX_DLQ_URL"],
                         clock=lambda: started + (utcnow() - started) * speedup,
                         chalice_config=config, schedule_retry_delays=())
    runner.start()
    return runner


def time_scale() -> float:
    """How much faster parcels travel locally: at 720, a 3-day journey takes 6 minutes."""
    return float(os.environ.get("LOCAL_TIME_SCALE", 720))


def scaled_tracking_rules(scale: float) -> str:
    """The tracking rules with every duration divided by `scale` (TRACKING_RULES_JSON), so
    the tracker judges the simulated courier's compressed journeys by the same rules. Quiet
    hours and the morning check are dropped (a compressed night is not a night); a second
    failed attempt opens its case whatever the day, so no day needs faking for it."""
    from datetime import time as clock_time
    from datetime import timedelta

    from pydantic import BaseModel

    from chalicelib.tracking.watch import TrackingRules

    def shrink(value: Any) -> Any:
        if isinstance(value, timedelta):
            return value / scale
        if isinstance(value, BaseModel):
            return value.model_copy(update={k: shrink(getattr(value, k))
                                            for k in type(value).model_fields})
        if isinstance(value, dict):
            return {k: shrink(v) for k, v in value.items()}
        return value

    rules: TrackingRules = shrink(TrackingRules())
    # Times of day mean nothing on a compressed clock: no quiet hours, no morning check.
    policy = rules.policy.model_copy(update={"quiet_from": clock_time(0),
                                             "quiet_until": clock_time(0),
                                             "morning_check": None, "retry_another_day": False})
    return rules.model_copy(update={"policy": policy}).model_dump_json()


def start_courier(api_url: str, scale: float) -> Any:
    """The simulated Kuaidi100 (devstack/courier.py), registered as our account."""
    from chalicelib.access import accounts_store as accounts
    from chalicelib.tracking.couriers import source_name
    from devstack.courier import CourierSimulator

    customer, key, salt = "LOCAL" + secrets.token_hex(4), secrets.token_hex(16), \
        secrets.token_hex(8)
    label_secret = secrets.token_hex(16)
    courier = CourierSimulator(customer=customer, key=key, time_scale=scale,
                               label_secret=label_secret)
    courier.start()
    courier.run_pushes(every_seconds=1.0)
    accounts.register_sources({source_name("kuaidi100"): {
        "scheme": "kuaidi100", "secrets": [salt], "options": {
            "customer": customer, "key": key, "query_url": courier.query_url,
            "subscribe_url": courier.subscribe_url,
            "callback_url": f"{api_url}/couriers/kuaidi100/push"}},
        # Its electronic waybills (label/order): used once WAYBILL_RULES_JSON names a sender.
        source_name("waybills-kuaidi100"): {
            "scheme": "kuaidi100-label", "secrets": [label_secret], "options": {
                "key": key, "partnerId": "STO-LOCAL", "label_url": courier.label_url}}})
    return courier


LOCAL_DOMAIN = "backbone.local"


def start_im_sink() -> Any:
    """The CS team's IM robots and mailbox, locally: an IM sink that prints every message as
    the platform shows it (devstack/im_sink.py), and SES on the local endpoint (sent mail
    readable at <aws>/moto-api/data.json). The rota's default channels point at them."""
    import boto3

    from chalicelib.flows import notifier
    from devstack.im_sink import ImSink

    secret = "SEC" + secrets.token_hex(16)
    # It logs every message it shows (logger devstack.im_sink) into this terminal.
    sink = ImSink({"cs-manager": secret}, names={"cs-team": "CS team", "cs-manager": "manager"})
    sink.start()
    boto3.client("ses").verify_domain_identity(Domain=LOCAL_DOMAIN)
    notifier.configure_channels({
        "wecom:cs-team": {"webhook_url": sink.url_for("wecom", "cs-team")},
        "dingtalk:cs-manager": {"webhook_url": sink.url_for("dingtalk", "cs-manager"),
                                "secret": secret},
        "email:cs-team": {"sender": f"CS alerts <alerts@{LOCAL_DOMAIN}>",
                          "verified_identities": [LOCAL_DOMAIN],
                          "to": [f"cs-team@{LOCAL_DOMAIN}"]},
        # Sales' mailbox: the daily returns register (RETURNS_RULES_JSON register_channel).
        "email:sales": {"sender": f"Returns register <returns@{LOCAL_DOMAIN}>",
                        "verified_identities": [LOCAL_DOMAIN], "to": [f"sales@{LOCAL_DOMAIN}"]},
        # The manager's mailbox: the daily, weekly and monthly reports (REPORT_RULES_JSON
        # channel).
        "email:manager": {"sender": f"Reports <reports@{LOCAL_DOMAIN}>",
                          "verified_identities": [LOCAL_DOMAIN],
                          "to": [f"manager@{LOCAL_DOMAIN}"]},
    })
    return sink


def send_reports_to_date() -> list[str]:
    """The daily, weekly and monthly reports of the periods that hold today (Asia/Shanghai),
    "to date", through the path the schedule and `report send` use, to the manager's mailbox:
    the demo's orders in the reports without waiting for the schedule's times. Their subjects."""
    from chalicelib.core.clock import utcnow
    from chalicelib.flows import report_mail
    from chalicelib.reports import periods
    from chalicelib.reports.model import local_day

    now = utcnow()
    subjects = []
    for kind in periods.KINDS:
        sent = report_mail.send_report(periods.period_of(kind, local_day(now)), now, again=True)
        if sent is not None:
            subjects.append(sent.subject)
    return subjects


def start_reports(stopping: StopSignal) -> None:
    """The reports to date, LOCAL_REPORTS_SECONDS (default 300) after the stack is up, when the
    simulated shops' first orders have been paid and shipped; 0: at once, before READY (the
    end-to-end test's stack, which takes no orders of its own, so the figures stand still)."""
    seconds = float(os.environ.get("LOCAL_REPORTS_SECONDS", 300))

    def send() -> None:
        try:
            for subject in send_reports_to_date():
                log.info("report sent to manager@%s: %s", LOCAL_DOMAIN, subject)
        except Exception:
            log.exception("the reports to date were not sent")

    if seconds <= 0:
        send()
        return

    def later() -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if stopping.wait(1.0):
                return
        send()

    threading.Thread(target=later, name="reports to date", daemon=True).start()


def local_routing() -> str:
    """CS_ROUTING_JSON for make run: the team on WeCom and email, the manager on DingTalk, and
    (the demo runs at any hour) CS online around the clock, reminders after 2 minutes."""
    from datetime import time as clock_time
    from datetime import timedelta

    from chalicelib.cs.rota import Person, RotaRules
    from chalicelib.cs.routing import Routing

    rota = RotaRules(online_from=clock_time(0, 0), online_until=clock_time(23, 59, 59),
                     working_weekdays=frozenset({"mon", "tue", "wed", "thu", "fri", "sat",
                                                 "sun"}),
                     people={"cs-manager": Person(name="On-duty CS manager",
                                                  channels=("dingtalk:cs-manager",))})
    return Routing(rota=rota, remind_after=timedelta(minutes=2),
                   escalate_after=timedelta(minutes=6)).model_dump_json()


# One simulated shop per platform: (platform, shop id as the platform names it).
SHOPS = (("shopify", "demo-brand.myshopify.com"), ("woocommerce", "tea-house.example.cn"),
         ("douyin", "4463798"), ("tiktok_shop", "7494049642642688000"),
         ("shopee", "220011455"), ("lazada", "100023456"),
         ("amazon", "A2Q3Y263D00KWC/ATVPDKIKX0DER"), ("taobao", "栖木家居旗舰店"))
# Taobao masks the receiver (with its OAID) and Douyin encrypts it, as the platforms do: with
# electronic waybills on, their labels come from the platform's own channel (Cainiao, Douyin's
# e-waybill), which decrypts on the printer's side. LOCAL_WAYBILLS=off: sent plain (the factory
# prints its own labels then).
def _shop_options(platform: str) -> dict[str, Any]:
    plain = not waybills_on()
    return {"douyin": {"encrypt_receiver": not plain},
            "taobao": {"mask_receiver": not plain}}.get(platform, {})
# The platforms whose shop access expires (chalicelib/flows/shop_access.py): their local shops
# lend short-lived access tokens (Shopify's expiring offline tokens, Taobao's refreshable
# session as a Fuwu app's), so our renewal runs within minutes of `make run`.
_EXPIRING = {"shopify": {"expiring_tokens": True}, "douyin": {}, "tiktok_shop": {},
             "shopee": {}, "lazada": {}, "taobao": {"refreshable": True}}


def token_seconds() -> int:
    """How long the local shops' access tokens live: LOCAL_TOKEN_SECONDS (default 180; 0 = the
    platforms' own lifetimes, hours to days)."""
    return int(os.environ.get("LOCAL_TOKEN_SECONDS", 180))


def refresh_ahead(seconds: int) -> str:
    """TOKEN_REFRESH_AHEAD_SECONDS for the local functions: a third of the local token life
    (the deployed 15 minutes would renew a 3-minute token on every call)."""
    return os.environ.get("TOKEN_REFRESH_AHEAD_SECONDS") or str(seconds // 3 if seconds else 900)


def _token_options(platform: str) -> dict[str, Any]:
    from datetime import timedelta

    if platform not in _EXPIRING:
        return {}
    seconds = token_seconds()
    life = {"token_life": timedelta(seconds=seconds)} if seconds else {}
    return {**_EXPIRING[platform], **life}


def start_marketplaces(api_url: str) -> list[Any]:
    """A simulated shop on each platform (devstack/marketplaces/), registered as ours:
    its webhook source (secrets) and its credentials in the local SSM, so notifications,
    re-fetches, writebacks and reconciliation all go to it. Notifications are dropped,
    duplicated and reordered at LOCAL_NOTIFY_FAULTS ("drop,duplicate,reorder", default
    "0.1,0.15,0.15"). Access tokens end after LOCAL_TOKEN_SECONDS and are renewed by the
    functions that call the shop (a `token refreshed for ...` line). LOCAL_MARKETPLACES=off
    runs none."""
    from chalicelib.access import accounts_store as accounts
    if os.environ.get("LOCAL_MARKETPLACES", "on") == "off":
        return []
    from chalicelib.marketplaces import credentials_store as shop_credentials
    from devstack.marketplaces import simulator_class
    from devstack.marketplaces.base import Faults

    drop, duplicate, reorder = (float(x) for x in os.environ.get(
        "LOCAL_NOTIFY_FAULTS", "0.1,0.15,0.15").split(","))
    simulators = []
    for platform, shop in SHOPS:
        simulator = simulator_class(platform)(
            shop=shop, webhook_url=_notifications_to(platform, api_url),
            faults=Faults(drop=drop, duplicate=duplicate, reorder=reorder),
            **_shop_options(platform), **_token_options(platform))
        simulator.start()
        if simulator.source() is not None:  # Amazon and Taobao post nothing to us
            accounts.register_sources({platform: simulator.source()})
        shop_credentials.put(platform, shop, simulator.credentials())
        simulators.append(simulator)
    return simulators


def waybills_on() -> bool:
    """Electronic waybills at the print gate (LOCAL_WAYBILLS, default on)."""
    return os.environ.get("LOCAL_WAYBILLS", "on") != "off"


def labels_dir() -> Path:
    """Where the simulated factory writes the labels it prints (LOCAL_LABELS_DIR)."""
    return Path(os.environ.get("LOCAL_LABELS_DIR", ROOT / ".local" / "labels"))


# The factory's warehouse: where every parcel leaves from (the sender on each label).
LOCAL_SENDER = {"name": "栖木家居仓", "phone": "057188880000", "province": "浙江省",
                "city": "杭州市", "district": "余杭区",
                "detail": "仓前街道 文一西路 1500 号 3 号库"}
# The label templates the platform channels' print components render with (names only here).
LOCAL_TEMPLATES = {"cainiao": "http://cloudprint.cainiao.com/template/standard/401/177",
                   "douyin": "STO-76x130"}


def waybill_rules() -> str:
    """WAYBILL_RULES_JSON for make run: the default routes (Taobao through Cainiao, Douyin
    through its e-waybill, the rest through Kuaidi100), STO, and the factory as the sender,
    which turns issuing on."""
    from chalicelib.warehouse.waybills.registry import WaybillRules

    return WaybillRules.model_validate({"sender": LOCAL_SENDER}).model_dump_json()


def register_waybill_channels(simulators: list[Any]) -> None:
    """The platform channels' waybill accounts (`courier/waybills-<provider>`), as the printing
    app holds them: the simulated Taobao shop's Cainiao and the Douyin shop's e-waybill, each
    with an access of its own that outlives the shop's short tokens. (Kuaidi100's is the
    courier simulator's: start_courier.)"""
    from chalicelib.access import accounts_store as accounts
    from chalicelib.tracking.couriers import source_name

    channels = {"taobao": ("cainiao", {"order_channels_type": "TB"}), "douyin": ("douyin", {})}
    for simulator in simulators:
        if simulator.name not in channels:
            continue
        provider, extra = channels[simulator.name]
        credentials = simulator.waybill_credentials()
        secret = credentials.pop("app_secret")
        accounts.register_sources({source_name(f"waybills-{provider}"): {
            "scheme": f"{provider}-waybill", "secrets": [secret],
            "options": {**credentials, **extra, "template_url": LOCAL_TEMPLATES[provider]}}})


def _notifications_to(platform: str, api_url: str) -> str:
    """Where a platform's notifications go: our webhook, or for Amazon our SQS queue (Taobao
    keeps them for our TMC poller; the address is unused)."""
    if platform == "amazon":
        import boto3

        return str(boto3.client("sqs").get_queue_url(
            QueueName=os.environ["AMAZON_QUEUE_NAME"])["QueueUrl"])
    return f"{api_url}/webhooks/{platform}"


def start_shoppers(simulators: list[Any]) -> threading.Event | None:
    """Buyers: every LOCAL_ORDER_SECONDS (default 20; 0 = none) an order on the next platform
    in turn; one in four is placed unpaid and paid a few seconds later."""
    every = float(os.environ.get("LOCAL_ORDER_SECONDS", 20))
    if not simulators or every <= 0:
        return None
    stop = threading.Event()

    def shop_forever() -> None:
        turn = 0
        while not stop.wait(every):
            simulator = simulators[turn % len(simulators)]
            try:
                order = simulator.place_order(paid=turn % 4 != 3)
                if order.status == "unpaid" and not stop.wait(min(every / 2, 5)):
                    simulator.pay(order.external_id)
            except Exception:  # a simulator bug must not end the demo
                log.exception("%s: placing an order failed", simulator.name)
            turn += 1

    threading.Thread(target=shop_forever, name="buyers", daemon=True).start()
    return stop


def start_factory(api_url: str, run: dict[str, Any]) -> threading.Event | None:
    """The reference partner client as a simulated factory, so a newcomer sees jobs move.

    It prints only after LOCAL_FACTORY_PRINT_SECONDS (default 30), leaving time to cancel an
    order before print. LOCAL_FACTORY=off leaves the jobs to you.
    """
    if os.environ.get("LOCAL_FACTORY", "on") == "off":
        return None
    from partner_client.client import WarehouseClient
    from partner_client.factory import SimulatedFactory

    steps = {"accept": 2.0, "print": float(os.environ.get("LOCAL_FACTORY_PRINT_SECONDS", 30)),
             "pick": 5.0, "pack": 5.0, "ship": 15.0}
    issuing = waybills_on()
    factory = SimulatedFactory(WarehouseClient(api_url, run["partner_key"]), step_seconds=steps,
                               intercept_failure_rate=0.0, own_numbers=not issuing,
                               labels_dir=labels_dir() if issuing else None)
    stop = threading.Event()
    threading.Thread(target=factory.run_forever, args=(stop,), name="simulated factory",
                     daemon=True).start()
    return stop


def _shops_text(run: dict[str, Any]) -> str:
    shops = run.get("marketplaces") or {}
    if not shops:
        return " No simulated marketplaces (LOCAL_MARKETPLACES=off).\n"
    every = os.environ.get("LOCAL_ORDER_SECONDS", "20")
    reconcile = 15 * 60 / float(os.environ.get("LOCAL_SCHEDULE_SPEEDUP", 12))
    rows = "".join(f"   {name:<12} {url}/_sim/orders\n" for name, url in shops.items())
    return f""" Simulated shops on {len(shops)} marketplaces take an order every {every} s in turn
 and notify us as each platform does, signed, some notifications dropped, duplicated or out of
 order; reconciliation (every {reconcile:.0f} s here) finds what was dropped; each shipment is
 written back and shows on the shop with its tracking number:
{rows}{_tokens_text()}"""


def _tokens_text() -> str:
    seconds = token_seconds()
    if not seconds:
        return ""
    # Renewed a third of the life before the end, at the next call of the shop (reconciliation
    # reaches every shop every 75 s here, Taobao's poll every 5 s).
    minutes = (seconds * 2 // 3 + 75) // 60 + 1
    return f""" Their access tokens end after {seconds} s (Shopify, Douyin, TikTok Shop, Shopee,
 Lazada, Taobao) and their refresh tokens rotate: "token refreshed for <platform> shop <shop>"
 shows within {minutes} minutes (LOCAL_TOKEN_SECONDS=0: the platforms' own lifetimes).
"""


def _labels_text() -> str:
    if not waybills_on():
        return " The factory prints its own tracking numbers (LOCAL_WAYBILLS=off).\n"
    return f""" Electronic waybills: the print gate takes each package's number and label from the
 courier network (Kuaidi100: a PNG label) or, for Taobao and Douyin orders whose receivers
 arrive masked/encrypted, from the platform's channel (Cainiao, Douyin: print data for its
 print component). The factory ships them without numbers of its own; labels are written to
   {labels_dir()}
"""


def console_url(api_port: int) -> str:
    """The CS console's address locally (CONSOLE_URL, so every IM and mail link opens it):
    `localhost`, which browsers treat as a secure origin, so the console's Secure session
    cookie is kept over plain http here."""
    return f"http://localhost:{api_port}"


def banner(api: str, aws: str, run: dict[str, Any]) -> str:
    auth_p = f"-H 'Authorization: Bearer {run['partner_key']}'"
    auth_cs = f"-H 'Authorization: Bearer {run['cs_key']}'"
    return f"""
================================================================================
 Order backbone running locally
   CS console          {run['console']}/console
   console sign-in key {run['cs_key']}   (cs-demo, back office)
   HTTP API            {api}   (partner API: {api}/warehouse/v1/openapi.json)
   local AWS endpoint  {aws}   (moto; state lives until Ctrl-C)
   demo partner        {run['partner']}   key {run['partner_key']}
   demo CS agent       cs-demo (back office)   key {run['cs_key']}
   secrets + keys      {RUN_FILE}

 A simulated factory (the reference partner client, partner_client/) accepts new jobs
 at once, prints them 30 s later, then picks, packs and ships. In another terminal:

   make demo-order                    # a signed Shopify order; note its order id
   make demo-cancel ORDER=ord_...     # within 30 s: cancelled before print, at once
   make demo-address ORDER=ord_...    # after print: an intercept the factory resolves

   # CS reads an order with its timeline
   curl -s {api}/cs/v1/orders/ORDER_ID {auth_cs}
   # the partner's change feed
   curl -s {api}/warehouse/v1/changes {auth_p}

{_labels_text()}
 A simulated Kuaidi100 ({run['courier']}) carries every shipped parcel along a scripted
 journey {time_scale():.0f} times faster than life (delivered, refused, stalled, failed twice,
 ... in turn); the tracker follows them by push and query, and CS cases open:

   curl -s {api}/cs/v1/cases {auth_cs}
   curl -s {run['courier']}/_sim/parcels           # what the courier knows

{_shops_text(run)}
 CS hears of every case on IM and by email: the IM sink prints each message below as
 WeCom / DingTalk would show it; sent mail is at {run['mailbox']} ("ses").

   make demo-exception                # an order with no address: a case on IM within seconds
   curl -s {api}/cs/v1/cases/CASE_ID/acknowledge --json '{{"note": "on it"}}' {auth_cs}
   curl -s {api}/cs/v1/cases/CASE_ID/resolve --json '{{"note": "fixed"}}' {auth_cs}

 Logs below: the app's (webhooks, the order worker, CS CASE lines) as JSON, as in Lambda;
 the factory's steps and IM messages as text.
 Ctrl-C stops everything.
================================================================================
"""


class StopSignal:
    """A signal that asks `make run` to stop. The handler only sets a flag: Python runs a
    handler on the main thread between two bytecodes, possibly while that thread holds the lock
    inside a threading.Event's wait, and a handler calling Event.set() then waits for that lock
    forever (seen: the stack kept serving for minutes after SIGTERM). The main thread polls."""

    def __init__(self) -> None:
        self.requested = False

    def install(self, signum: int) -> StopSignal:
        signal.signal(signum, self._handle)
        return self

    def _handle(self, signum: int, frame: object) -> None:
        self.requested = True

    def wait(self, seconds: float) -> bool:
        """Sleep (a plain sleep: no lock a handler could need), then say whether to stop."""
        time.sleep(seconds)
        return self.requested


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s",
                        datefmt="%H:%M:%S")
    for noisy in ("werkzeug", "botocore", "boto3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    api_port, aws_port = _port("LOCAL_API_PORT", 8000), _port("LOCAL_AWS_PORT", 5000)
    _require_free(api_port)
    _require_free(aws_port)
    stopping = StopSignal().install(signal.SIGTERM)
    with local_aws(aws_port) as aws_env:
        import boto3

        from devstack.parameters_extension import start_beside
        from devstack.provision import provision

        scale = time_scale()
        console = console_url(api_port)
        env = {**aws_env, **provision(boto3.session.Session(), stage="local",
                                      parameters={"ConsoleUrl": console}),
               "APP_STAGE": "local", "TRACKING_RULES_JSON": scaled_tracking_rules(scale),
               "CS_ROUTING_JSON": os.environ.get("CS_ROUTING_JSON") or local_routing(),
               "TOKEN_REFRESH_AHEAD_SECONDS": refresh_ahead(token_seconds()),
               **({"WAYBILL_RULES_JSON": waybill_rules()} if waybills_on() else {}),
               # A few pages a reconciliation run, so a round of the simulated shops spans
               # runs here ("reconciliation resumes at shop X page N"), as with many shops.
               "RECONCILE_PAGES_PER_RUN": os.environ.get("RECONCILE_PAGES_PER_RUN", "3"),
               # The app's log lines are JSON here as in Lambda; its EMF metrics (a blob per
               # invocation) would drown them: POWERTOOLS_METRICS_DISABLED=false shows them.
               "POWERTOOLS_METRICS_DISABLED": os.environ.get("POWERTOOLS_METRICS_DISABLED",
                                                             "true")}
        extension = start_beside(env)  # the functions' PARAMETERS_SECRETS_EXTENSION_HTTP_PORT
        os.environ.update(env)
        run = seed()
        api_url = f"http://127.0.0.1:{api_port}"
        courier = start_courier(api_url, scale)
        sink = start_im_sink()
        shops = start_marketplaces(api_url)
        if waybills_on():
            register_waybill_channels(shops)
        run["sources"].update({s.name: s.source() for s in shops if s.source() is not None})
        run.update(courier=courier.url, im_sink=sink.url,
                   aws=env["AWS_ENDPOINT_URL"],  # the admin's --stage local reads it
                   mailbox=f"{env['AWS_ENDPOINT_URL']}/moto-api/data.json",
                   marketplaces={s.name: s.url for s in shops})
        RUN_FILE.parent.mkdir(exist_ok=True)
        RUN_FILE.write_text(json.dumps({"api": api_url, "console": console, **run}, indent=2))
        RUN_FILE.chmod(0o600)
        api = start_api(api_port, env)
        runner, factory, buyers = None, None, None
        try:
            _wait_for_port(api_port, api)
            runner = start_events(env)
            factory = start_factory(api_url, run)
            buyers = start_shoppers(shops)
            start_reports(stopping)
            print(banner(api_url, env["AWS_ENDPOINT_URL"], {"console": console, **run}),
                  flush=True)
            print("READY", flush=True)  # the end-to-end test waits for this line
            while not stopping.requested and api.poll() is None:
                stopping.wait(0.5)
        except KeyboardInterrupt:
            pass
        finally:
            print("stopping...", flush=True)
            for stop_event in (factory, buyers):
                if stop_event is not None:
                    stop_event.set()
            if runner is not None:
                runner.stop()
            stop_api(api)
            extension.stop()
            courier.stop()
            sink.stop()
            for shop in shops:
                shop.stop()
    print("stopped.", flush=True)


if __name__ == "__main__":
    main()
