"""Run a Pulumi program: `<python> -u pulumi-language-python-exec <flags> <entry point> <args>`."""

from __future__ import annotations

import json
import subprocess
import sys

from pulumi.runtime.proto import language_pb2

from offline_plugins.language_host.errors import HostError
from offline_plugins.language_host.exec_shim import find_exec_shim
from offline_plugins.language_host.options import ProgramOptions
from offline_plugins.language_host.processes import RunningPrograms
from offline_plugins.language_host.python_env import interpreter, program_environment

# The exec shim exits with this code after it has shown the user an actionable message.
EXITED_AFTER_SHOWING_MESSAGE = 32


def exec_arguments(
    req: language_pb2.RunRequest, opts: ProgramOptions, engine_address: str
) -> list[str]:
    """The shim's flags, as the official host passes them (empty values are left out)."""
    flags = [
        ("monitor", req.monitor_address),
        ("engine", engine_address),
        ("project", req.project),
        ("root_directory", str(opts.root)),
        ("stack", req.stack),
        ("pwd", req.pwd),
        ("dry_run", "true" if req.dryRun else "false"),
        ("parallel", str(req.parallel)),
        ("organization", req.organization),
    ]
    args = [arg for name, value in flags if value for arg in (f"--{name}", value)]
    return [*args, opts.entry_path, *req.args]


def run_environment(req: language_pb2.RunRequest, opts: ProgramOptions) -> dict[str, str]:
    env = program_environment(opts)
    env["PULUMI_CONFIG"] = json.dumps(dict(req.config))
    env["PULUMI_CONFIG_SECRET_KEYS"] = json.dumps(list(req.configSecretKeys))
    return env


def exit_response(code: int) -> language_pb2.RunResponse:
    if code == 0:
        return language_pb2.RunResponse()
    if code == EXITED_AFTER_SHOWING_MESSAGE:
        return language_pb2.RunResponse(bail=True)
    if code < 0:
        return language_pb2.RunResponse(error=f"program was stopped by signal {-code}")
    return language_pb2.RunResponse(error=f"program exited with non-zero exit code: {code}")


def run_program(
    req: language_pb2.RunRequest,
    opts: ProgramOptions,
    engine_address: str,
    running: RunningPrograms,
) -> language_pb2.RunResponse:
    if req.attach_debugger:
        raise HostError("attaching a debugger is not supported by the offline Python language host")
    if running.cancelled.is_set():
        raise HostError("the language host was cancelled; no more programs are run")
    shim = find_exec_shim()
    command = [interpreter(opts), "-u", str(shim), *exec_arguments(req, opts, engine_address)]
    # Everything the program prints goes straight to our stdout/stderr, which the engine shows.
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        proc = subprocess.Popen(
            command,
            cwd=opts.program_dir,
            env=run_environment(req, opts),
            stdin=subprocess.DEVNULL,  # the engine's pipe to us is not the program's input
        )
    except OSError as exc:
        return language_pb2.RunResponse(
            error=f"problem executing program (could not run language executor): {exc}"
        )
    running.add(proc)
    try:
        code = proc.wait()
    finally:
        running.remove(proc)
    return exit_response(code)
