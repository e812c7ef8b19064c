"""A small, typed client for the brand's warehouse job API (`/warehouse/v1`).

Every method is one HTTP call and returns the JSON the server sent (typed as TypedDicts, so
fields the server adds later pass through untouched). Errors come back as `WarehouseError`,
whose `error` is the server's stable reason code: branch on that, not on the message.

Retries (a few tries, capped exponential backoff):
- 429 and 503 are always retried, after the server's `Retry-After` when it sends one: the
  server refused the request without acting on it ("nothing was stored").
- "Could not connect" is always retried: the request never left this machine.
- 502, 504, read timeouts and dropped connections are ambiguous (the server may have acted
  and only the answer was lost), so they are retried only for requests where doing the same
  thing twice is harmless:
    * every GET, `PUT /sku-locations`, `heartbeat` and `release`;
    * `accept` and `reject` with the same lease id: a replay finds the job already answered;
    * `ship`: the client-chosen `shipment_id` makes a replay the same shipment;
    * `claim`: NOT idempotent (a replay may lease more jobs), but the jobs of a lost answer
      just come back when that lease expires, so retrying only costs a lease.
  `print`, `pick`, `pack`, `resolve`, `POST /waves` and `POST /returns` are not retried on
  those: a replay could print twice, create a second wave or register a return twice. On such
  an error, re-read the job (`get_job`) and carry on from what it shows.
"""

from __future__ import annotations

import email.utils
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Literal, NotRequired, TypedDict, cast

import requests
from urllib3.exceptions import NewConnectionError

API_PREFIX = "/warehouse/v1"
USER_AGENT = "partner-client/0.1"

RejectReason = Literal[
    "out_of_stock", "incorrect_address", "invalid_sku", "qc_failed", "capacity", "other"]
WaveMethod = Literal["batch", "by_order"]
Outcome = Literal["intercepted", "failed"]


# Shapes the server sends --------------------------------------------------------------------

class Address(TypedDict):
    name: str
    line1: str
    line2: str
    city: str
    province: str
    postal_code: str
    country_code: str
    phone: str


class Line(TypedDict):
    sku: str
    title: str
    variant: str
    quantity: int


class CarrierChoice(TypedDict):
    carrier_code: str
    region: str
    expected_cost: Any  # the contract does not fix its format (decimal string? number?)
    reason: str
    # A buyer's courier request the rules could not honour: unknown_courier, courier_not_offered.
    fallback: NotRequired[str]


class Change(TypedDict):
    change_id: str
    # courier: the buyer asked for another courier; once applied or intercepted the job's
    # `carrier` is the new one, and a printed parcel needs a new label (reprint_required).
    kind: Literal["cancel", "address", "attributes", "promise", "courier"]
    status: Literal["applied", "intercept_requested", "intercepted", "intercept_failed",
                    "after_sales"]
    requested_at: str
    deadline: str | None
    address: NotRequired[Address]
    lines: NotRequired[list[Line]]
    promise: NotRequired[dict[str, Any]]
    carrier_code: NotRequired[str]


class Package(TypedDict):
    carrier_code: str
    tracking_number: str


class PackedItem(TypedDict):
    """One SKU and how many of it went into a package (the server checks them against the
    job: a mismatch is 409 `pack_mismatch` unless shipped anyway with a reason)."""

    sku: str
    quantity: int


class Shipment(TypedDict):
    shipment_id: str
    packages: list[Package]
    final: bool


class Printed(TypedDict):
    carrier_code: str | None
    waybill_numbers: list[str]
    printed_at: str
    count: int


class Job(TypedDict):
    job_id: str
    order_id: str
    order_name: str
    marketplace: str
    ship_to: Address
    lines: list[Line]
    handshake: Literal["offered", "accepted", "rejected"]
    work: Literal["queued", "printed", "picked", "packed", "shipped", "closed_incomplete",
                  "cancelled"]
    lease_id: str | None
    lease_expires_at: str | None
    carrier: CarrierChoice | None
    ship_by: str | None
    accept_by: str | None
    changes: list[Change]
    shipments: list[Shipment]
    printed: Printed | None
    buyer_note: str
    promises: list[Any]


class Claim(TypedDict):
    lease_id: str | None
    lease_expires_at: str | None
    jobs: list[Job]


class JobPage(TypedDict):
    jobs: list[Job]
    next_cursor: str | None


class ChangeEntry(TypedDict):
    cursor: str
    at: str
    job_id: str
    # change.applied | change.intercept_requested | change.after_sales |
    # order.courier_refused | job.cancelled
    type: str
    change: Change | None


class ChangePage(TypedDict):
    entries: list[ChangeEntry]
    next_cursor: str


class PickLine(TypedDict):
    sku: str
    title: str
    variant: str
    quantity: int
    location: str | None


class SortLine(TypedDict):
    sku: str
    quantity: int
    location: str | None


class SortSlot(TypedDict):
    slot: int
    job_id: str
    order_name: str
    lines: list[SortLine]


class Wave(TypedDict):
    wave_id: str
    method: WaveMethod
    job_ids: list[str]
    created_at: str
    pick_list: list[PickLine]
    sort_list: list[SortSlot]
    # By job id, when the print gate issued electronic waybills: per package its number,
    # provider and label (partner_client.labels.save_labels writes them to files).
    waybills: NotRequired[dict[str, list[dict[str, Any]]]]


DamageLocation = Literal["in_transit", "at_warehouse", "at_buyer", "unknown"]


class ReturnItem(TypedDict):
    sku: str
    quantity: int


# Errors -------------------------------------------------------------------------------------

class WarehouseError(Exception):
    """The server said no (4xx/5xx), or could not be reached (status 0, error `unreachable`)."""

    def __init__(self, status: int, error: str, message: str = "",
                 details: Mapping[str, Any] | None = None) -> None:
        super().__init__(status, error, message)
        self.status = status
        self.error = error
        self.message = message
        self.details: dict[str, Any] = dict(details or {})

    def __str__(self) -> str:
        return f"{self.status} {self.error}: {self.message}" if self.message \
            else f"{self.status} {self.error}"

    @property
    def current_state(self) -> dict[str, Any] | None:
        """On a 409: the job's `{"handshake", "work", "open_changes"}` as the server saw it."""
        state = self.details.get("current_state")
        return state if isinstance(state, dict) else None


def _error_from(response: requests.Response) -> WarehouseError:
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        # A gateway's own error page, not the API's: keep a short excerpt for the log.
        return WarehouseError(response.status_code, f"http_{response.status_code}",
                              response.text[:200])
    details = body.get("details")
    return WarehouseError(response.status_code,
                          str(body.get("error") or f"http_{response.status_code}"),
                          str(body.get("message") or ""),
                          details if isinstance(details, dict) else {})


def retry_after_seconds(value: str | None, now: Callable[[], datetime] | None = None
                        ) -> float | None:
    """`Retry-After` as seconds: either a number or an HTTP date (RFC 9110 allows both)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    current = now() if now else datetime.now(UTC)
    return max(0.0, (when - current).total_seconds())


def new_shipment_id() -> str:
    """A fresh id for one physical shipment; keep it and send the same one on every retry."""
    return "shp_" + uuid.uuid4().hex


# The client ---------------------------------------------------------------------------------

class WarehouseClient:
    """One method per endpoint of `/warehouse/v1`.

    `base_url` is the API's root (`https://api.example.com` or `http://127.0.0.1:8000`);
    `/warehouse/v1` is added unless it is already there. `sleep` is injectable for tests.
    """

    def __init__(self, base_url: str, api_key: str, *, timeout: float = 10,
                 session: requests.Session | None = None, max_attempts: int = 4,
                 backoff_seconds: float = 0.5, max_backoff_seconds: float = 8.0,
                 max_retry_after_seconds: float = 60.0,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        root = base_url.rstrip("/")
        self.base_url = root if root.endswith(API_PREFIX) else root + API_PREFIX
        self.timeout = timeout
        self.session = session or requests.Session()
        self.max_attempts = max(1, max_attempts)
        self.backoff_seconds = backoff_seconds
        self.max_backoff_seconds = max_backoff_seconds
        self.max_retry_after_seconds = max_retry_after_seconds
        self.sleep = sleep
        self._headers = {"Authorization": f"Bearer {api_key}", "Accept": "application/json",
                         "User-Agent": USER_AGENT}

    # Offers ----------------------------------------------------------------------------------

    def claim(self, max_jobs: int = 10, *, lease_seconds: int | None = None,
              wait_seconds: int = 0) -> Claim:
        """Lease up to `max_jobs` offers. With `wait_seconds` the server holds the request
        until work arrives (long poll), so the read timeout is stretched by that much."""
        body: dict[str, Any] = {"max_jobs": max_jobs, "wait_seconds": wait_seconds}
        if lease_seconds is not None:
            body["lease_seconds"] = lease_seconds
        return cast(Claim, self._call("POST", "/jobs/claim", body,
                                      timeout=self.timeout + wait_seconds))

    def heartbeat(self, job_id: str, lease_id: str, lease_seconds: int | None = None) -> Job:
        body: dict[str, Any] = {"lease_id": lease_id}
        if lease_seconds is not None:
            body["lease_seconds"] = lease_seconds
        return self._job("POST", f"/jobs/{job_id}/heartbeat", body)

    def release(self, job_id: str, lease_id: str) -> Job:
        return self._job("POST", f"/jobs/{job_id}/release", {"lease_id": lease_id})

    def accept(self, job_id: str, lease_id: str) -> Job:
        return self._job("POST", f"/jobs/{job_id}/accept", {"lease_id": lease_id})

    def reject(self, job_id: str, lease_id: str, reason: RejectReason,
               detail: str | None = None) -> Job:
        body: dict[str, Any] = {"lease_id": lease_id, "reason": reason}
        if detail:
            body["detail"] = detail
        return self._job("POST", f"/jobs/{job_id}/reject", body)

    # Work ------------------------------------------------------------------------------------

    def print_job(self, job_id: str, waybill_numbers: Sequence[str] | None = None,
                  carrier_code: str | None = None) -> Job:
        """Pass the print gate for one job (409 `change_pending` while a change is open)."""
        body: dict[str, Any] = {}
        if waybill_numbers:
            body["waybill_numbers"] = list(waybill_numbers)
        if carrier_code:
            body["carrier_code"] = carrier_code
        return self._job("POST", f"/jobs/{job_id}/print", body, idempotent=False)

    def pick(self, job_id: str) -> Job:
        return self._job("POST", f"/jobs/{job_id}/pick", {}, idempotent=False)

    def pack(self, job_id: str, weight_grams: int, package_count: int = 1, *,
             packages: Sequence[Sequence[PackedItem]] = (), ship_anyway_reason: str = ""
             ) -> Job:
        """Report the job packed. `packages`: what each package holds (then their number is
        the package count); the server compares them with the job and answers 409
        `pack_mismatch` with `details["differences"]` when they differ, unless
        `ship_anyway_reason` says why it goes out all the same (recorded; the brand's
        customer service opens a wrong/short shipment case)."""
        body: dict[str, Any] = {"weight_grams": weight_grams, "package_count": package_count}
        if packages:
            body["package_count"] = len(packages)
            body["packages"] = [{"items": [dict(item) for item in package]}
                                for package in packages]
        if ship_anyway_reason:
            body["ship_anyway"], body["reason"] = True, ship_anyway_reason
        return self._job("POST", f"/jobs/{job_id}/pack", body, idempotent=False)

    def ship(self, job_id: str, packages: Sequence[Package] | None, *,
             shipment_id: str | None = None, final: bool = True) -> Job:
        """Report a shipment. `packages` None: the electronic waybills issued at print ship
        (the server names them). Without `shipment_id` one is generated; it is kept across this
        call's retries. If this raises after the request may have gone out, call again with
        the shipment id from the exception's `details["shipment_id"]`: it is the same one."""
        shipment_id = shipment_id or new_shipment_id()
        body: dict[str, Any] = {"shipment_id": shipment_id, "final": final}
        if packages is not None:
            body["packages"] = [dict(p) for p in packages]
        try:
            return self._job("POST", f"/jobs/{job_id}/ship", body)
        except WarehouseError as exc:
            exc.details.setdefault("shipment_id", shipment_id)
            raise

    def resolve_change(self, job_id: str, change_id: str, outcome: Outcome, *,
                       reprint: bool = False, note: str | None = None) -> Job:
        body: dict[str, Any] = {"outcome": outcome, "reprint": reprint}
        if note:
            body["note"] = note
        return self._job("POST", f"/jobs/{job_id}/changes/{change_id}/resolve", body,
                         idempotent=False)

    # Reading ---------------------------------------------------------------------------------

    def get_job(self, job_id: str) -> Job:
        return self._job("GET", f"/jobs/{job_id}")

    def list_jobs(self, *, updated_since: datetime | str | None = None,
                  cursor: str | None = None, limit: int | None = None) -> JobPage:
        params = {"updated_since": _iso(updated_since), "cursor": cursor, "limit": limit}
        return cast(JobPage, self._call("GET", "/jobs", params=params))

    def iter_jobs(self, *, updated_since: datetime | str | None = None,
                  limit: int = 100) -> Iterator[Job]:
        """Every job updated since then, following `next_cursor` page by page."""
        cursor: str | None = None
        while True:
            page = self.list_jobs(updated_since=updated_since, cursor=cursor, limit=limit)
            yield from page["jobs"]
            cursor = page.get("next_cursor")
            if not cursor:
                return

    def changes(self, cursor: str | None = None, limit: int | None = None) -> ChangePage:
        return cast(ChangePage, self._call("GET", "/changes",
                                           params={"cursor": cursor, "limit": limit}))

    # Waves, locations, returns ---------------------------------------------------------------

    def create_wave(self, job_ids: Sequence[str], method: WaveMethod = "batch") -> Wave:
        """Print every job of the wave (all or nothing; a 409 names the jobs that cannot)."""
        return cast(Wave, self._call("POST", "/waves",
                                     {"job_ids": list(job_ids), "method": method},
                                     idempotent=False))

    def get_wave(self, wave_id: str) -> Wave:
        return cast(Wave, self._call("GET", f"/waves/{wave_id}"))

    def put_sku_locations(self, locations: Mapping[str, str]) -> dict[str, Any]:
        return self._call("PUT", "/sku-locations", {"locations": dict(locations)})

    def create_return(self, return_tracking_number: str, buyer_name: str,
                      items: Sequence[ReturnItem], reason: str,
                      packaging: Literal["intact", "damaged"],
                      order_name: str | None = None, complaint: str = "",
                      damage_location: DamageLocation = "unknown") -> dict[str, Any]:
        """Register a return any time: outside 09:00-14:30 the answer's `window` says which
        day's window it was queued to (`queued`). `complaint`: the buyer's complaint form as
        written; `damage_location` decides the liability when the packaging is damaged."""
        body: dict[str, Any] = {"return_tracking_number": return_tracking_number,
                                "buyer_name": buyer_name, "items": [dict(i) for i in items],
                                "reason": reason, "packaging": packaging,
                                "complaint": complaint, "damage_location": damage_location}
        if order_name:
            body["order_name"] = order_name
        return self._call("POST", "/returns", body, idempotent=False)

    # Transport -------------------------------------------------------------------------------

    def _job(self, method: str, path: str, body: dict[str, Any] | None = None, *,
             idempotent: bool = True) -> Job:
        return cast(Job, self._call(method, path, body, idempotent=idempotent))

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None, *,
              params: Mapping[str, Any] | None = None, idempotent: bool = True,
              timeout: float | None = None) -> dict[str, Any]:
        url = self.base_url + path
        query = {k: v for k, v in (params or {}).items() if v is not None}
        for attempt in range(1, self.max_attempts + 1):
            last = attempt == self.max_attempts
            try:
                response = self.session.request(method, url, json=body, params=query,
                                                headers=self._headers,
                                                timeout=timeout or self.timeout)
            except requests.RequestException as exc:
                if last or not (idempotent or _never_sent(exc)):
                    raise WarehouseError(0, "unreachable", f"{method} {path}: {exc}") from exc
                self.sleep(self._backoff(attempt))
                continue
            if response.ok:
                return _json_object(response)
            delay = self._retry_delay(response, attempt, idempotent)
            if delay is None or last:
                raise _error_from(response)
            self.sleep(delay)
        raise AssertionError("unreachable")  # the loop always returns or raises

    def _retry_delay(self, response: requests.Response, attempt: int,
                     idempotent: bool) -> float | None:
        status = response.status_code
        if not (status in (429, 503) or (idempotent and status in (502, 504))):
            return None
        wait = retry_after_seconds(response.headers.get("Retry-After"))
        if wait is None:
            return self._backoff(attempt)
        return min(wait, self.max_retry_after_seconds)

    def _backoff(self, attempt: int) -> float:
        # No jitter: one factory runs a handful of clients, there is no herd to spread out.
        return float(min(self.max_backoff_seconds, self.backoff_seconds * 2 ** (attempt - 1)))


def _never_sent(exc: requests.RequestException) -> bool:
    """True when the connection was never made, so the server cannot have acted."""
    if isinstance(exc, requests.ConnectTimeout):
        return True
    reason = exc.args[0] if exc.args else None
    return isinstance(getattr(reason, "reason", reason), NewConnectionError)


def _json_object(response: requests.Response) -> dict[str, Any]:
    if not response.content:
        return {}
    body = response.json()
    if not isinstance(body, dict):
        raise WarehouseError(response.status_code, "unexpected_body",
                             "expected a JSON object from the server")
    return body


def _iso(moment: datetime | str | None) -> str | None:
    if moment is None or isinstance(moment, str):
        return moment
    if moment.tzinfo is None:
        raise ValueError("updated_since must be timezone-aware")
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
