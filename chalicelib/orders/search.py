"""The console's one search box: what a person typed, read as the lookups it can be.

Pure: no I/O. A text is normalised (NFKC, so full-width digits, letters and the ideographic
space read as their ASCII forms; whitespace collapsed; at most MAX_QUERY_CHARS), then read as:

- our order id (`ord_` + 20 hex digits, as `order_id_for` makes it): that alone;
- a marketplace order number: one token of letters, digits and `-_.`, with a digit;
- a tracking number: the same token without `-`, 8-40 letters and digits (upper-cased:
  couriers print them so, and a person on the phone reads them in either case);
- a phone: 4 digits alone are its last four; a full number (11 digits from 1, as a mainland
  mobile, or `+` and 8-15 digits; spaces, dashes and brackets allowed) gives its last four;
  either with a name before or after it narrows to buyers whose name begins so.

A text may be several of these (a long digit string is an order number or a tracking number,
an 11-digit one also a phone): every one is listed, and the flow tries them all. A text that is
none of them (a name alone, markup) is a 400 `invalid_query`, so the box says what it takes.

The same normalisation makes the index attributes of an order's current view (`index_fields`),
so what a person types and what is stored meet: a name in another case or width still matches,
and only the last four digits of a phone are stored beside the order for searching.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Any, Literal

from chalicelib.core.clock import iso
from chalicelib.core.errors import ApiError
from chalicelib.orders.order import Order

MAX_QUERY_CHARS = 100
MAX_ROW_NAME_CHARS = 200  # a hit list's name, enough to recognise a buyer
Kind = Literal["order_id", "external_id", "tracking_number", "phone"]
KINDS: tuple[Kind, ...] = ("order_id", "external_id", "tracking_number", "phone")

_ORDER_ID = re.compile(r"ord_[0-9a-f]{20}")
_TOKEN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]*")
_TRACKING = re.compile(r"[A-Z0-9]{8,40}")
# A phone as typed: digits with the separators people write between groups.
_PHONE_CHARS = re.compile(r"\+?[0-9][0-9 ()\-]*")
_MAINLAND_MOBILE = re.compile(r"1[3-9][0-9]{9}")
# Never part of an id, a number, a phone or a name: markup, quotes, controls.
_REFUSED = re.compile(r"[<>&\"`\\{}\[\]|;=\x00-\x1f\x7f]")
# What a name may hold besides letters and marks (O'Brien, Jean-Luc, 阿卜杜·拉, J. Smith).
_NAME_PUNCTUATION = frozenset(" '’-.·・")


@dataclass(frozen=True)
class Lookup:
    """One way to find orders: `value` is the key to look up (for a phone, its last four
    digits); `name` the normalised name prefix that narrows a phone lookup ("" for none)."""

    kind: Kind
    value: str
    name: str = ""


@dataclass(frozen=True)
class SearchQuery:
    text: str  # as normalised
    lookups: tuple[Lookup, ...]

    @property
    def kinds(self) -> list[Kind]:
        return list(dict.fromkeys(lookup.kind for lookup in self.lookups))


def _invalid(message: str) -> ApiError:
    return ApiError(400, "invalid_query", message)


def normalise(text: str) -> str:
    """NFKC (full-width forms as ASCII), whitespace collapsed to single spaces, trimmed."""
    return " ".join(unicodedata.normalize("NFKC", text).split())


def name_key(name: str) -> str:
    """A name as the index compares it: NFKC, case-folded, letters, marks and digits only
    (so `Zhang San`, `ｚｈａｎｇ ｓａｎ` and `zhangsan` are one name)."""
    folded = unicodedata.normalize("NFKC", name).casefold()
    return "".join(ch for ch in folded if unicodedata.category(ch)[0] in "LMN")


def phone_last4(phone: str) -> str:
    """The last four digits of a phone as written (masked ones too: `138****1234`), or ""."""
    digits = "".join(ch for ch in unicodedata.normalize("NFKC", phone) if ch.isdigit())
    return digits[-4:] if len(digits) >= 4 else ""


def parse(raw: str) -> SearchQuery:
    """The lookups `raw` can be; ApiError 400 `invalid_query` when it can be none."""
    if len(raw) > 4 * MAX_QUERY_CHARS:  # refused before the work of normalising it
        raise _invalid(f"a search is at most {MAX_QUERY_CHARS} characters")
    text = normalise(raw)
    if not text:
        raise _invalid("type an order id, a marketplace order number, a tracking number or "
                       "a phone's last four digits (with a name to narrow)")
    if len(text) > MAX_QUERY_CHARS:
        raise _invalid(f"a search is at most {MAX_QUERY_CHARS} characters")
    if _REFUSED.search(text):
        raise _invalid("a search holds an id, a number, a phone or a name: no markup or "
                       "symbols")
    lookups = _lookups(text)
    if not lookups:
        raise _invalid("not an order id, an order number, a tracking number or a phone "
                       "(4 digits or a full number, with a name before or after it)")
    return SearchQuery(text, lookups)


def _lookups(text: str) -> tuple[Lookup, ...]:
    if _ORDER_ID.fullmatch(text.lower()):
        return (Lookup("order_id", text.lower()),)
    phone = _phone_with_name(text)
    if phone is not None:
        return phone
    if _PHONE_CHARS.fullmatch(text):  # digits only, perhaps grouped
        return _number(text)
    if _TOKEN.fullmatch(text) and any(ch.isdigit() for ch in text):
        return _identifiers(text)
    return ()


def _number(text: str) -> tuple[Lookup, ...]:
    """Digits as typed, grouped or not: an order number, a tracking number, and a phone when
    it has a phone's shape (4 digits alone are a phone's last four)."""
    compact = "".join(ch for ch in text if ch not in " ()")
    digits = "".join(ch for ch in text if ch.isdigit())
    found = list(_identifiers(compact)) if _TOKEN.fullmatch(compact) else []
    if (len(digits) == 4 and not text.startswith("+")) or _full_phone(text):
        found.append(Lookup("phone", digits[-4:]))
    return tuple(found)


def _identifiers(token: str) -> tuple[Lookup, ...]:
    found = [Lookup("external_id", token)]
    tracking = token.replace("-", "").upper()
    if _TRACKING.fullmatch(tracking):
        found.append(Lookup("tracking_number", tracking))
    return tuple(found)


def _full_phone(text: str) -> bool:
    digits = "".join(ch for ch in text if ch.isdigit())
    if text.startswith("+"):
        return 8 <= len(digits) <= 15
    return bool(_MAINLAND_MOBILE.fullmatch(digits))


def _phone_with_name(text: str) -> tuple[Lookup, ...] | None:
    """`1234 张三`, `张三 1234`, `13800138000 Zhang San`: a phone's last four and a name.
    None when the text is not a phone beside a name."""
    for phone, name in _splits(text):
        digits = "".join(ch for ch in phone if ch.isdigit())
        if not ((len(digits) == 4 and phone.isdigit()) or _full_phone(phone)):
            continue
        key = name_key(name)
        if key and _is_name(name):
            return (Lookup("phone", digits[-4:], key),)
    return None


def _splits(text: str) -> list[tuple[str, str]]:
    """(phone part, name part) for the digits at the start and for those at the end."""
    found: list[tuple[str, str]] = []
    head = re.match(r"(\+?[0-9][0-9 ()\-]*[0-9)])\s+(.+)", text)
    if head and not any(ch.isdigit() for ch in head.group(2)):
        found.append((head.group(1), head.group(2)))
    tail = re.fullmatch(r"(.+?)\s+(\+?[0-9][0-9 ()\-]*[0-9])", text)
    if tail and not any(ch.isdigit() for ch in tail.group(1)):
        found.append((tail.group(2), tail.group(1)))
    return found


def _is_name(name: str) -> bool:
    return any(ch.isalpha() for ch in name) and all(
        ch.isalpha() or unicodedata.category(ch).startswith("M") or ch in _NAME_PUNCTUATION
        for ch in name)


# --- What an order's current view carries for the search indexes ---------------------------


def index_fields(order: Order) -> dict[str, Any]:
    """The attributes of the order's CURRENT item that the search indexes key on and project:
    the row a hit list shows, and the phone's last four digits (never the whole number) with
    the normalised name of the same person, then `#<order id>` so the range key is unique.

    The phone is the shipping address's (whom the parcel goes to, and what an address
    amendment changes), else the buyer's; the name is that person's, else the other's. No
    phone: no `buyer_phone4`, so the order is not in the phone index (sparse)."""
    address = order.shipping_address
    address_phone = phone_last4(address.phone) if address else ""
    address_name = address.name if address else ""
    if address_phone:
        phone4, name = address_phone, address_name or order.buyer.name
    else:
        phone4, name = phone_last4(order.buyer.phone), order.buyer.name or address_name
    fields: dict[str, Any] = {"status": order.status.value,
                              "buyer_name": name[:MAX_ROW_NAME_CHARS],
                              "placed_at": iso(order.placed_at)}
    if order.paid_at is not None:
        fields["paid_at"] = iso(order.paid_at)
    if phone4:
        fields["buyer_phone4"] = phone4
        # Cut so the range key stays far below DynamoDB's 1,024 bytes whatever the name (a
        # longer key would refuse the order's write); a typed name is shorter still.
        fields["buyer_name_key"] = f"{name_key(name)[:MAX_QUERY_CHARS]}#{order.order_id}"
    return fields
