"""The administrators' command line: `python -m chalicelib.admin --help`."""
