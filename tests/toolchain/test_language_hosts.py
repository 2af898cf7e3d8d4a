"""The language hosts `make toolchain` installs, one per language, and a program through each.

Which host serves a language (the official one, or our offline equivalent from offline_plugins/)
is announced in pytest's warnings summary by every test here.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from harness.toolchain import CACHE, PULUMI, REPO, pulumi_env
from tests.support.language_hosts import announce_host, toolchain_host
from tests.support.plugins import language_host_env
from tests.support.pulumi_nodejs import program_node_modules

GO_PROGRAM = REPO / "tests" / "support" / "pulumi_go"

YAML_PROGRAM = """\
name: yaml-host-test
runtime: yaml
config:
  length:
    type: integer
resources:
  password:
    type: random:RandomPassword
    properties:
      length: ${length}
      special: false
outputs:
  passwordLength: ${length}
  password: ${password.result}
"""


def pulumi(folder: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [str(PULUMI), *args, "--non-interactive"],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if done.returncode != 0:
        raise AssertionError(f"pulumi {' '.join(args)}: {done.stdout}\n{done.stderr}")
    return done


def about_language(folder: Path, env: dict[str, str], language: str) -> str:
    """The version of the language plugin the CLI itself reports for this project."""
    about = json.loads(pulumi(folder, env, "about", "--json").stdout)
    versions = [p.get("version") for p in about["plugins"] if p["name"] == language]
    assert len(versions) == 1, about["plugins"]
    return str(versions[0])


def test_yaml_host_is_the_official_one_at_the_pinned_version(tmp_path: Path) -> None:
    kind, path = toolchain_host("yaml")
    announce_host("yaml", kind, path)
    assert kind == "official", "there is no offline YAML host: the official one builds from Go"
    if path.is_relative_to(CACHE):  # built by make toolchain, not a CLI distribution's
        stamp = path.with_name(".pulumi-language-yaml.version")
        assert stamp.read_text().split() == ["v1.38.1", "v3.274.1"]


@pytest.mark.engine
def test_yaml_program_up_preview_destroy(tmp_path: Path) -> None:
    kind, path = toolchain_host("yaml")
    announce_host("yaml", kind, path)
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "Pulumi.yaml").write_text(YAML_PROGRAM)
    env = pulumi_env(tmp_path / "state", passphrase="test")
    pulumi(folder, env, "stack", "init", "test")
    try:
        pulumi(folder, env, "config", "set", "length", "20")
        if kind == "official" and path.is_relative_to(CACHE):
            assert about_language(folder, env, "yaml") == "1.38.1"
        up = pulumi(folder, env, "up", "--yes", "--skip-preview")
        assert "+ 2 created" in up.stdout, up.stdout
        outputs = json.loads(
            pulumi(folder, env, "stack", "output", "--json", "--show-secrets").stdout
        )
        assert outputs["passwordLength"] == 20 and len(outputs["password"]) == 20
        assert outputs["password"].isalnum()
        preview = pulumi(folder, env, "preview", "--expect-no-changes")
        assert "2 unchanged" in preview.stdout, preview.stdout
        pulumi(folder, env, "destroy", "--yes")
        state = json.loads(pulumi(folder, env, "stack", "export").stdout)
        assert state["deployment"].get("resources") in (None, [])
    finally:
        subprocess.run(
            [str(PULUMI), "stack", "rm", "--yes", "--force", "--non-interactive"],
            cwd=folder, env=env, capture_output=True, timeout=120, check=False,
        )  # fmt: skip


def program_folder(language: str, folder: Path) -> None:
    """A minimal installed program of `language` (its packages in place, nothing to run)."""
    folder.mkdir()
    if language == "nodejs":
        node_modules = program_node_modules()
        (folder / "node_modules").symlink_to(node_modules, target_is_directory=True)
        shutil.copy(node_modules.parent / "package.json", folder / "package.json")
    else:
        for name in ("go.mod", "go.sum", "main.go"):
            shutil.copy(GO_PROGRAM / name, folder / name)
    (folder / "Pulumi.yaml").write_text(f"name: {language}-about\nruntime: {language}\n")


@pytest.mark.parametrize("language", ["nodejs", "go"])
def test_host_is_installed_and_answers(language: str, tmp_path: Path) -> None:
    kind, path = toolchain_host(language)
    announce_host(language, kind, path)
    folder = tmp_path / "project"
    program_folder(language, folder)
    env = pulumi_env(tmp_path / "state", passphrase="test")
    version = about_language(folder, env, language)
    if kind == "offline":
        assert version == "3.274.1+supaqueue.offline"
    else:
        assert version.startswith("3.")


# A probe schema (not supaqueue's: its SDKs come from the provider's own schema.json).
PROBE_SCHEMA = {
    "name": "probe",
    "version": "0.1.0",
    "description": "A probe package for SDK generation.",
    "resources": {
        "probe:index:Queue": {
            "description": "A queue.",
            "properties": {"name": {"type": "string", "description": "The queue's name."}},
            "required": ["name"],
            "inputProperties": {"name": {"type": "string", "description": "The queue's name."}},
            "requiredInputs": ["name"],
        }
    },
    "language": {"go": {"importBasePath": "example.com/probe/sdk/go/probe"}},
}


@pytest.mark.parametrize(
    ("language", "source", "expected"),
    [
        ("nodejs", "nodejs/queue.ts", "export class Queue extends pulumi.CustomResource"),
        ("go", "go/probe/queue.go", "type Queue struct"),
        ("python", "python/pulumi_probe/queue.py", "class Queue(pulumi.CustomResource)"),
    ],
)
def test_gen_sdk_through_the_language_host(
    language: str, source: str, expected: str, tmp_path: Path
) -> None:
    """`pulumi package gen-sdk` asks the language host (GeneratePackage); ours run pulumi-sdkgen."""
    kind, path = toolchain_host(language)
    announce_host(language, kind, path)
    schema = tmp_path / "schema.json"
    schema.write_text(json.dumps(PROBE_SCHEMA))
    env = pulumi_env(tmp_path / "state")
    if language == "python" and kind == "offline":
        # The checked-out host (the toolchain's copy is the sources bootstrap last installed).
        env = language_host_env(tmp_path / "launchers", env)
    out = tmp_path / "sdk"
    pulumi(
        tmp_path, env, "package", "gen-sdk", str(schema), "--language", language, "--out", str(out)
    )
    text = (out / source).read_text()
    assert expected in text
    assert "The queue's name." in text  # docs come from the schema's descriptions
    if language == "nodejs":
        # The generated SDK type-checks against the @pulumi/pulumi programs use.
        (out / "nodejs" / "node_modules").symlink_to(program_node_modules())
        tsc = out / "nodejs" / "node_modules" / "typescript" / "bin" / "tsc"
        done = subprocess.run(
            ["node", str(tsc), "--noEmit", "-p", "."],
            cwd=out / "nodejs", capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr


def test_gen_sdk_names_a_bad_schema(tmp_path: Path) -> None:
    schema = tmp_path / "schema.json"
    bad = dict(PROBE_SCHEMA, resources={"probe:index/nested:Queue": {"description": "x"}})
    schema.write_text(json.dumps(bad))
    done = subprocess.run(
        [str(PULUMI), "package", "gen-sdk", str(schema), "--language", "nodejs", "--out",
         str(tmp_path / "sdk"), "--non-interactive"],
        cwd=tmp_path, env=pulumi_env(tmp_path / "state"), capture_output=True, text=True,
        timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode != 0
    assert "probe:index/nested:Queue" in done.stdout + done.stderr
