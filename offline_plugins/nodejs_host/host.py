"""The LanguageRuntime service of the offline Node.js host: each RPC maps to one small module."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from typing import Any

from google.protobuf import empty_pb2
from pulumi.runtime.proto import language_pb2, language_pb2_grpc, plugin_pb2

from offline_plugins.common.language_runtime import (
    package_dependency,
    plugin_dependency,
    reported,
    reported_stream,
)
from offline_plugins.common.language_runtime import unimplemented as unimplemented_by
from offline_plugins.common.programs import RunningPrograms, without_own_sources
from offline_plugins.common.sdkgen import generate_package
from offline_plugins.nodejs_host import VERSION
from offline_plugins.nodejs_host.install import install_dependencies, npm_binary
from offline_plugins.nodejs_host.options import package_manager, parse_options, require_npm
from offline_plugins.nodejs_host.packages import program_dependencies, required_plugins
from offline_plugins.nodejs_host.runner import node_binary, run_program

VERSION_TIMEOUT_SECONDS = 30


def unimplemented(name: str) -> Callable[..., Any]:
    return unimplemented_by(name, "Node.js", "pulumi-language-nodejs")


def _output(command: list[str], cwd: str | None = None) -> str:
    """A tool's one-line answer, or "" when it cannot tell (About never fails on these)."""
    try:
        result = subprocess.run(
            command,
            cwd=cwd,
            env=without_own_sources(),
            capture_output=True,
            text=True,
            timeout=VERSION_TIMEOUT_SECONDS,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return result.stdout.strip() if result.returncode == 0 else ""


class NodeLanguageHost(language_pb2_grpc.LanguageRuntimeServicer):
    def __init__(self, engine_address: str | None) -> None:
        self.engine_address = engine_address or ""
        self.running = RunningPrograms()

    @reported
    def Handshake(self, request: language_pb2.LanguageHandshakeRequest, context: Any) -> Any:
        self.engine_address = request.engine_address or self.engine_address
        return language_pb2.LanguageHandshakeResponse()

    @reported
    def GetPluginInfo(self, request: empty_pb2.Empty, context: Any) -> plugin_pb2.PluginInfo:
        return plugin_pb2.PluginInfo(version=VERSION)

    @reported
    def GetRequiredPackages(
        self, request: language_pb2.GetRequiredPackagesRequest, context: Any
    ) -> language_pb2.GetRequiredPackagesResponse:
        opts = parse_options(request.info)
        plugins = required_plugins(opts.program_dir)
        return language_pb2.GetRequiredPackagesResponse(
            packages=[package_dependency(p) for p in plugins]
        )

    @reported
    def GetRequiredPlugins(
        self, request: language_pb2.GetRequiredPluginsRequest, context: Any
    ) -> language_pb2.GetRequiredPluginsResponse:
        # The official host answers only GetRequiredPackages now; older CLIs still ask this.
        opts = parse_options(request.info, request.pwd)
        plugins = [plugin_dependency(p) for p in required_plugins(opts.program_dir)]
        return language_pb2.GetRequiredPluginsResponse(plugins=plugins)

    @reported
    def Run(self, request: language_pb2.RunRequest, context: Any) -> language_pb2.RunResponse:
        opts = parse_options(request.info, request.pwd, request.program)
        return run_program(request, opts, self.engine_address, self.running)

    @reported_stream
    def InstallDependencies(
        self, request: language_pb2.InstallDependenciesRequest, context: Any
    ) -> Iterator[language_pb2.InstallDependenciesResponse]:
        opts = parse_options(request.info, request.directory)
        for stream, data in install_dependencies(opts):
            yield language_pb2.InstallDependenciesResponse(**{stream: data})

    @reported
    def RuntimeOptionsPrompts(
        self, request: language_pb2.RuntimeOptionsRequest, context: Any
    ) -> language_pb2.RuntimeOptionsResponse:
        # The official host asks for a package manager; npm is the only one offered here.
        return language_pb2.RuntimeOptionsResponse()

    @reported
    def About(self, request: language_pb2.AboutRequest, context: Any) -> Any:
        opts = parse_options(request.info)
        node = node_binary()
        manager = package_manager(opts)
        metadata = {
            "host": f"supaqueue offline language host {VERSION}",
            "packagemanager": manager,
        }
        if manager == "npm":
            metadata["packagemanagerVersion"] = _output([npm_binary(), "--version"])
        program_dir = str(opts.program_dir) if opts.program_dir.is_dir() else None
        typescript = _output(
            [node, "-e", "console.log(require('typescript/package.json').version)"], program_dir
        )
        if typescript:
            metadata["typescriptVersion"] = typescript
        return language_pb2.AboutResponse(
            executable=node, version=_output([node, "--version"]), metadata=metadata
        )

    @reported
    def GetProgramDependencies(
        self, request: language_pb2.GetProgramDependenciesRequest, context: Any
    ) -> language_pb2.GetProgramDependenciesResponse:
        opts = parse_options(request.info, request.pwd)
        require_npm(opts)
        deps = program_dependencies(opts.program_dir, request.transitiveDependencies)
        return language_pb2.GetProgramDependenciesResponse(
            dependencies=[language_pb2.DependencyInfo(name=d.name, version=d.version) for d in deps]
        )

    @reported
    def GeneratePackage(
        self, request: language_pb2.GeneratePackageRequest, context: Any
    ) -> language_pb2.GeneratePackageResponse:
        return generate_package("nodejs", request)

    @reported
    def Cancel(self, request: empty_pb2.Empty, context: Any) -> empty_pb2.Empty:
        self.running.stop_all()
        return empty_pb2.Empty()

    Template = unimplemented("Template")
    RunPlugin = unimplemented("RunPlugin")
    GenerateProgram = unimplemented("GenerateProgram")
    GenerateProject = unimplemented("GenerateProject")
    Pack = unimplemented("Pack")
    Link = unimplemented("Link")
