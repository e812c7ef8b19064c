"""Orders: the normalised order every marketplace maps onto and the rules for applying an
update (order.py), deliveries as they enter the inbox (deliveries.py); the orders and inbox
tables (order_store.py, inbox_store.py)."""
