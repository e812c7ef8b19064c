"""Simulated marketplaces for `make run` and the end-to-end tests: one module per platform on
the shared `base.MarketplaceSimulator` (a shop's orders, its API on a local port, signed
notifications with duplicates, reordering and drops, and the writebacks it received)."""

from __future__ import annotations

import importlib
from typing import Any

# Platform (the adapter's scheme) -> "module:class".
SIMULATORS = {
    "shopify": "devstack.marketplaces.shopify:ShopifySimulator",
    "woocommerce": "devstack.marketplaces.woocommerce:WooCommerceSimulator",
    "douyin": "devstack.marketplaces.douyin:DouyinSimulator",
    "tiktok_shop": "devstack.marketplaces.tiktok_shop:TikTokShopSimulator",
    "shopee": "devstack.marketplaces.shopee:ShopeeSimulator",
    "lazada": "devstack.marketplaces.lazada:LazadaSimulator",
    "amazon": "devstack.marketplaces.amazon:AmazonSimulator",  # sends to our SQS queue
    "taobao": "devstack.marketplaces.taobao:TaobaoSimulator",  # holds TMC messages
}


def simulator_class(platform: str) -> Any:
    module, _, name = SIMULATORS[platform].partition(":")
    return getattr(importlib.import_module(module), name)
