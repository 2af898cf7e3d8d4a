"""A table trigger, in one place: `spec` (what a declaration may say), `resource` (`Trigger`,
`TriggerArgs`), `provider` (`TriggerProvider`, CRUD through SQL)."""

from supaqueue.providers.trigger.provider import TriggerProvider
from supaqueue.providers.trigger.resource import Trigger, TriggerArgs, trigger_problems

__all__ = ["Trigger", "TriggerArgs", "TriggerProvider", "trigger_problems"]
