"""`python -m offline_plugins.nodejs_host [flags...] ENGINE_ADDRESS`, as the CLI starts it."""

from __future__ import annotations

import sys

from pulumi.runtime.proto import language_pb2_grpc

from offline_plugins.common.serve import engine_address, serve
from offline_plugins.nodejs_host import VERSION
from offline_plugins.nodejs_host.host import NodeLanguageHost


def main(argv: list[str]) -> int:
    if "-version" in argv or "--version" in argv:
        print(VERSION)
        return 0
    engine = engine_address(argv)
    host = NodeLanguageHost(engine)
    return serve(
        lambda server: language_pb2_grpc.add_LanguageRuntimeServicer_to_server(host, server),
        engine=engine,
        on_stop=host.running.stop_all,
    )


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except KeyboardInterrupt:
        # A signal before the handlers are installed: stopping is still the normal end.
        sys.exit(0)
