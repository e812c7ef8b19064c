"""The local event runner; the module becomes a package (split in the next commit)."""

from devstack.events.pollers import EventRunner, RateSchedule, parse_schedule

__all__ = ["EventRunner", "RateSchedule", "parse_schedule"]
