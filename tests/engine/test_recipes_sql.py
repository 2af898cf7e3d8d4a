"""The README's SQL recipes (`examples/enqueue.sql`, `enqueue_one.sql`, `history.sql`, kept
identical to the README's blocks by tests/unit/test_readme_recipes.py) run in psql as written,
and do what their comments say."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from harness.engine import Engine
from harness.toolchain import REPO
from supaqueue.local_stack.postgres import PG_BIN

RECIPE = REPO / "examples" / "enqueue.sql"


def _psql(dsn: str, recipe: Path = RECIPE) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(PG_BIN / "psql"), "--no-psqlrc", "-v", "ON_ERROR_STOP=1", "-X", "-A", "-t",
         "-d", dsn, "-f", str(recipe)],
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


def test_the_intro_enqueue_runs(engine: Engine) -> None:
    q = engine.queue(workers=0, name="emails")
    proc = _psql(engine.dsn, REPO / "examples" / "enqueue_one.sql")
    assert proc.returncode == 0, proc.stderr
    job = engine.conn.execute(
        "select id::text, payload, status from supaqueue.job where queue = %s", (q,)
    ).fetchall()
    assert [(j["payload"], j["status"]) for j in job] == [({"to": "ada@example.com"}, "pending")]
    assert proc.stdout.strip() == job[0]["id"]  # enqueue answers the job's id


def test_the_history_queries_run_and_show_what_their_comments_say(engine: Engine) -> None:
    """After one finished attempt: the stats row of the queue has the columns the comments
    name, and the attempt is in the history."""
    q = engine.queue(name="emails")
    job = engine.enqueue(q, {"to": "ada@example.com"})
    current = engine.current_job_of(job)
    engine.claim(current)
    assert engine.end(current, success=True, _status_code=200)
    proc = subprocess.run(
        [str(PG_BIN / "psql"), "--no-psqlrc", "-v", "ON_ERROR_STOP=1", "-X", "-A", "-F", "\t",
         "-d", engine.dsn, "-f", str(REPO / "examples" / "history.sql")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    # unaligned: per statement a header, its rows, then "(N rows)"
    stats, attempts = (
        [dict(zip(part[0].split("\t"), row.split("\t"), strict=True)) for row in part[1:]]
        for part in (
            section.strip("\n").splitlines()  # rows end in tabs
            for section in re.split(r"^\(\d+ rows?\)$", proc.stdout, flags=re.MULTILINE)[:2]
        )
    )
    assert [row["name"] for row in stats] == ["emails"], proc.stdout
    commented = ("oldest_pending_age", "attempts_last_minute", "paused",
                 "paused_by_operator_since", "held_until", "hold_reason", "held_keys")  # fmt: skip
    for column in commented:
        assert column in stats[0], (column, sorted(stats[0]))
    assert stats[0]["attempts_last_minute"] == "1"
    assert [(row["job"], row["outcome"]) for row in attempts] == [(job, "success")], proc.stdout
