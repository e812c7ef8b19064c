"""Who may call us: API keys and roles (keys.py), integration accounts (accounts.py: webhook
sources, courier providers, CS channels); the directory table (directory_store.py)."""
