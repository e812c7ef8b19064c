"""Who may call us: API keys and roles (keys.py), integration accounts (accounts.py: webhook
sources, courier providers, CS channels); the directory table (directory_store.py: keys) and
the accounts' SecureStrings in SSM Parameter Store (accounts_store.py)."""
