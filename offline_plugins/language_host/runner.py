"""Run a Pulumi program: `<python> -u pulumi-language-python-exec <flags> <entry point> <args>`."""

from __future__ import annotations

import json

from pulumi.runtime.proto import language_pb2

from offline_plugins.common.programs import RunningPrograms, run_to_completion
from offline_plugins.language_host.errors import HostError
from offline_plugins.language_host.exec_shim import find_exec_shim
from offline_plugins.language_host.options import ProgramOptions
from offline_plugins.language_host.python_env import interpreter, program_environment


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


def run_program(
    req: language_pb2.RunRequest,
    opts: ProgramOptions,
    engine_address: str,
    running: RunningPrograms,
) -> language_pb2.RunResponse:
    if req.attach_debugger:
        raise HostError("attaching a debugger is not supported by the offline Python language host")
    running.refuse_if_cancelled()
    shim = find_exec_shim()
    command = [interpreter(opts), "-u", str(shim), *exec_arguments(req, opts, engine_address)]
    return run_to_completion(command, opts.program_dir, run_environment(req, opts), running)
