"""InstallDependencies: `go mod tidy -compat=1.18` in the program folder, as the official host."""

from __future__ import annotations

from collections.abc import Iterator

from offline_plugins.common.language_runtime import HostError
from offline_plugins.common.programs import Chunk, stream_command
from offline_plugins.go_host.modules import go_binary, go_env
from offline_plugins.go_host.options import GoOptions


def install_dependencies(opts: GoOptions) -> Iterator[Chunk]:
    yield "stdout", b"Installing dependencies...\n\n"
    command = [go_binary(), "mod", "tidy", "-compat=1.18"]
    try:
        yield from stream_command(command, opts.program_dir, go_env())
    except HostError as exc:
        raise HostError(f"`go mod tidy` failed to install dependencies: {exc}") from exc
    yield "stdout", b"Finished installing dependencies\n\n"
