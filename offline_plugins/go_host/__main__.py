"""`python -m offline_plugins.go_host [flags...] ENGINE_ADDRESS`, as the CLI starts it."""

from __future__ import annotations

import sys

from offline_plugins.common.language_runtime import serve_language_host
from offline_plugins.go_host import VERSION
from offline_plugins.go_host.host import GoLanguageHost

if __name__ == "__main__":
    try:
        sys.exit(serve_language_host(sys.argv[1:], GoLanguageHost, VERSION))
    except KeyboardInterrupt:
        # A signal before the handlers are installed: stopping is still the normal end.
        sys.exit(0)
