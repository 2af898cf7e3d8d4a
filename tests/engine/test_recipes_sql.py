"""The README's SQL recipe (`examples/enqueue.sql`, kept identical to the README's block by
tests/unit/test_readme_recipes.py) runs in psql as written, and does what its comments say."""

from __future__ import annotations

import subprocess

from harness.engine import Engine
from harness.toolchain import REPO
from supaqueue.local_stack.postgres import PG_BIN

RECIPE = REPO / "examples" / "enqueue.sql"


def _psql(dsn: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(PG_BIN / "psql"), "--no-psqlrc", "-v", "ON_ERROR_STOP=1", "-X", "-A", "-t",
         "-d", dsn, "-f", str(RECIPE)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_the_sql_recipe_runs_in_psql(engine: Engine) -> None:
    q = engine.queue(workers=0, name="emails")
    proc = _psql(engine.dsn)
    assert proc.returncode == 0, proc.stderr
    jobs = engine.conn.execute(
        "select payload, priority, dedup_key, run_at > now() as later, pending_dependencies, key"
        " from supaqueue.job where queue = %s order by created_at, payload->>'to'",
        (q,),
    ).fetchall()
    assert len(jobs) == 7
    by_to = {(j["payload"].get("to"), j["payload"].get("step")): j for j in jobs}
    assert by_to[("bob@example.com", None)]["priority"] == 10
    assert by_to[("bob@example.com", None)]["dedup_key"] == "welcome-bob"
    assert by_to[("bob@example.com", None)]["later"] is True
    assert {("eve@example.com", None), ("joe@example.com", None)} <= set(by_to)
    assert by_to[(None, 2)]["pending_dependencies"] == 1
    assert by_to[("kim@example.com", None)]["key"] == "tenant-42"
    # the last statement read the first job through get_job: pending, no attempt yet
    assert proc.stdout.strip().splitlines()[-1] == "pending|0||"


def test_the_sql_recipe_stops_on_a_misspelled_queue(engine: Engine) -> None:
    engine.queue(workers=0, name="emails-v2")
    proc = _psql(engine.dsn)
    assert proc.returncode != 0
    assert "there is no queue named 'emails'" in proc.stderr
    assert engine.one("select count(*) from supaqueue.job") == 0
