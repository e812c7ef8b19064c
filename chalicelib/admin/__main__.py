"""`python -m chalicelib.admin ...`: the administrators' command line (see cli.py)."""

from chalicelib.admin.cli import main

main()
