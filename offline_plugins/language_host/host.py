"""The LanguageRuntime service: each RPC maps to one small module of this package."""

from __future__ import annotations

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
from offline_plugins.common.sdkgen import generate_package
from offline_plugins.language_host import VERSION
from offline_plugins.language_host.install import install_dependencies
from offline_plugins.language_host.inventory import take_inventory
from offline_plugins.language_host.options import parse_options
from offline_plugins.language_host.plugins import required_plugins
from offline_plugins.language_host.processes import RunningPrograms
from offline_plugins.language_host.runner import run_program


def unimplemented(name: str) -> Callable[..., Any]:
    return unimplemented_by(name, "Python", "pulumi-language-python")


class LanguageHost(language_pb2_grpc.LanguageRuntimeServicer):
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
        plugins = required_plugins(take_inventory(opts))
        return language_pb2.GetRequiredPackagesResponse(
            packages=[package_dependency(p) for p in plugins]
        )

    @reported
    def GetRequiredPlugins(
        self, request: language_pb2.GetRequiredPluginsRequest, context: Any
    ) -> language_pb2.GetRequiredPluginsResponse:
        opts = parse_options(request.info, request.pwd)
        plugins = [plugin_dependency(p) for p in required_plugins(take_inventory(opts))]
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
        return language_pb2.RuntimeOptionsResponse()

    @reported
    def About(self, request: language_pb2.AboutRequest, context: Any) -> Any:
        inventory = take_inventory(parse_options(request.info))
        return language_pb2.AboutResponse(
            executable=inventory.executable,
            version=inventory.version,
            metadata={"host": f"supaqueue offline language host {VERSION}"},
        )

    @reported
    def GetProgramDependencies(
        self, request: language_pb2.GetProgramDependenciesRequest, context: Any
    ) -> language_pb2.GetProgramDependenciesResponse:
        inventory = take_inventory(parse_options(request.info, request.pwd))
        packages = inventory.packages if request.transitiveDependencies else inventory.top_level()
        return language_pb2.GetProgramDependenciesResponse(
            dependencies=[
                language_pb2.DependencyInfo(name=p.name, version=p.version) for p in packages
            ]
        )

    @reported
    def Cancel(self, request: empty_pb2.Empty, context: Any) -> empty_pb2.Empty:
        self.running.stop_all()
        return empty_pb2.Empty()

    Template = unimplemented("Template")
    RunPlugin = unimplemented("RunPlugin")

    def GenerateProgram(self, request: Any, context: Any) -> Any:
        # `pulumi import` prints the code this returns (codegen.py: what the importer writes).
        from offline_plugins.language_host.codegen import answer

        return answer(request, context)

    GenerateProject = unimplemented("GenerateProject")

    @reported
    def GeneratePackage(
        self, request: language_pb2.GeneratePackageRequest, context: Any
    ) -> language_pb2.GeneratePackageResponse:
        # `pulumi package gen-sdk --language python`: pulumi-sdkgen, as the Node.js and Go hosts.
        return generate_package("python", request)

    Pack = unimplemented("Pack")
    Link = unimplemented("Link")
