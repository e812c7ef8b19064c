"""Destination regions: where a parcel goes, as the handbook prices it. Pure: no I/O.

Routing is three modules: this one (the region of an address), chalicelib/warehouse/carriers.py
(the courier and its expected cost) and chalicelib/warehouse/dispatch.py (ship-by and the
factory's deadlines). Every list here is a default an operator overrides from JSON
(`RegionRules`, inside `CarrierRules.regions`).

Regions (the handbook prices parcels by destination):
- jzh: Jiangsu, Zhejiang, Shanghai, the whole provinces (江浙沪 is priced as one zone).
- tier12: the municipalities Beijing, Tianjin, Chongqing (their city fields are often districts)
  and the listed first-, new-first- and second-tier cities outside JZH (after the Yicai city
  tiers), see `TIER12_CITIES`.
- remote: everything else in the mainland. The provinces couriers customarily price as remote
  (Xinjiang, Xizang, Qinghai, Inner Mongolia, Ningxia, Gansu, Hainan) stay remote even if an
  operator prices the other third-tier cities as tier12 (`third_tier_region`); a listed tier12
  city still wins. An address we cannot place at all is remote: budget the highest band.
- international: any other country, and Hong Kong, Macau, Taiwan (customs) even under CN.
"""

from __future__ import annotations

import re
import unicodedata
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, field_serializer, field_validator

from chalicelib.orders.order import Address


class Region(StrEnum):
    JZH = "jzh"
    TIER12 = "tier12"
    REMOTE = "remote"
    INTERNATIONAL = "international"


# Place names ------------------------------------------------------------------------------------

# Shopify's CN zone codes (Shopify/worldwide db/data/regions/CN.yml) with English, pinyin and
# Chinese names. Xizang is "YZ" there; its ISO code "XZ" is accepted as an alias.
_PROVINCES: dict[str, tuple[str, ...]] = {
    "AH": ("Anhui", "安徽"),
    "BJ": ("Beijing", "Peking", "北京"),
    "CQ": ("Chongqing", "重庆"),
    "FJ": ("Fujian", "福建"),
    "GS": ("Gansu", "甘肃"),
    "GD": ("Guangdong", "广东"),
    "GX": ("Guangxi", "Guangxi Zhuang", "广西"),
    "GZ": ("Guizhou", "贵州"),
    "HI": ("Hainan", "海南"),
    "HE": ("Hebei", "河北"),
    "HL": ("Heilongjiang", "黑龙江"),
    "HA": ("Henan", "河南"),
    "HB": ("Hubei", "湖北"),
    "HN": ("Hunan", "湖南"),
    "NM": ("Inner Mongolia", "Nei Mongol", "Neimenggu", "内蒙古"),
    "JS": ("Jiangsu", "江苏"),
    "JX": ("Jiangxi", "江西"),
    "JL": ("Jilin", "吉林"),
    "LN": ("Liaoning", "辽宁"),
    "NX": ("Ningxia", "Ningxia Hui", "宁夏"),
    "QH": ("Qinghai", "青海"),
    "SN": ("Shaanxi", "陕西"),
    "SD": ("Shandong", "山东"),
    "SH": ("Shanghai", "上海"),
    "SX": ("Shanxi", "山西"),
    "SC": ("Sichuan", "四川"),
    "TJ": ("Tianjin", "天津"),
    "XJ": ("Xinjiang", "Xinjiang Uygur", "Xinjiang Uyghur", "新疆"),
    "YZ": ("Xizang", "Tibet", "西藏"),
    "YN": ("Yunnan", "云南"),
    "ZJ": ("Zhejiang", "浙江"),
    # Not mainland: parcels there go through customs, so they are international.
    "HK": ("Hong Kong", "香港"),
    "MO": ("Macau", "Macao", "澳门"),
    "TW": ("Taiwan", "台湾"),
}
_CODE_ALIASES = {"XZ": "YZ"}
_OUTSIDE_MAINLAND = frozenset({"HK", "MO", "TW"})

# (province, names...): cities we can recognise. The first name is the key rules refer to. Besides
# the tier12 list this holds JZH and remote-province cities, so a city alone places an address.
_CITIES: tuple[tuple[str, ...], ...] = (
    ("SH", "Shanghai", "上海"),
    ("JS", "Nanjing", "南京"), ("JS", "Suzhou", "苏州"), ("JS", "Wuxi", "无锡"),
    ("JS", "Changzhou", "常州"), ("JS", "Nantong", "南通"), ("JS", "Xuzhou", "徐州"),
    ("ZJ", "Hangzhou", "杭州"), ("ZJ", "Ningbo", "宁波"), ("ZJ", "Wenzhou", "温州"),
    ("ZJ", "Shaoxing", "绍兴"), ("ZJ", "Jiaxing", "嘉兴"), ("ZJ", "Jinhua", "金华"),
    ("BJ", "Beijing", "Peking", "北京"), ("TJ", "Tianjin", "天津"), ("CQ", "Chongqing", "重庆"),
    ("GD", "Guangzhou", "Canton", "广州"), ("GD", "Shenzhen", "深圳"), ("GD", "Dongguan", "东莞"),
    ("GD", "Foshan", "佛山"), ("GD", "Zhuhai", "珠海"), ("GD", "Huizhou", "惠州"),
    ("GD", "Zhongshan", "中山"),
    ("SC", "Chengdu", "成都"), ("HB", "Wuhan", "武汉"), ("SN", "Xi'an", "Xian", "西安"),
    ("HN", "Changsha", "长沙"), ("HA", "Zhengzhou", "郑州"), ("AH", "Hefei", "合肥"),
    ("SD", "Qingdao", "青岛"), ("SD", "Jinan", "济南"), ("SD", "Yantai", "烟台"),
    ("SD", "Weifang", "潍坊"), ("SD", "Linyi", "临沂"),
    ("FJ", "Xiamen", "厦门"), ("FJ", "Fuzhou", "福州"), ("FJ", "Quanzhou", "泉州"),
    ("LN", "Shenyang", "沈阳"), ("LN", "Dalian", "大连"), ("JL", "Changchun", "长春"),
    ("HL", "Harbin", "Haerbin", "哈尔滨"), ("HE", "Shijiazhuang", "石家庄"),
    ("HE", "Baoding", "保定"), ("SX", "Taiyuan", "太原"), ("JX", "Nanchang", "南昌"),
    ("YN", "Kunming", "昆明"), ("GZ", "Guiyang", "贵阳"), ("GX", "Nanning", "南宁"),
    ("XJ", "Urumqi", "Wulumuqi", "乌鲁木齐"), ("YZ", "Lhasa", "Lasa", "拉萨"),
    ("QH", "Xining", "西宁"), ("NX", "Yinchuan", "银川"), ("GS", "Lanzhou", "兰州"),
    ("NM", "Hohhot", "Huhehaote", "呼和浩特"), ("HI", "Haikou", "海口"), ("HI", "Sanya", "三亚"),
    ("HK", "Hong Kong", "香港"), ("MO", "Macau", "Macao", "澳门"),
)

# First, new-first and second tier outside JZH (Yicai 2023 tiers); JZH cities are jzh anyway.
TIER12_CITIES = frozenset({
    "beijing", "tianjin", "chongqing", "guangzhou", "shenzhen", "dongguan", "foshan", "zhuhai",
    "huizhou", "zhongshan", "chengdu", "wuhan", "xian", "changsha", "zhengzhou", "hefei",
    "qingdao", "jinan", "yantai", "weifang", "linyi", "xiamen", "fuzhou", "quanzhou", "shenyang",
    "dalian", "changchun", "harbin", "shijiazhuang", "baoding", "taiyuan", "nanchang", "kunming",
    "guiyang", "nanning",
})

_EN_SUFFIX = re.compile(
    r"\s+(province|sheng|shi|city|municipality|autonomous region|zizhiqu|sar)$")
_SEPARATORS = re.compile(r"[\s'’`.\-_·]+")
_ZH_SUFFIXES = ("维吾尔自治区", "壮族自治区", "回族自治区", "特别行政区", "自治区", "省", "市")


def normalise_name(name: str) -> str:
    """One spelling per place (and per courier name, carriers.py): case, width, spacing and
    administrative suffixes don't matter."""
    folded = _EN_SUFFIX.sub("", unicodedata.normalize("NFKC", name).strip().casefold())
    folded = _SEPARATORS.sub("", folded)
    for suffix in _ZH_SUFFIXES:
        if folded.endswith(suffix) and len(folded) > len(suffix):
            return folded.removesuffix(suffix)
    return folded


_PROVINCE_BY_NAME = {
    normalise_name(name): code for code, names in _PROVINCES.items() for name in names
}


def _city_index() -> dict[str, tuple[tuple[str, str], ...]]:
    index: dict[str, tuple[tuple[str, str], ...]] = {}
    for province, *names in _CITIES:
        key = normalise_name(names[0])
        for spelling in {normalise_name(name) for name in names}:
            index[spelling] = (*index.get(spelling, ()), (key, province))
    return index


_CITY_INDEX = _city_index()  # spelling -> ((key, province), ...): pinyin is ambiguous


def province_code(text: str) -> str | None:
    """Shopify zone code of a province given as a code ("SH", "CN-JS") or a name ("江苏省")."""
    code = text.strip().upper().removeprefix("CN-")
    code = _CODE_ALIASES.get(code, code)
    return code if code in _PROVINCES else _PROVINCE_BY_NAME.get(normalise_name(text))


def province_of(place: str) -> str | None:
    """The province of a place named by its province or its city (a parcel's destination)."""
    return province_code(place) or _city_province(place) if place.strip() else None


def _canonical_city(name: str) -> str:
    entries = _CITY_INDEX.get(normalise_name(name), ())
    return entries[0][0] if entries else normalise_name(name)


def _canonical_province(text: str) -> str:
    code = province_code(text)
    if code is None:
        raise ValueError(f"unknown province {text!r}")
    return code


class RegionRules(BaseModel):
    """Which destinations fall in which cost region. Provinces by code or name, cities by name."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    jzh_provinces: frozenset[str] = frozenset({"SH", "JS", "ZJ"})
    tier12_provinces: frozenset[str] = frozenset({"BJ", "TJ", "CQ"})
    tier12_cities: frozenset[str] = TIER12_CITIES
    remote_provinces: frozenset[str] = frozenset({"XJ", "YZ", "QH", "NM", "NX", "GS", "HI"})
    # Unlisted cities outside the remote provinces; the handbook prices them with remote areas.
    third_tier_region: Literal[Region.TIER12, Region.REMOTE] = Region.REMOTE

    @field_validator("jzh_provinces", "tier12_provinces", "remote_provinces")
    @classmethod
    def _province_codes(cls, value: frozenset[str]) -> frozenset[str]:
        return frozenset(_canonical_province(item) for item in value)

    @field_validator("tier12_cities")
    @classmethod
    def _city_keys(cls, value: frozenset[str]) -> frozenset[str]:
        return frozenset(_canonical_city(item) for item in value)

    @field_serializer("jzh_provinces", "tier12_provinces", "tier12_cities", "remote_provinces")
    def _sorted(self, value: frozenset[str]) -> list[str]:
        return sorted(value)  # stable JSON an operator can diff


DEFAULT_REGION_RULES = RegionRules()


def _is_domestic(address: Address) -> bool:
    country = address.country_code.strip().upper()
    if country:
        return country in ("CN", "CHN")
    # Domestic marketplaces may leave the country out: trust Chinese place names, never a bare
    # code (HI, NM, SC are US states too).
    return (_PROVINCE_BY_NAME.get(normalise_name(address.province)) is not None
            or normalise_name(address.city) in _CITY_INDEX)


def _city_key(city: str, province: str | None) -> str | None:
    """The city's rule key; None for a namesake in another province (Fuzhou, Jiangxi)."""
    name = normalise_name(city)
    entries = _CITY_INDEX.get(name)
    if not entries:
        return name or None
    return next((key for key, where in entries if province in (None, where)), None)


def _city_province(city: str) -> str | None:
    entries = _CITY_INDEX.get(normalise_name(city), ())
    return entries[0][1] if entries else None


def region_of(address: Address, rules: RegionRules = DEFAULT_REGION_RULES) -> Region:
    """The cost region of a destination; see the module docstring for the lists."""
    if not _is_domestic(address):
        return Region.INTERNATIONAL
    # The structured code is what Shopify validates; the free-text name is the fallback.
    province = province_code(address.province_code) if address.province_code.strip() else None
    province = province or province_code(address.province) or _city_province(address.city)
    if province in _OUTSIDE_MAINLAND:
        return Region.INTERNATIONAL
    if province in rules.jzh_provinces:
        return Region.JZH
    city = _city_key(address.city, province)
    if province in rules.tier12_provinces or city in rules.tier12_cities:
        return Region.TIER12
    if province is None or province in rules.remote_provinces:
        return Region.REMOTE
    return rules.third_tier_region
