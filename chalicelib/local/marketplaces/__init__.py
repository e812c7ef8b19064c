"""Simulated marketplaces for `make run` and the end-to-end tests: one module per platform on
the shared `base.MarketplaceSimulator` (a shop's orders, its API on a local port, signed
notifications with duplicates, reordering and drops, and the writebacks it received)."""

from __future__ import annotations

import importlib
from typing import Any

# Platform (the adapter's scheme) -> "module:class".
SIMULATORS = {
    "shopify": "chalicelib.local.marketplaces.shopify:ShopifySimulator",
    "woocommerce": "chalicelib.local.marketplaces.woocommerce:WooCommerceSimulator",
    "douyin": "chalicelib.local.marketplaces.douyin:DouyinSimulator",
    "tiktok_shop": "chalicelib.local.marketplaces.tiktok_shop:TikTokShopSimulator",
    "shopee": "chalicelib.local.marketplaces.shopee:ShopeeSimulator",
    "lazada": "chalicelib.local.marketplaces.lazada:LazadaSimulator",
    "amazon": "chalicelib.local.marketplaces.amazon:AmazonSimulator",  # sends to our SQS queue
    "taobao": "chalicelib.local.marketplaces.taobao:TaobaoSimulator",  # holds TMC messages
}


def simulator_class(platform: str) -> Any:
    module, _, name = SIMULATORS[platform].partition(":")
    return getattr(importlib.import_module(module), name)
