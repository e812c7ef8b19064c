"""Customer service: alerts and the alert topic, one case per problem (cases.py), who hears and
when (routing.py, rota.py, noise.py, notes.py), the words (templates.py) and one module per
channel (channels/); the cases table and its outbox (case_store.py, outbox_store.py)."""
