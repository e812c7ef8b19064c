"""Reports and KPIs: the daily dispatch report, the Friday weekly and the 1st-of-month monthly
report, the factory scorecard and the CS score sheet, computed from stored events (pure rules
here; the reads are flows/reports.py's)."""
