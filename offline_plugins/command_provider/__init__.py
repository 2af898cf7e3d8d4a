"""Offline `command` resource plugin: only `command:local:Command`.

Reports the version the pinned pulumi_command wheel requests, so the engine uses it in its place.
"""

PACKAGE = "command"
VERSION = "1.2.1"
COMMAND_TYPE = "command:local:Command"
