"""`python -m offline_plugins.command_provider <engine-address> [flags]`: serve until signalled."""

from __future__ import annotations

import sys

from pulumi.runtime.proto import provider_pb2_grpc

from offline_plugins.command_provider.provider import CommandProvider
from offline_plugins.common.serve import engine_address, serve


def main() -> int:
    engine = engine_address(sys.argv[1:])
    provider = CommandProvider(engine)
    return serve(
        lambda server: provider_pb2_grpc.add_ResourceProviderServicer_to_server(provider, server),
        engine=engine,
        # Scripts still running when the plugin stops are killed, not orphaned.
        on_stop=provider.cancel,
    )


if __name__ == "__main__":
    sys.exit(main())
