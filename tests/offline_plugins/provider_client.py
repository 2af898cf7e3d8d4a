"""Start an offline resource plugin as the CLI does and talk to it over real gRPC."""

from __future__ import annotations

import selectors
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import grpc
from google.protobuf import empty_pb2
from pulumi.runtime.proto import provider_pb2, provider_pb2_grpc

from offline_plugins.common.properties import from_struct, to_struct

STARTUP_SECONDS = 30


def urn(type_token: str, name: str) -> str:
    return f"urn:pulumi:test::offline-plugins::{type_token}::{name}"


def _read_port(stream: IO[str], proc: subprocess.Popen[str]) -> int:
    with selectors.DefaultSelector() as selector:
        selector.register(stream, selectors.EVENT_READ)
        if not selector.select(timeout=STARTUP_SECONDS):
            proc.kill()
            raise RuntimeError(f"plugin printed no port within {STARTUP_SECONDS}s")
    line = stream.readline().strip()
    if not line.isdigit():
        proc.kill()
        raise RuntimeError(f"plugin's first stdout line is not a port: {line!r}")
    return int(line)


class PluginProcess:
    """`python -m <module> [args]` with stderr kept in a file for assertions."""

    def __init__(self, module: str, *args: str, env: dict[str, str] | None = None) -> None:
        self.module = module
        self.args = args
        self.env = env
        self._stderr = tempfile.TemporaryFile(mode="w+")
        self.proc: subprocess.Popen[str] | None = None
        self.channel: grpc.Channel | None = None
        self.stub: provider_pb2_grpc.ResourceProviderStub | None = None
        self.returncode: int | None = None

    def __enter__(self) -> PluginProcess:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", self.module, *self.args],
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            env=self.env,
            cwd=Path(__file__).resolve().parents[2],
        )
        assert self.proc.stdout is not None
        port = _read_port(self.proc.stdout, self.proc)
        self.channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        grpc.channel_ready_future(self.channel).result(timeout=STARTUP_SECONDS)
        self.stub = provider_pb2_grpc.ResourceProviderStub(self.channel)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def stop(self) -> int:
        """SIGTERM, as the CLI does at the end of an operation; returns the exit code."""
        if self.channel is not None:
            self.channel.close()
            self.channel = None
        if self.proc is not None and self.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.returncode = self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.returncode = self.proc.wait()
        return self.returncode if self.returncode is not None else -1

    @property
    def stderr(self) -> str:
        self._stderr.seek(0)
        return self._stderr.read()

    # ---- thin RPC helpers (plain dicts in and out) -----------------------------------------
    @property
    def rpc(self) -> provider_pb2_grpc.ResourceProviderStub:
        assert self.stub is not None, "plugin not started"
        return self.stub

    def plugin_version(self) -> str:
        return str(self.rpc.GetPluginInfo(empty_pb2.Empty()).version)

    def check(
        self, type_token: str, name: str, news: dict[str, Any], olds: dict[str, Any] | None = None
    ) -> tuple[dict[str, Any], list[tuple[str, str]]]:
        resp = self.rpc.Check(
            provider_pb2.CheckRequest(
                urn=urn(type_token, name),
                type=type_token,
                name=name,
                olds=to_struct(olds or {}),
                news=to_struct(news),
            )
        )
        return from_struct(resp.inputs), [(f.property, f.reason) for f in resp.failures]

    def checked(self, type_token: str, name: str, news: dict[str, Any]) -> dict[str, Any]:
        inputs, failures = self.check(type_token, name, news)
        assert failures == [], failures
        return inputs

    def create(
        self,
        type_token: str,
        name: str,
        props: dict[str, Any],
        preview: bool = False,
        timeout: float = 0,
    ) -> tuple[str, dict[str, Any]]:
        resp = self.rpc.Create(
            provider_pb2.CreateRequest(
                urn=urn(type_token, name),
                type=type_token,
                name=name,
                properties=to_struct(props),
                preview=preview,
                timeout=timeout,
            )
        )
        return resp.id, from_struct(resp.properties)

    def diff(
        self,
        type_token: str,
        name: str,
        olds: dict[str, Any],
        news: dict[str, Any],
        ignore_changes: list[str] | None = None,
    ) -> provider_pb2.DiffResponse:
        resp: provider_pb2.DiffResponse = self.rpc.Diff(
            provider_pb2.DiffRequest(
                id="x",
                urn=urn(type_token, name),
                type=type_token,
                name=name,
                olds=to_struct(olds),
                news=to_struct(news),
                ignoreChanges=ignore_changes or [],
            )
        )
        return resp

    def update(
        self,
        type_token: str,
        name: str,
        resource_id: str,
        olds: dict[str, Any],
        news: dict[str, Any],
        preview: bool = False,
    ) -> dict[str, Any]:
        resp = self.rpc.Update(
            provider_pb2.UpdateRequest(
                id=resource_id,
                urn=urn(type_token, name),
                type=type_token,
                name=name,
                olds=to_struct(olds),
                news=to_struct(news),
                preview=preview,
            )
        )
        return from_struct(resp.properties)

    def read(
        self, type_token: str, name: str, resource_id: str, props: dict[str, Any]
    ) -> tuple[str, dict[str, Any], dict[str, Any]]:
        resp = self.rpc.Read(
            provider_pb2.ReadRequest(
                id=resource_id,
                urn=urn(type_token, name),
                type=type_token,
                name=name,
                properties=to_struct(props),
            )
        )
        return resp.id, from_struct(resp.properties), from_struct(resp.inputs)

    def delete(self, type_token: str, name: str, resource_id: str, props: dict[str, Any]) -> None:
        self.rpc.Delete(
            provider_pb2.DeleteRequest(
                id=resource_id,
                urn=urn(type_token, name),
                type=type_token,
                name=name,
                properties=to_struct(props),
            )
        )
