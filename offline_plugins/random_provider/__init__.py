"""Offline `random` resource plugin: only `random:index/randomPassword:RandomPassword`.

Reports the version the pinned pulumi_random wheel requests, so the engine uses it in its place.
"""

PACKAGE = "random"
VERSION = "4.21.4"
PASSWORD_TYPE = "random:index/randomPassword:RandomPassword"
