"""The factory warehouse's work: fulfilment jobs and every transition (jobs.py), where a parcel
goes and with which courier at what cost (regions.py, carriers.py), when it must ship
(dispatch.py), waves and returns; the jobs table (job_store.py)."""
