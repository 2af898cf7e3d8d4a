"""The programs the host is running, so a Cancel or a shutdown can end them.

Shared by every offline language host: defined in offline_plugins.common.programs.
"""

from __future__ import annotations

from offline_plugins.common.programs import TERMINATE_GRACE_SECONDS, RunningPrograms

__all__ = ["TERMINATE_GRACE_SECONDS", "RunningPrograms"]
