"""Short CS messages in Chinese and English: the order, what happened, what to do, a link.

One template per alert kind the code raises, plus the courier exceptions of the tracking work
(lost, refused, delivery failed twice, stalled, returned, damaged, and the other alerting
exception kinds) under `shipment.*`, reachable from the tracking module's exception names under
`shipment.`/`courier.`/`tracking.`/`parcel.`, and a generic fallback so an unknown kind still
reads well. The
digest template summarises a burst by kind in one message.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from chalicelib.cs.alerts import Alert, Severity, worst
from chalicelib.cs.channels import Language, Message
from chalicelib.cs.channels.escaping import one_line

ZH, EN = Language.ZH, Language.EN
DEFAULT_ZONE = ZoneInfo("Asia/Shanghai")
DETAIL_MAX_CHARS = 200  # the summary is a hint; the case page has the rest

SEVERITY_LABEL: Mapping[Language, Mapping[Severity, str]] = {
    ZH: {Severity.LOW: "低", Severity.MEDIUM: "中", Severity.HIGH: "高", Severity.CRITICAL: "紧急"},
    EN: {severity: severity.value.upper() for severity in Severity},
}


@dataclass(frozen=True)
class Template:
    label: Mapping[Language, str]  # a few words: titles and digest lines
    what: Mapping[Language, str]
    todo: Mapping[Language, str]


def _t(label: tuple[str, str], what: tuple[str, str], todo: tuple[str, str]) -> Template:
    return Template(label={ZH: label[0], EN: label[1]}, what={ZH: what[0], EN: what[1]},
                    todo={ZH: todo[0], EN: todo[1]})


TEMPLATES: Mapping[str, Template] = {
    "job.rejected": _t(
        ("仓库拒单", "Warehouse rejected"),
        ("仓库拒绝了这个订单的发货任务。", "The warehouse rejected the fulfilment job."),
        ("查看拒单原因（缺货、地址、货号），联系买家或修正后重新下发。",
         "Check the reason (stock, address, SKU); contact the buyer or fix it and resend.")),
    "job.not_accepted": _t(
        ("工厂未确认", "Factory not confirming"),
        ("工厂没有在规定时间内确认订单。", "The factory has not confirmed the order in time."),
        ("联系工厂确认；三天无答复按合同视为接受。",
         "Chase the factory; after three days without an answer the contract counts it "
         "as accepted.")),
    "job.late_dispatch": _t(
        ("未按时发货", "Late dispatch"),
        ("订单没有在截单时间前发出。", "The order was not shipped by its dispatch cut-off."),
        ("向仓库确认发货时间；会延误时告知买家。",
         "Ask the warehouse when it ships; tell the buyer if it will be late.")),
    "job.offer_unanswered": _t(
        ("任务无人应答", "Job unanswered"),
        ("发货任务多次下发无人应答，已撤下。",
         "The job was offered repeatedly without an answer and was withdrawn."),
        ("检查仓库对接是否正常，手动重新下发。",
         "Check the warehouse connection and offer the job again by hand.")),
    "change.after_sales": _t(
        ("转售后", "After-sales case"),
        ("订单已发出，买家的修改或取消转为售后。",
         "The order has shipped: the buyer's change or cancellation is now after-sales."),
        ("联系买家：退货退款或快递拦截。",
         "Contact the buyer: return and refund, or a courier intercept.")),
    "order.courier_refused": _t(
        ("改快递未成", "Courier change refused"),
        ("包裹已由原快递发出，买家要求的改快递无法执行。",
         "The parcel has already left with its courier: the buyer's courier change cannot be "
         "made."),
        ("告知买家包裹仍由原快递派送；如买家坚持，按售后处理（拒收退回后重发）。",
         "Tell the buyer the parcel stays with its courier; if they insist, handle it as "
         "after-sales (refused and returned, then resent).")),
    "change.intercept_failed": _t(
        ("拦截失败", "Intercept failed"),
        ("仓库没能拦截这个包裹。", "The warehouse could not intercept the parcel."),
        ("联系快递拦截，或按售后处理。",
         "Ask the courier to intercept, or handle it as after-sales.")),
    "change.intercept_overdue": _t(
        ("拦截超时", "Intercept overdue"),
        ("拦截请求超时仍无结果。", "The intercept request is past its deadline without a result."),
        ("催仓库回复拦截结果。", "Chase the warehouse for the intercept result.")),
    "return.received": _t(
        ("收到退货", "Return received"),
        ("仓库收到一件退货。", "A return arrived at the warehouse."),
        ("核对退货商品，办理退款或换货。", "Check the items and process the refund or exchange.")),
    "return.damaged": _t(
        ("退货破损", "Return damaged"),
        ("退回的商品有损坏。", "The returned goods are damaged."),
        ("按合同定责：包装完好的投诉由工厂负责（免费维修或赔偿）；包装破损按损坏发生地"
         "（运输中归快递，仓库归工厂，买家处归买家）；按责任方索赔。",
         "Liability by the contract: a complaint with intact packaging is the factory's (free "
         "repair or compensation); with damaged packaging, where it was damaged (in transit: "
         "courier; at the warehouse: factory; at the buyer: buyer). Claim from that party.")),
    "refund.due": _t(
        ("待退款", "Refund due"),
        ("订单已取消（打单前作废或工厂拦截成功），买家已付款。",
         "The order was cancelled (voided before print or intercepted by the factory) after "
         "the buyer paid."),
        ("售后在平台上给买家退款（金额见详情），完成后标记为已退款；无需退款时注明原因。",
         "After-sales: refund the buyer on the marketplace (amount in the details), then "
         "resolve as refunded, or as not needed with the reason.")),
    "shipment.wrong_items": _t(
        ("发错货", "Wrong items shipped"),
        ("包裹里的商品与订单不符（错货或多发）。",
         "The parcel's items do not match the order (wrong or extra items)."),
        ("联系买家核实，安排补发正确商品并召回错发商品；记录仓库责任。",
         "Confirm with the buyer, send the right items and recall the wrong ones; record the "
         "warehouse's fault.")),
    "shipment.short": _t(
        ("少发", "Short shipment"),
        ("包裹里的商品数量少于订单。", "The parcel holds fewer items than the order."),
        ("联系买家确认缺少的商品，安排补发或部分退款；记录仓库责任。",
         "Confirm with the buyer what is missing; resend it or refund that part; record the "
         "warehouse's fault.")),
    "shipment.missing_items": _t(
        ("漏发", "Items missing"),
        ("买家反映订单中的商品没有收到。", "The buyer says an item of the order never arrived."),
        ("核对仓库打包记录和快递重量，安排补发或退款。",
         "Check the packing record and the parcel's weight; resend or refund.")),
    "order.invalid": _t(
        ("订单无效", "Invalid order"),
        ("订单数据有问题，无法下发仓库。", "The order cannot go to the warehouse as it is."),
        ("核对库存、货号、颜色尺码和收货地址，联系买家确认。",
         "Check stock, item code, colour/size and the address; confirm with the buyer.")),
    "webhook.invalid_payload": _t(
        ("推送无法解析", "Unreadable notification"),
        ("平台推送的订单通知无法解析，已拒收。",
         "A marketplace notification could not be read and was refused."),
        ("通知技术人员；对账补拉漏掉的订单。",
         "Tell the tech team; reconcile to pick up any missed order.")),
    "delivery.unprocessed": _t(
        ("订单未处理", "Order not processed"),
        ("订单通知 10 分钟内没有处理。",
         "An order notification was not processed within 10 minutes."),
        ("确认订单是否已进系统，必要时手动处理。",
         "Check the order is in the system; process it by hand if needed.")),
    "worker.dead_letter": _t(
        ("订单处理中断", "Order worker failing"),
        ("订单处理程序多次重试后放弃。", "The order worker gave up after repeated retries."),
        ("立即通知技术人员，修复后重放。", "Call the tech team now; replay once it is fixed.")),
    # Courier exceptions (tracking).
    "shipment.lost": _t(
        ("包裹疑似丢失", "Parcel probably lost"),
        ("包裹长时间没有任何物流更新，疑似丢失。",
         "The parcel has not moved for days: probably lost."),
        ("向快递发起查件，同时安抚买家，准备补发或退款。",
         "Open a trace with the courier, reassure the buyer, prepare a resend or refund.")),
    "shipment.refused": _t(
        ("买家拒收", "Refused"),
        ("买家拒收了包裹。", "The buyer refused the parcel."),
        ("联系买家确认原因，按退货流程跟进。",
         "Ask the buyer why and follow the return process.")),
    "shipment.repeated_delivery_failure": _t(
        ("二次派送失败", "Delivery failed twice"),
        ("快递两次派送都没有成功（无人签收）。", "Two delivery attempts failed (nobody home)."),
        ("联系买家约定派送时间或改自提，并告知快递。",
         "Call the buyer to agree a time or a pickup point, and tell the courier.")),
    "shipment.stalled": _t(
        ("物流停滞", "Tracking stalled"),
        ("包裹超过时限没有新的扫描记录。", "No new scan within the expected time."),
        ("向快递催查；有新扫描后自动解除。",
         "Chase the courier; a new scan clears this by itself.")),
    "shipment.returned": _t(
        ("包裹退回", "Returned to sender"),
        ("包裹正在退回或已退回发件人。", "The parcel is returning or returned to the sender."),
        ("联系买家，决定重发还是退款。", "Contact the buyer: resend or refund.")),
    "shipment.damaged": _t(
        ("包裹破损", "Parcel damaged"),
        ("快递报告包裹破损。", "The courier reports the parcel damaged."),
        ("拍照留证，按包装定责向快递或工厂索赔，安排补发。",
         "Keep photos, claim from the courier or factory by the packaging, arrange a resend.")),
    "shipment.not_picked_up": _t(
        ("快递未揽收", "Not picked up"),
        ("包裹交接后超过时限仍未被快递揽收。", "The courier has not collected the parcel in time."),
        ("催仓库和快递揽收，必要时换快递。",
         "Chase the warehouse and courier; switch couriers if needed.")),
    "shipment.address_issue": _t(
        ("地址有误", "Address problem"),
        ("快递报告收货地址有问题，无法派送。", "The courier cannot deliver to the address."),
        ("联系买家核实地址，并通知快递更正。",
         "Confirm the address with the buyer and give the courier the correction.")),
    "shipment.redirected": _t(
        ("改派新地址", "Redirected"),
        ("包裹被改派到新地址。", "The parcel was redirected to a new address."),
        ("确认改址是买家本人要求，并记录到订单。",
         "Make sure the buyer asked for it and note it on the order.")),
    "shipment.pickup_uncollected": _t(
        ("驿站未取件", "Not collected"),
        ("包裹在快递柜或驿站超时未取。",
         "The parcel is waiting at a locker or station, uncollected."),
        ("提醒买家取件，避免被退回。", "Remind the buyer to collect it before it is sent back.")),
    "shipment.customs_issue": _t(
        ("清关异常", "Customs problem"),
        ("包裹清关遇到问题。", "The parcel is held up in customs."),
        ("联系快递了解所需材料，告知买家。",
         "Ask the courier what customs needs and tell the buyer.")),
    "shipment.invalid_tracking": _t(
        ("运单号无效", "Invalid tracking number"),
        ("快递查不到这个运单号。", "The courier does not know this tracking number."),
        ("向仓库核对运单号和快递公司。",
         "Check the tracking number and courier with the warehouse.")),
    "shipment.late_vs_promise": _t(
        ("超出承诺时效", "Late against the promise"),
        ("包裹无法在承诺给买家的日期前送达。",
         "The parcel will not arrive by the date promised to the buyer."),
        ("主动告知买家，必要时补偿。",
         "Tell the buyer first; offer a goodwill gesture if needed.")),
    "shipment.status_regression": _t(
        ("物流状态倒退", "Tracking went backwards"),
        ("物流状态倒退（例如已签收后又显示退回）。",
         "The tracking went backwards (say, delivered, then returning)."),
        ("向快递核实包裹实际去向。", "Ask the courier where the parcel really is.")),
}

FALLBACK = _t(
    ("异常", "Exception"),
    ("系统发现一个需要客服处理的异常。", "Something needs customer service's attention."),
    ("打开链接查看详情并处理。", "Open the link for details and handle it."))

# Spellings the tracking work may use, after the `shipment.`/`courier.`/`tracking.` prefix.
_COURIER_ALIASES: Mapping[str, str] = {
    "lost": "lost", "probably_lost": "lost",
    "refused": "refused", "refusal_initiated": "refused", "refused_returned": "refused",
    "repeated_delivery_failure": "repeated_delivery_failure",
    "delivery_failed_twice": "repeated_delivery_failure",
    "stalled": "stalled", "stalled_no_scan": "stalled", "provider_stalled": "stalled",
    "returned": "returned", "returning": "returned", "return_to_sender": "returned",
    "damaged": "damaged",
    **{name: name for name in ("not_picked_up", "address_issue", "redirected",
                               "pickup_uncollected", "customs_issue", "invalid_tracking",
                               "late_vs_promise", "status_regression")},
}
_COURIER_PREFIXES = ("shipment.", "courier.", "tracking.", "parcel.")


def template_for(kind: str) -> Template:
    if kind in TEMPLATES:
        return TEMPLATES[kind]
    for prefix in _COURIER_PREFIXES:
        if kind.startswith(prefix) and kind[len(prefix):] in _COURIER_ALIASES:
            return TEMPLATES["shipment." + _COURIER_ALIASES[kind[len(prefix):]]]
    return FALLBACK


def label(kind: str, language: Language) -> str:
    found = template_for(kind)
    return found.label[language] if found is not FALLBACK else kind


_ORDER_FACTS = ("order_name", "order_number", "external_id", "order_id")


def order_ref(facts: Mapping[str, Any], subject: str = "") -> str:
    """The order number CS searches by: the marketplace's name (#1001) before our id. On one
    line, as every field from outside: a line break in it cannot start a line of our message."""
    for key in _ORDER_FACTS:
        value = facts.get(key)
        if isinstance(value, str | int) and str(value).strip():
            return one_line(str(value))
    return one_line(subject)


def _clip(text: str, limit: int) -> str:
    flat = one_line(text)
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


_WORDS = {
    ZH: {"order": "订单", "what": "发生了什么", "detail": "详情", "todo": "请处理",
         "about": "对象"},
    EN: {"order": "Order", "what": "What happened", "detail": "Details", "todo": "What to do",
         "about": "About"},
}


def render(kind: str, *, order: str, severity: Severity, link: str, language: Language,
           detail: str = "", subject: str = "", mentions: tuple[str, ...] = ()) -> Message:
    """One alert. Without an order number the subject names what it is about.

    `order`, `subject` and `detail` come from outside (a marketplace, a buyer, a partner): each
    stays on its own line here, and is plain text in the Message, which every channel escapes
    for its format (chalicelib/cs/channels/escaping.py)."""
    template, words = template_for(kind), _WORDS[language]
    order, subject = one_line(order), one_line(subject)
    sep = "：" if language is ZH else ": "
    reference = f"{words['order']} {order}" if order else subject
    title = f"{_severity_tag(severity, language)}{label(kind, language)}"
    title += f" · {reference}" if reference else ""
    lines = [f"{words['order']}{sep}{order}" if order else f"{words['about']}{sep}{subject}",
             f"{words['what']}{sep}{template.what[language]}"]
    if detail.strip():
        lines.append(f"{words['detail']}{sep}{_clip(detail, DETAIL_MAX_CHARS)}")
    lines.append(f"{words['todo']}{sep}{template.todo[language]}")
    return Message(title=title, text="\n".join(lines), severity=severity, link=link,
                   language=language, kind=kind, mentions=mentions)


def _severity_tag(severity: Severity, language: Language) -> str:
    # Full-width brackets need no space after them; ASCII ones do.
    text = SEVERITY_LABEL[language][severity]
    return f"【{text}】" if language is ZH else f"[{text}] "


def render_alert(alert: Alert, *, link: str, language: Language,
                 mentions: tuple[str, ...] = ()) -> Message:
    order = order_ref(alert.facts)
    return render(alert.kind, order=order, severity=alert.severity, link=link,
                  language=language, detail=alert.summary, subject=alert.subject,
                  mentions=mentions)


# Digest ----------------------------------------------------------------------------------------

class Summarisable(Protocol):
    @property
    def kind(self) -> str: ...

    @property
    def severity(self) -> Severity: ...

    @property
    def order(self) -> str: ...


DIGEST_MAX_KINDS = 8  # more lines than this stop being a summary
DIGEST_SAMPLE_ORDERS = 3


def digest(cases: Sequence[Summarisable], *, start: datetime, end: datetime, link: str,
           language: Language, zone: ZoneInfo = DEFAULT_ZONE) -> Message:
    """One message for a burst: how many, of which kinds, a few order numbers, one link."""
    if not cases:
        raise ValueError("a digest needs at least one case")
    severity = worst(case.severity for case in cases)
    counts = Counter(label(case.kind, language) for case in cases)
    samples: dict[str, list[str]] = {}
    for case in cases:
        key = label(case.kind, language)
        if case.order and len(samples.setdefault(key, [])) < DIGEST_SAMPLE_ORDERS:
            samples[key].append(one_line(case.order))
    span = f"{start.astimezone(zone):%H:%M}–{end.astimezone(zone):%H:%M}"
    lines = [_digest_line(name, count, samples.get(name, []), language)
             for name, count in counts.most_common(DIGEST_MAX_KINDS)]
    hidden = len(counts) - DIGEST_MAX_KINDS
    if language is ZH:
        title = f"{_severity_tag(severity, language)}异常汇总 {span} 共 {len(cases)} 条"
        if hidden > 0:
            lines.append(f"另有 {hidden} 类未列出")
        lines.append("请处理：打开链接逐条处理，所有案例都在列表中。")
    else:
        title = f"{_severity_tag(severity, language)}Digest {span}: {len(cases)} cases"
        if hidden > 0:
            lines.append(f"and {hidden} more kinds")
        lines.append("What to do: open the link; every case is in the list.")
    return Message(title=title, text="\n".join(lines), severity=severity, link=link,
                   language=language, kind="digest")


def _digest_line(name: str, count: int, orders: list[str], language: Language) -> str:
    line = f"{name} ×{count}"
    if orders:
        more = "…" if count > len(orders) else ""
        line += (f"（{'、'.join(orders)}{more}）" if language is ZH
                 else f" ({', '.join(orders)}{more})")
    return line
