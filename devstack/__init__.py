"""Local stand-ins for what AWS does around the app: event sources, schedules, the local stack."""
