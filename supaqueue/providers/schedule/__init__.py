"""A schedule, in one place: `spec` (what a declaration may say), `resource` (`Schedule`,
`ScheduleArgs`), `provider` (`ScheduleProvider`, CRUD through SQL)."""

from supaqueue.providers.schedule.provider import ScheduleProvider
from supaqueue.providers.schedule.resource import Schedule, ScheduleArgs, schedule_problems

__all__ = ["Schedule", "ScheduleArgs", "ScheduleProvider", "schedule_problems"]
