"""`python -m offline_plugins.random_provider <engine-address> [flags]`: serve until signalled."""

from __future__ import annotations

import sys

from pulumi.runtime.proto import provider_pb2_grpc

from offline_plugins.common.serve import engine_address, serve
from offline_plugins.random_provider.provider import RandomProvider


def main() -> int:
    return serve(
        lambda server: provider_pb2_grpc.add_ResourceProviderServicer_to_server(
            RandomProvider(), server
        ),
        engine=engine_address(sys.argv[1:]),
    )


if __name__ == "__main__":
    sys.exit(main())
