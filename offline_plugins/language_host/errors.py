"""The one error type the host reports to the engine as a plain message (never a traceback).

Shared by every offline language host: defined in offline_plugins.common.language_runtime.
"""

from __future__ import annotations

from offline_plugins.common.language_runtime import HostError

__all__ = ["HostError"]
