"""A copy of the supaqueue Pulumi program in a temp folder, driven with the real `pulumi` CLI.

The copy holds the real `__main__.py`, `edge/` and `sql/` (so a test may edit the Edge Function
without touching the repo) and a `Pulumi.yaml` whose `virtualenv` points at the repo's venv.
Every command runs with the offline toolchain environment (harness/toolchain.py), a file
backend in the temp folder and the local stack's `status -o env` values.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from harness.toolchain import PULUMI, REPO, VENV, pulumi_env

COMMAND_TIMEOUT_SECONDS = 600


@dataclass
class PulumiProject:
    workdir: Path
    stack: str
    env: dict[str, str]

    @classmethod
    def create(cls, root: Path, stack: str, stack_env: dict[str, str]) -> PulumiProject:
        workdir = root / "project"
        workdir.mkdir(parents=True)
        # The demo program, deploying copies of the SQL and the dispatcher a test may edit.
        program = (REPO / "__main__.py").read_text()
        head, marker, tail = program.partition("installation = Supaqueue(")
        assert marker, "__main__.py no longer declares `installation = Supaqueue(`"
        program = (
            head
            + 'args["dispatcher_dir"] = str(HERE / "edge" / "supaqueue")\n'
            + 'args["migrations_dir"] = str(HERE / "sql")\n'
            + marker
            + tail
        )
        (workdir / "__main__.py").write_text(program)
        shutil.copytree(REPO / "supaqueue" / "sql", workdir / "sql")
        shutil.copytree(REPO / "edge", workdir / "edge")
        shutil.copytree(REPO / "supaqueue" / "edge", workdir / "edge" / "supaqueue")
        settings = yaml.safe_load((REPO / "Pulumi.yaml").read_text())
        settings["runtime"]["options"]["virtualenv"] = str(VENV)
        # The provider plugin, as the repo's Pulumi.yaml finds it (relative to the project).
        for plugin in settings["plugins"]["providers"]:
            plugin["path"] = str(VENV / "bin")
        (workdir / "Pulumi.yaml").write_text(yaml.safe_dump(settings))
        env = pulumi_env(root / "state")
        env.update(stack_env)
        require_toolchain(env)
        project = cls(workdir, stack, env)
        project.run("stack", "init", stack)
        return project

    def configure(self, **values: Any) -> None:
        """Set the stack's config to `supaqueue:<key>: value` for each keyword (the rest of
        Pulumi.<stack>.yaml, e.g. the passphrase salt, is kept)."""
        path = self.workdir / f"Pulumi.{self.stack}.yaml"
        settings = yaml.safe_load(path.read_text()) if path.exists() else None
        settings = settings or {}
        settings["config"] = {f"supaqueue:{key}": value for key, value in values.items()}
        path.write_text(yaml.safe_dump(settings, sort_keys=False))

    def set_secret(self, path: str, value: str) -> None:
        """`pulumi config set --secret --path`: how a user keeps e.g. a header value secret."""
        self.run("config", "set", "--secret", "--path", path, value)

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [str(PULUMI), "--non-interactive", *args, *self._stack_flag(args)],
            cwd=self.workdir,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT_SECONDS,
            check=False,
        )
        if check and done.returncode != 0:
            raise AssertionError(
                f"pulumi {' '.join(args)} failed ({done.returncode}):\n"
                f"{done.stdout[-6000:]}\n{done.stderr[-3000:]}"
            )
        return done

    def _stack_flag(self, args: tuple[str, ...]) -> list[str]:
        return [] if args[:2] == ("stack", "init") else ["--stack", self.stack]

    def up(self) -> str:
        return self.run("up", "--yes", "--skip-preview").stdout

    def preview_ops(self) -> dict[str, str]:
        """{resource name: planned op} from `pulumi preview --json` ("same" included)."""
        done = self.run("preview", "--json", "--show-sames")
        steps = json.loads(done.stdout)["steps"]
        return {step["urn"].split("::")[-1]: step["op"] for step in steps}

    def outputs(self) -> dict[str, Any]:
        return dict(json.loads(self.run("stack", "output", "--json").stdout))

    def exported_state(self) -> str:
        """`pulumi stack export` (secrets stay encrypted), as text."""
        return self.run("stack", "export").stdout

    def resource_outputs(self, name: str) -> dict[str, Any]:
        state = json.loads(self.exported_state())
        for resource in state["deployment"].get("resources", []):
            if resource["urn"].split("::")[-1] == name:
                return dict(resource.get("outputs", {}))
        raise AssertionError(f"no resource {name!r} in the stack state")

    def edit_edge_function(self, slug: str, text: str) -> None:
        with (self.workdir / "edge" / slug / "index.ts").open("a") as handle:
            handle.write(text)

    def cleanup(self) -> None:
        """Best effort: a failed test must not leave supaqueue installed for the next one."""
        self.run("destroy", "--yes", "--skip-preview", check=False)
        self.run("stack", "rm", "--yes", "--force", check=False)


def require_toolchain(env: dict[str, str]) -> None:
    """A missing toolchain fails loudly (never a silent skip): `make toolchain` installs it."""
    if not PULUMI.exists():
        raise RuntimeError(f"{PULUMI} is missing: run `make toolchain` first")
    if shutil.which("pulumi-language-python", path=env["PATH"]) is None:
        raise RuntimeError("no pulumi-language-python on PATH: run `make toolchain` first")
    plugins = subprocess.run(
        [str(PULUMI), "plugin", "ls"], env=env, capture_output=True, text=True, check=False
    ).stdout
    for name, version in (("random", "4.21.4"), ("command", "1.2.1")):
        if not any(
            line.split()[:3] == [name, "resource", version] for line in plugins.splitlines()
        ):
            raise RuntimeError(
                f"the {name} {version} resource plugin is not installed in {env['PULUMI_HOME']}: "
                "run `make toolchain` first"
            )
