"""The wheel built from this repository is what a user installs: the `supaqueue` package with
all its data (migrations, the dispatcher's source, SQL queries, dashboard, typegen) and nothing
of the repository (tests, offline plugins, benchmarks, scripts). In a fresh venv holding only
the wheel and its dependencies, `import supaqueue` works, the data is read through
importlib.resources from the installed package, and the `supaqueue` command runs."""

from __future__ import annotations

import json
import os
import subprocess
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

from harness.toolchain import REPO
from tests.support.wheel import build_wheel, checkout_files, fresh_venv

# Package files that are documentation of the repository, not of the installed package.
NOT_SHIPPED = {"supaqueue/README.md"}
# What the optional parts bring: not installed without their extra.
EXTRA_MODULES = ("aiohttp", "uvloop", "jwt", "jinja2", "prometheus_client", "cryptography")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_wheel(tmp_path_factory.mktemp("wheel"))


@pytest.fixture(scope="module")
def venv_python(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fresh_venv(tmp_path_factory.mktemp("fresh") / "venv", wheel)


def user_env() -> dict[str, str]:
    """A user's environment: no checkout on sys.path, no toolchain of this repository."""
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SUPAQUEUE_", "PYTHON", "VIRTUAL_ENV", "PULUMI_"))
    }


def test_the_wheel_holds_the_package_and_nothing_else(wheel: Path) -> None:
    names = [n for n in zipfile.ZipFile(wheel).namelist() if not n.endswith("/")]
    size = wheel.stat().st_size
    top = sorted({name.split("/")[0] for name in names})
    print(json.dumps({"wheel": wheel.name, "bytes": size, "files": len(names), "top": top}))
    assert top == ["supaqueue", "supaqueue-0.1.0.dist-info"]
    shipped = {name for name in names if name.startswith("supaqueue/")}
    # Every file of the package in the checkout, data included, and only those.
    expected = {
        name
        for name in checkout_files()
        if name.startswith("supaqueue/") and "__pycache__" not in name
    } - NOT_SHIPPED
    assert shipped == expected, {
        "missing": sorted(expected - shipped),
        "unexpected": sorted(shipped - expected),
    }
    for required in (
        "supaqueue/py.typed",
        "supaqueue/sql/0001_schema.sql",
        "supaqueue/sql/uninstall.sql",
        "supaqueue/edge/index.ts",
        "supaqueue/edge/deno.json",
        "supaqueue/providers/sql/queue.sql",
        "supaqueue/console/sql/operator.sql",
        "supaqueue/console/typegen/payload_handler.ts",
        "supaqueue/console/dashboard/templates/base.html",
        "supaqueue/console/dashboard/static/vendor/uPlot.iife.min.js",
        "supaqueue/local_stack/edge_bootstrap.ts",
        "supaqueue/local_stack/sql/roles.sql",
        "supaqueue/local_stack/management_api.openapi.json",
        "supaqueue/provider/schema.json",
    ):
        assert required in shipped, required


def test_the_metadata_asks_for_ranges_and_names_the_command(wheel: Path) -> None:
    archive = zipfile.ZipFile(wheel)
    metadata = Parser().parsestr(archive.read("supaqueue-0.1.0.dist-info/METADATA").decode())
    requires = metadata.get_all("Requires-Dist") or []
    assert any(r.startswith("pulumi<4,>=3.272") or r.startswith("pulumi>=3.272") for r in requires)
    pinned = [r for r in requires if "==" in r.split(";")[0]]  # `extra == "x"` is a marker
    assert not pinned, pinned
    assert set(metadata.get_all("Provides-Extra") or []) >= {"console", "local-stack"}
    entry_points = archive.read("supaqueue-0.1.0.dist-info/entry_points.txt").decode()
    assert "supaqueue = supaqueue.cli.main:main" in entry_points
    assert "pulumi-resource-supaqueue = supaqueue.provider.server:main" in entry_points


PROBE = r"""
import importlib.resources as resources, importlib.util, json, pathlib, sys
import supaqueue
from supaqueue import Queue, Schedule, Supaqueue, Trigger
from supaqueue import edge_source, migrations

package = pathlib.Path(supaqueue.__file__).resolve().parent
data = resources.files("supaqueue")
sql = sorted(p.name for p in (data / "sql").iterdir() if p.name.endswith(".sql"))
edge = sorted(name for name, _ in edge_source.source_files(edge_source.PACKAGED_DISPATCHER))
print(json.dumps({
    "package": str(package),
    "prefix": sys.prefix,
    "sql_dir": str(migrations.SQL_DIR),
    "dispatcher_dir": str(edge_source.PACKAGED_DISPATCHER),
    "resources_sql": str(data / "sql"),
    "sql": sql,
    "migrations": [m.version for m in migrations.load_migrations()],
    "edge": edge,
    "index_ts": (data / "edge" / "index.ts").read_text()[:40],
    "components": [c.__module__ for c in (Supaqueue, Queue, Trigger, Schedule)],
    "absent": [m for m in sys.argv[1:] if importlib.util.find_spec(m) is None],
}))
"""


def test_a_fresh_venv_with_only_the_wheel_imports_and_reads_its_data(
    venv_python: Path, tmp_path: Path
) -> None:
    done = subprocess.run(
        [str(venv_python), "-c", PROBE, *EXTRA_MODULES],
        cwd=tmp_path,  # not the checkout: only the installed package can be imported
        env=user_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout)
    print(json.dumps({k: found[k] for k in ("package", "sql_dir", "components")}))
    package = Path(found["package"])
    assert package.is_relative_to(found["prefix"]) and not package.is_relative_to(REPO)
    # The library's data is the installed package's own, the folders importlib.resources names.
    assert found["sql_dir"] == found["resources_sql"] == str(package / "sql")
    assert found["dispatcher_dir"] == str(package / "edge")
    checkout_sql = sorted(p.name for p in (REPO / "supaqueue" / "sql").glob("*.sql"))
    assert found["sql"] == checkout_sql
    assert found["migrations"] == sorted(found["migrations"]) and len(found["migrations"]) >= 25
    assert "index.ts" in found["edge"] and "deno.json" in found["edge"]
    assert found["index_ts"] == (REPO / "supaqueue" / "edge" / "index.ts").read_text()[:40]
    # The core needs none of the console's or the local stack's dependencies.
    assert found["absent"] == list(EXTRA_MODULES)


def test_the_command_runs_and_names_the_extra_a_part_needs(
    venv_python: Path, tmp_path: Path
) -> None:
    command = venv_python.parent / "supaqueue"
    # The resource plugin the engine starts is installed beside it (Pulumi.yaml names the folder).
    assert (venv_python.parent / "pulumi-resource-supaqueue").is_file()
    help_text = subprocess.run(
        [str(command), "--help"],
        cwd=tmp_path,
        env=user_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert help_text.returncode == 0, help_text.stderr
    for name in ("dev", "status", "jobs", "ui", "metrics"):
        assert f"  {name} " in help_text.stdout, help_text.stdout
    for args, extra in ((["dev", "up"], "local-stack"), (["ui", "--db-url", "x"], "console")):
        done = subprocess.run(
            [str(command), *args],
            cwd=tmp_path,
            env=user_env(),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 1, done.stdout + done.stderr
        assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1
        assert f"pip install 'supaqueue[{extra}]'" in done.stderr, done.stderr
    assert not (tmp_path / ".local-stack").exists()
