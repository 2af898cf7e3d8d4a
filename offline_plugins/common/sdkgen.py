"""GeneratePackage for the offline language hosts: `pulumi package gen-sdk` asks the language host
to write a package's SDK. The official hosts call pulumi/pkg's codegen in-process; ours hand the
request to `pulumi-sdkgen` (toolchain/sdkgen/main.go, the same calls, built from Go modules by
`make toolchain`).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
from pathlib import Path

from pulumi.runtime.proto import language_pb2

from offline_plugins.common.language_runtime import HostError

SDKGEN_NAME = "pulumi-sdkgen"
# Set by whoever installs the hosts when the tool lives somewhere else.
SDKGEN_ENV = "SUPAQUEUE_PULUMI_SDKGEN"
SDKGEN_TIMEOUT_SECONDS = 600


def find_sdkgen() -> str:
    """$SUPAQUEUE_PULUMI_SDKGEN, else the tool on PATH, else next to the `pulumi` on PATH."""
    configured = os.environ.get(SDKGEN_ENV)
    if configured:
        if not os.path.isfile(configured):
            raise HostError(f"{SDKGEN_ENV} is set to {configured!r}, which is not a file")
        return configured
    on_path = shutil.which(SDKGEN_NAME)
    if on_path:
        return on_path
    pulumi = shutil.which("pulumi")
    if pulumi:
        for folder in (Path(pulumi).parent, Path(pulumi).resolve().parent):
            if (folder / SDKGEN_NAME).is_file():
                return str(folder / SDKGEN_NAME)
    raise HostError(
        f"could not find {SDKGEN_NAME}, which generates SDKs for the offline language hosts: "
        f"set {SDKGEN_ENV}, or put it on PATH or next to `pulumi` (`make toolchain` builds it)"
    )


def generate_package(
    language: str, request: language_pb2.GeneratePackageRequest
) -> language_pb2.GeneratePackageResponse:
    """Write the SDK for `language` into request.directory, as the official host does."""
    payload = {
        "schema": request.schema,
        "extra_files": {
            name: base64.b64encode(data).decode() for name, data in request.extra_files.items()
        },
        "local_dependencies": dict(request.local_dependencies),
    }
    command = [find_sdkgen(), "-language", language, "-dir", request.directory]
    if request.loader_target:
        command += ["-loader", request.loader_target]
    if request.local:
        command.append("-local")
    try:
        done = subprocess.run(
            command,
            input=json.dumps(payload),
            capture_output=True,
            text=True,
            timeout=SDKGEN_TIMEOUT_SECONDS,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise HostError(f"could not run {SDKGEN_NAME}: {exc}") from exc
    if done.returncode != 0:
        raise HostError(
            f"generating the {language} SDK failed: {done.stderr.strip() or done.returncode}"
        )
    return language_pb2.GeneratePackageResponse()
