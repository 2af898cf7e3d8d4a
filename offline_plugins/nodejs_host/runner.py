"""Run a program: `node <nodeargs> <@pulumi/pulumi/cmd/run> <flags> <entry point> <args>`.

As the official host does, the SDK's runner is found with node's own module resolution from the
program folder, the flags carry the engine, monitor, project, stack, pwd, dry-run and
parallelism, and the config reaches the program in PULUMI_CONFIG / PULUMI_CONFIG_SECRET_KEYS.
Unlike it, no monitor proxy and no `--sync` pipes stand in between: the SDK talks to the
engine's monitor directly (the pipes only serve the long-deprecated synchronous invokes).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess

from pulumi.runtime.proto import language_pb2

from offline_plugins.common.language_runtime import HostError
from offline_plugins.common.programs import (
    RunningPrograms,
    run_to_completion,
    without_own_sources,
)
from offline_plugins.nodejs_host.options import NodeOptions

# What the official host runs; tests of the SDK may point elsewhere, as upstream allows.
DEFAULT_RUN_PATH = "@pulumi/pulumi/cmd/run"
RUN_PATH_ENV = "PULUMI_LANGUAGE_NODEJS_RUN_PATH"
LOCATE_TIMEOUT_SECONDS = 60


def node_binary() -> str:
    found = shutil.which("node")
    if found is None:
        raise HostError("could not find node on the $PATH; install Node.js (18 or newer)")
    return found


def locate_module(node: str, module: str, program_dir: str) -> str:
    """Resolve `module` as the program would (`require.resolve` from its folder)."""
    script = (
        f"try {{ console.log(require.resolve({json.dumps(module)})); }} catch (error) {{ "
        "if (error.code === 'MODULE_NOT_FOUND') { console.error('It looks like the Pulumi SDK "
        "has not been installed. Have you run pulumi install?'); } else { "
        "console.error(error.message); } process.exit(1); }"
    )
    try:
        result = subprocess.run(
            [node, "-e", script],
            cwd=program_dir,
            env=without_own_sources(),
            capture_output=True,
            text=True,
            timeout=LOCATE_TIMEOUT_SECONDS,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise HostError(f"could not run {node} to find {module}: {exc}") from exc
    if result.returncode != 0:
        raise HostError(result.stderr.strip() or f"could not resolve {module}")
    return result.stdout.strip()


def run_arguments(
    req: language_pb2.RunRequest, opts: NodeOptions, run_path: str, engine_address: str
) -> list[str]:
    """The runner's flags, in the official host's order (empty values are left out)."""
    flags = [
        ("monitor", req.monitor_address),
        ("engine", engine_address),
        ("organization", req.organization),
        ("project", req.project),
        ("root-directory", str(opts.root)),
        ("stack", req.stack),
        ("pwd", str(opts.program_dir)),
    ]
    args = [run_path]
    args += [arg for name, value in flags if value for arg in (f"--{name}", value)]
    if req.dryRun:
        args.append("--dry-run")
    args += ["--parallel", str(req.parallel)]
    return [*args, opts.entry_point, *req.args]


def config_key(key: str) -> str:
    """`<namespace>:<name>` or `<namespace>:config:<name>` → the latter (the CLI's ParseKey)."""
    parts = key.split(":")
    if len(parts) == 2 or (len(parts) == 3 and parts[1] == "config"):
        return f"{parts[0]}:config:{parts[-1]}"
    raise HostError(
        f"could not parse {key} as a configuration key (configuration keys should be of the "
        "form `<namespace>:<name>`)"
    )


def config_json(req: language_pb2.RunRequest) -> str:
    """PULUMI_CONFIG with keys in the old `<namespace>:config:<name>` form the official host
    sends, so SDKs of every age read it."""
    return json.dumps({config_key(key): value for key, value in req.config.items()})


def run_environment(req: language_pb2.RunRequest, opts: NodeOptions) -> dict[str, str]:
    env = without_own_sources()
    env["PULUMI_CONFIG"] = config_json(req)
    env["PULUMI_CONFIG_SECRET_KEYS"] = json.dumps(list(req.configSecretKeys))
    if opts.typescript:
        env["PULUMI_NODEJS_TYPESCRIPT"] = "true"
    if opts.tsconfig:
        env["PULUMI_NODEJS_TSCONFIG_PATH"] = opts.tsconfig
    return env


def run_program(
    req: language_pb2.RunRequest,
    opts: NodeOptions,
    engine_address: str,
    running: RunningPrograms,
) -> language_pb2.RunResponse:
    if req.attach_debugger:
        raise HostError(
            "attaching a debugger is not supported by the offline Node.js language host"
        )
    running.refuse_if_cancelled()
    try:
        node = node_binary()
        run_path = locate_module(
            node, os.environ.get(RUN_PATH_ENV) or DEFAULT_RUN_PATH, str(opts.program_dir)
        )
    except HostError as exc:
        # The official host answers these in the response, so the engine shows them plainly.
        return language_pb2.RunResponse(error=str(exc))
    command = [node, *opts.nodeargs, *run_arguments(req, opts, run_path, engine_address)]
    return run_to_completion(command, opts.program_dir, run_environment(req, opts), running)
