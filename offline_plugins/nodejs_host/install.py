"""InstallDependencies: `npm install --loglevel=error [--production]`, as the official host."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

from offline_plugins.common.language_runtime import HostError
from offline_plugins.common.programs import Chunk, stream_command, without_own_sources
from offline_plugins.nodejs_host.options import NodeOptions, require_npm


def npm_binary() -> str:
    found = shutil.which("npm")
    if found is None:
        raise HostError("could not find npm on the $PATH; install Node.js with npm")
    return found


def install_command(opts: NodeOptions) -> list[str]:
    # --loglevel=error: npm's warnings about missing fields in package.json are noise here.
    command = [npm_binary(), "install", "--loglevel=error"]
    if opts.production:
        command.append("--production")
    return command


def _has_node_modules(start: Path) -> bool:
    return any((folder / "node_modules").is_dir() for folder in (start, *start.parents))


def install_dependencies(opts: NodeOptions) -> Iterator[Chunk]:
    require_npm(opts)
    yield "stdout", b"Installing dependencies...\n\n"
    if not (opts.program_dir / "package.json").is_file():
        raise HostError(
            f"no package.json in {opts.program_dir}: a Node.js program lists its packages "
            "(at least @pulumi/pulumi) there"
        )
    command = install_command(opts)
    yield "stdout", f"Running {' '.join(command)}\n".encode()
    yield from stream_command(command, opts.program_dir, without_own_sources())
    if not _has_node_modules(opts.program_dir):
        raise HostError("npm install reported success, but node_modules directory is missing")
    yield "stdout", b"Finished installing dependencies\n\n"
