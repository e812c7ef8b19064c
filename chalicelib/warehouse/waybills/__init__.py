"""Electronic waybills (电子面单): the courier number and the printable label a package gets at
print time, from the courier network (Kuaidi100), or through the platform's own channel for
orders whose receivers are encrypted (Cainiao for Taobao/Tmall, Douyin's e-waybill).

`contract.py` is the one typed contract, `registry.py` picks the provider for a marketplace and
courier, and each provider is one module (`kuaidi100.py`, `cainiao.py`, `douyin_waybill.py`).
"""
