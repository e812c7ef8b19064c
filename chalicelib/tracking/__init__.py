"""Following parcels: the two normalised axes (model.py), the fold of scans (fold.py), the
clock's judgement (thresholds.py), when to look again (polling.py, watch.py), what a change
means for CS and the order (parcels.py); one module per provider (couriers/); the shipments
table (parcel_store.py)."""
