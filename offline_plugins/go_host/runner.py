"""Run a Go program: `go build` it (or take the `binary` option), then run it.

The Go SDK reads everything from the environment: PULUMI_MONITOR, PULUMI_ENGINE, PULUMI_PROJECT,
PULUMI_STACK, PULUMI_ORGANIZATION, PULUMI_ROOT_DIRECTORY, PULUMI_DRY_RUN, PULUMI_PARALLEL,
PULUMI_CONFIG and PULUMI_CONFIG_SECRET_KEYS, set as the official host sets them.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

from pulumi.runtime.proto import language_pb2

from offline_plugins.common.language_runtime import HostError
from offline_plugins.common.programs import (
    RunningPrograms,
    run_to_completion,
    stream_command,
)
from offline_plugins.go_host.modules import go_binary, go_env
from offline_plugins.go_host.options import GoOptions

# The deprecated `go run` mode the official host keeps behind this variable.
USE_RUN_ENV = "PULUMI_GO_USE_RUN"


def program_environment(req: language_pb2.RunRequest, engine_address: str) -> dict[str, str]:
    env = go_env()
    values = {
        "PULUMI_ORGANIZATION": req.organization,
        "PULUMI_PROJECT": req.project,
        "PULUMI_ROOT_DIRECTORY": req.info.root_directory,
        "PULUMI_STACK": req.stack,
        "PULUMI_CONFIG": json.dumps(dict(req.config)) if req.config else "",
        "PULUMI_CONFIG_SECRET_KEYS": json.dumps(list(req.configSecretKeys)),
        "PULUMI_DRY_RUN": "true" if req.dryRun else "false",
        "PULUMI_PARALLEL": str(req.parallel),
        "PULUMI_MONITOR": req.monitor_address,
        "PULUMI_ENGINE": engine_address,
    }
    env.update({key: value for key, value in values.items() if value})
    return env


def find_binary(name: str, program_dir: Path) -> str:
    """The `binary` option: a path (relative to the program folder) or a name on PATH."""
    candidate = Path(name) if os.path.isabs(name) else program_dir / name
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return str(candidate)
    found = shutil.which(name)
    if found is None:
        raise HostError(f"unable to find '{name}' executable (the `binary` option in Pulumi.yaml)")
    return found


def compile_program(opts: GoOptions, outfile: str) -> None:
    """`go build` into `outfile`, its output reaching the engine as the official host's does."""
    if not any(opts.program_dir.glob("*.go")):
        raise HostError(
            f"Failed to find go files for 'go build' matching {opts.program_dir / '*.go'}"
        )
    command = [go_binary(), "build", "-buildvcs=false", "-o", outfile]
    command += ["-trimpath", "-ldflags", "-w -s"]
    try:
        for stream, data in stream_command(command, opts.program_dir, go_env()):
            target = sys.stdout if stream == "stdout" else sys.stderr
            target.buffer.write(data)
            target.flush()
    except HostError as exc:
        raise HostError(f"error in compiling Go: unable to run `go build`: {exc}") from exc
    if not os.access(outfile, os.X_OK):
        raise HostError("go program is not executable, does your program have a 'main' package?")


def run_program(
    req: language_pb2.RunRequest,
    opts: GoOptions,
    engine_address: str,
    running: RunningPrograms,
) -> language_pb2.RunResponse:
    if req.attach_debugger:
        raise HostError("attaching a debugger is not supported by the offline Go language host")
    if not engine_address:
        raise HostError("when debugging or running explicitly, must call Handshake before Run")
    running.refuse_if_cancelled()
    env = program_environment(req, engine_address)
    pwd = Path(req.pwd or opts.program_dir)
    if opts.binary:
        binary = find_binary(opts.binary, opts.program_dir)
        return run_to_completion([binary], pwd, env, running)
    if os.environ.get(USE_RUN_ENV):
        resp = run_to_completion(
            [go_binary(), "run", str(opts.program_dir)], Path.cwd(), env, running
        )
        # `go run` does not pass the program's exit code on; it printed it already.
        return language_pb2.RunResponse(bail=True) if resp.error or resp.bail else resp
    if opts.build_target:
        target = Path(opts.build_target)
        # Relative to the program folder, where `go build -o` runs.
        outfile = str(target if target.is_absolute() else opts.program_dir / target)
        compile_program(opts, outfile)
        return run_to_completion([outfile], pwd, env, running)
    with tempfile.TemporaryDirectory(prefix="pulumi-go.") as work:
        outfile = str(Path(work) / "program")
        compile_program(opts, outfile)
        return run_to_completion([outfile], pwd, env, running)
