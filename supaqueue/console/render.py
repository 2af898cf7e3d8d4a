"""How the operator commands print: rich tables for people, JSON for scripts."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

from rich.console import Console, Group
from rich.markup import escape
from rich.table import Table
from rich.text import Text


def plain(value: Any) -> Any:
    """A JSON-able copy of a row (UUIDs, times, decimals as strings/numbers)."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, Decimal):
        return float(value)
    return value


def to_json(value: Any) -> str:
    return json.dumps(plain(value), sort_keys=False)


def seconds(value: float | None) -> str:
    if value is None:
        return "-"
    value = float(value)
    if value < 90:
        return f"{value:.0f}s"
    if value < 5400:
        return f"{value / 60:.0f}m"
    if value < 172800:
        return f"{value / 3600:.1f}h"
    return f"{value / 86400:.1f}d"


def millis(value: float | None) -> str:
    return "-" if value is None else f"{float(value):.0f}ms"


def rate(value: float | None) -> str:
    return "-" if value is None else f"{float(value):.2f}"


def queue_state(row: dict[str, Any]) -> Text:
    if row["paused_by_operator_since"] is not None and row["paused_by_stack"]:
        return Text("paused (stack + operator)", style="yellow")
    if row["paused_by_operator_since"] is not None:
        return Text("paused (operator)", style="yellow")
    if row["paused_by_stack"]:
        return Text("paused (stack)", style="yellow")
    if row.get("dispatch_held_since") is not None:
        return Text("held: no dispatcher", style="red")
    if row.get("held_until") is not None:
        # the target answered 429/503 with Retry-After (sql/0027); the reason is under the table
        return Text(f"held until {clock(row['held_until'])}", style="yellow")
    if row.get("held_keys"):
        keys = row["held_keys"]
        return Text(f"running, {keys} key{'s' if keys != 1 else ''} held", style="yellow")
    return Text("running", style="green")


def clock(value: datetime) -> str:
    """A time of today as the local HH:MM:SS (a hold lasts at most an hour)."""
    return value.astimezone().strftime("%H:%M:%S")


def hold_lines(rows: list[dict[str, Any]]) -> list[str]:
    """Why each held queue or key is held (`supaqueue status` prints them under the table)."""
    lines = []
    for row in rows:
        if row.get("held_until") is not None:
            lines.append(
                f"queue {row['name']} held until {when(row['held_until'])}: {row['hold_reason']}"
            )
        if row.get("held_keys"):
            lines.append(
                f"queue {row['name']}: {row['held_keys']} key(s) held, the longest until "
                f"{when(row['key_held_until'])}: {row['key_hold_reason']}"
            )
    return lines


@dataclass(frozen=True)
class Column:
    header: str
    cell: Callable[[dict[str, Any]], str | Text]
    justify: str = "right"


# The columns of `supaqueue status`, one row per queue of `supaqueue.queue_figures()`. Other
# features add theirs here (e.g. a schedule's next run), so the status stays one table.
STATUS_COLUMNS: list[Column] = [
    Column("queue", lambda r: str(r["name"]), "left"),
    Column("state", queue_state, "left"),
    Column("workers", lambda r: f"{r['busy_workers']}/{r['workers']}"),
    Column("rate/s", lambda r: rate(r["rate_limit_per_second"])),
    Column("pending", lambda r: str(r["pending"])),
    Column("ready", lambda r: str(r["ready"])),
    Column("running", lambda r: str(r["in_progress"])),
    # keys with work (issue #26; `supaqueue keys QUEUE` lists the busiest); - for none
    Column("keys", lambda r: str(r.get("active_keys") or "-")),
    Column("oldest", lambda r: seconds(r["oldest_pending_age_seconds"])),
    # the last minute's count (the window's averages are `*_per_minute` in --json)
    Column("ok/min", lambda r: str(r["succeeded_last_minute"])),
    Column("failed/min", lambda r: str(r["failed_last_minute"])),
    Column("p50", lambda r: millis(r["attempt_p50_ms"])),
    Column("p95", lambda r: millis(r["attempt_p95_ms"])),
    Column("next schedule", lambda r: next_schedule(r), "left"),
]


def next_schedule(row: dict[str, Any]) -> str:
    """The queue's soonest schedule: `<name> <local time>`, or - without one."""
    if not row.get("next_schedule"):
        return "-"
    return f"{row['next_schedule']} {when(row['next_schedule_at'])}"


def status_table(rows: list[dict[str, Any]], window: str) -> Table:
    table = Table(title=f"supaqueue queues (figures over the last {window})", title_justify="left")
    for column in STATUS_COLUMNS:
        table.add_column(column.header, justify=column.justify)  # type: ignore[arg-type]
    for row in rows:
        table.add_row(*(column.cell(row) for column in STATUS_COLUMNS))
    held = next((r for r in rows if r.get("dispatch_held_since") is not None), None)
    captions = hold_lines(rows)
    if held is not None:
        captions.insert(
            0,
            f"dispatch held since {when(held['dispatch_held_since'])}: "
            + str(held["dispatch_hold_reason"]),
        )
    if captions:
        table.caption = "\n".join(captions)
        table.caption_style = "red" if held is not None else "yellow"
        table.caption_justify = "left"
    return table


def keys_table(view: dict[str, Any]) -> Table:
    """The busiest keys of a queue (`supaqueue keys QUEUE`): calls running, ready jobs, hold."""
    table = Table(
        title=f"keys of queue {view['queue']}: {view['active_keys']} active", title_justify="left"
    )
    for header in ("key", "running", "ready", "next turn", "held until", "hold reason"):
        justify = "right" if header in ("running", "ready") else "left"
        overflow = "fold" if header in ("key", "hold reason") else "ellipsis"
        table.add_column(header, justify=justify, overflow=overflow)  # type: ignore[arg-type]
    for row in view["keys"]:
        held = row["held_until"] is not None
        table.add_row(
            Text(str(row["key"])),  # a tenant's own text: never read as markup
            str(row["running"]),
            f"{row['ready']}+" if row["ready_capped"] else str(row["ready"]),
            when(row["next_turn_at"]) if row["next_turn_at"] is not None else "idle",
            Text(when(row["held_until"]), style="yellow") if held else "-",
            Text(str(row["hold_reason"])) if held else "-",
        )
    if not view["keys"]:
        table.caption = "no key has work (jobs of this queue carry no key, or none is waiting)"
    elif view["active_keys"] > len(view["keys"]):
        table.caption = (
            f"the busiest {len(view['keys'])} of {view['active_keys']}: most calls running, then "
            "most ready, among the keys running, held or next in turn (--limit up to 100)"
        )
    table.caption_justify = "left"
    return table


STATE_STYLE = {
    "pending": "cyan",
    "in_progress": "blue",
    "success": "green",
    "failed": "red",
    "cancelled": "yellow",
}


def state_text(state: str) -> Text:
    return Text(state, style=STATE_STYLE.get(state, ""))


def when(value: datetime | None) -> str:
    return "-" if value is None else value.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def jobs_table(rows: list[dict[str, Any]]) -> Table:
    table = Table(title_justify="left")
    for header in ("id", "queue", "state", "tries", "created", "finished", "last error"):
        table.add_column(header, overflow="fold" if header == "last error" else "ellipsis")
    for row in rows:
        table.add_row(
            str(row["id"]),
            str(row["queue_name"]),
            state_text(str(row["status"])),
            str(row["attempts"]),
            when(row["created_at"]),
            when(row["finished_at"]),
            (row["last_error"] or "")[:120],
        )
    return table


def job_view(job: dict[str, Any]) -> Group:
    facts = Table.grid(padding=(0, 2))
    facts.add_column(style="bold")
    facts.add_column(overflow="fold")  # a long payload is shown whole, not cut with "…"
    for key in (
        "id",
        "queue_name",
        "status",
        "attempts",
        "max_attempts",
        "priority",
        "run_at",
        "created_at",
        "finished_at",
        "dedup_key",
        "last_status_code",
        "last_error",
        "source",
    ):
        value = source_text(job) if key == "source" else job.get(key)
        shown = "-" if value is None else str(value)  # not Python's "None"
        facts.add_row(key, state_text(shown) if key == "status" else escape(shown))
    if job.get("last_response_excerpt"):
        # the target's own words: often the real reason (`HTTP 404` vs "function not found")
        facts.add_row("last_response", escape(excerpt(job["last_response_excerpt"])))
    for key in ("payload", "result"):
        # the text Postgres wrote: numbers exact (a Python float shows 1e-400 as 0.0)
        text = job.get(f"{key}_text")
        facts.add_row(key, escape(text if text is not None else json.dumps(job[key])))
    if job.get("lease"):
        facts.add_row("lease", f"until {job['lease']['lease_expires_at']}")
    attempts = Table(title="attempts", title_justify="left")
    for header in ("#", "outcome", "status", "duration", "ended", "error / response"):
        attempts.add_column(header, overflow="fold")
    starts = run_starts(job.get("operator_actions") or [])
    run = 1
    for a in job["attempt_history"]:
        if a.get("run", 1) != run:
            run = a.get("run", 1)
            attempts.add_row("", f"[bold]run {run}[/bold]", "", "", "", starts.get(run, "retried"))
        attempts.add_row(
            str(a["attempt"]),
            str(a["outcome"]),
            str(a["status_code"] or "-"),
            millis(a["duration_ms"]),
            str(a["ended_at"]),
            error_and_response(a.get("error"), a.get("response_excerpt")),
        )
    if job.get("operator_actions") and max(starts, default=1) > run:
        # retried, no attempt of the new run ended yet
        attempts.add_row("", f"[bold]run {max(starts)}[/bold]", "", "", "", starts[max(starts)])
    pipeline = Table(title="pipeline", title_justify="left")
    for header in ("relation", "job", "queue", "state"):
        pipeline.add_column(header)
    for relation, key in (("waits for", "depends_on"), ("waited for by", "dependents")):
        for other in job[key]:
            pipeline.add_row(
                relation, other["id"], other["queue_name"], state_text(other["status"])
            )
    parts: list[Any] = [facts, attempts]
    if job["depends_on"] or job["dependents"]:
        parts.append(pipeline)
    return Group(*parts)


def excerpt(text: str, limit: int = 400) -> str:
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def error_and_response(error: str | None, response: str | None) -> str:
    """An attempt's error and its answer's excerpt, both: the status line alone rarely says why."""
    parts = [excerpt(error, 200)] if error else []
    if response:
        parts.append(f"response: {excerpt(response, 300)}")
    return escape(" · ".join(parts))


def run_starts(actions: list[dict[str, Any]]) -> dict[int, str]:
    """Run number -> the operator action that started it ("retry_job at … by …")."""
    starts: dict[int, str] = {}
    for action in actions:
        if action.get("action") != "run_job_now":
            starts[int(action["run"])] = escape(
                f"{action['action']} at {action['at']} by {action['by']}"
            )
    return starts


def source_text(job: dict[str, Any]) -> str:
    """Where a job came from: `schedule nightly`, `trigger new-orders`, `api` or `sql`."""
    source = job.get("source") or "-"
    return f"{source} {job['source_name']}" if job.get("source_name") else str(source)


def schedules_table(rows: list[dict[str, Any]]) -> Table:
    table = Table(title="schedules", title_justify="left")
    for header in ("schedule", "queue", "cron", "next run", "last slot", "last job", "jobs/24h"):
        table.add_column(header, justify="right" if header == "jobs/24h" else "left")
    for row in rows:
        table.add_row(
            str(row["name"]),
            str(row["queue_name"]),
            f"{row['cron']} ({row['timezone']})",
            when(row["next_run_at"]),
            when(row["last_slot"]),
            last_job(row),
            str(row["jobs_last_day"]),
        )
    if not rows:
        table.caption = "no schedules (declare them in the stack)"
    return table


def triggers_table(rows: list[dict[str, Any]]) -> Table:
    table = Table(title="triggers", title_justify="left")
    for header in ("trigger", "queue", "table", "events", "when", "last job", "jobs/24h"):
        table.add_column(header, justify="right" if header == "jobs/24h" else "left")
    for row in rows:
        table.add_row(
            str(row["name"]),
            str(row["queue_name"]),
            f"{row['table_schema']}.{row['table_name']}",
            ", ".join(row["events"]),
            row["condition"] or "-",
            last_job(row),
            str(row["jobs_last_day"]),
        )
    if not rows:
        table.caption = "no triggers (declare them in the stack)"
    return table


def last_job(row: dict[str, Any]) -> Text | str:
    if not row.get("last_job"):
        return "-"
    text = Text(f"{when(row['last_job_created_at'])} ")
    text.append(str(row["last_job_status"]), style=STATE_STYLE.get(str(row["last_job_status"]), ""))
    return text


def source_view(kind: str, row: dict[str, Any], jobs: list[dict[str, Any]]) -> Group:
    """One schedule or trigger and the jobs it made, newest first."""
    first = schedules_table([row]) if kind == "schedule" else triggers_table([row])
    made = Table(title=f"jobs this {kind} made (newest first)", title_justify="left")
    for header in ("id", "queue", "state", "tries", "created", "finished", "last error"):
        made.add_column(header, overflow="fold" if header == "last error" else "ellipsis")
    for job in jobs:
        made.add_row(
            str(job["id"]),
            str(job["queue_name"]),
            state_text(str(job["status"])),
            str(job["attempts"]),
            when(job["created_at"]),
            when(job["finished_at"]),
            (job["last_error"] or "")[:120],
        )
    if not jobs:
        made.caption = "none yet"
    return Group(first, made)


def console() -> Console:
    # Piped into a file or another program: wide enough that no column is cut short.
    out = Console(highlight=False, soft_wrap=False)
    if not out.is_terminal:
        out = Console(highlight=False, soft_wrap=False, width=200)
    return out
