"""The operator API of sql/0013_operator.sql, called from Python: one function per SQL function.

The CLI and the dashboard both use these; neither writes SQL of its own. Every error a user can
cause is a `ConsoleError` (or a kind of it) with a message that names what to fix.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row

from supaqueue import sql_files
from supaqueue.clients.postgres import check_url, describe, sql_message

STATES = ("pending", "in_progress", "success", "failed", "cancelled")
FINISHED_STATES = ("success", "failed", "cancelled")
# What `figures` adds to each queue about holds by a Retry-After (sql/0027)
HOLD_FIELDS = ("held_until", "hold_reason", "held_keys", "key_held_until", "key_hold_reason")
# SQLSTATEs the operator API raises (sql/0013_operator.sql)
_NOT_FOUND = "SQ005"


class ConsoleError(Exception):
    """An operator command failed; the message says why and what to do. Exit code 1."""

    exit_code = 1


class BadInputError(ConsoleError):
    """An argument is malformed (named in the message). Exit code 2, as click's usage errors."""

    exit_code = 2


class NotFoundError(ConsoleError):
    """No such job or queue. Exit code 3."""

    exit_code = 3


class AmbiguousJobIdError(BadInputError):
    """A job id prefix matches several jobs (listed in the message). Exit code 2."""


def _queries() -> dict[str, str]:
    # operator_sources.sql: schedules, triggers, job sources, rates, metrics (migration 0021)
    return {
        **sql_files.named_queries("supaqueue.console", "operator.sql"),
        **sql_files.named_queries("supaqueue.console", "operator_sources.sql"),
    }


def connect(db_url: str, application_name: str = "supaqueue-console") -> psycopg.Connection:
    """An autocommit connection; errors never show the password."""
    problem = check_url(db_url)
    if problem:
        raise ConsoleError(f"the database URL {problem}")
    try:
        return psycopg.connect(
            db_url,
            autocommit=True,
            connect_timeout=10,
            application_name=application_name,
            row_factory=dict_row,  # type: ignore[arg-type]
        )
    except psycopg.OperationalError as exc:
        # psycopg's message can echo the conninfo; keep only its first line, which does not.
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "connection failed"
        raise ConsoleError(f"cannot connect to the database {describe(db_url)}: {first}") from None


def parse_uuid(value: str, what: str = "job id") -> str:
    try:
        return str(uuid.UUID(value.strip()))
    except (ValueError, AttributeError):
        raise BadInputError(f"{what} {value!r} is not a UUID") from None


@dataclass
class Operator:
    """The operator API on one connection."""

    conn: psycopg.Connection

    def _rows(self, query: str, /, **params: Any) -> list[dict[str, Any]]:
        try:
            return list(self.conn.execute(_queries()[query], params).fetchall())  # type: ignore[arg-type]
        except psycopg.errors.UndefinedFunction:
            raise ConsoleError(
                "this database has no supaqueue operator API: install or upgrade supaqueue "
                "(`pulumi up` applies the migrations)"
            ) from None
        except psycopg.errors.InvalidSchemaName:
            raise ConsoleError("supaqueue is not installed in this database") from None
        except psycopg.errors.InsufficientPrivilege:
            raise ConsoleError(
                "permission denied: connect as postgres or service_role to operate supaqueue"
            ) from None
        except psycopg.Error as exc:
            if exc.diag.sqlstate == _NOT_FOUND:
                raise NotFoundError(sql_message(exc)) from None
            raise ConsoleError(sql_message(exc)) from None

    def _value(self, query: str, /, **params: Any) -> Any:
        rows = self._rows(query, **params)
        return next(iter(rows[0].values())) if rows else None

    # --- reading ---------------------------------------------------------------------------

    def queue_id(self, name: str) -> str:
        rows = self._rows("queue_by_name", name=name)
        if not rows:
            known = ", ".join(r["name"] for r in self._rows("queue_names")) or "none"
            raise NotFoundError(f"there is no queue named {name!r} (queues: {known})")
        return str(rows[0]["id"])

    def figures(self, window: str = "1 hour") -> list[dict[str, Any]]:
        rows = self._rows("figures", window=window)
        self._add_last_minute_rates(rows)
        # The installation's dispatch hold (a missing dispatcher) holds every queue: each row
        # says so, so `status --json` and the dashboard show it where they show the state.
        hold = self.dispatch_hold()
        for row in rows:
            row["dispatch_held_since"] = hold["since"] if hold else None
            row["dispatch_hold_reason"] = hold["reason"] if hold else None
        # Holds by the target's Retry-After (sql/0027): the queue's, and its held keys.
        holds = self.queue_holds()
        for row in rows:
            held = holds.get(str(row["queue"]), {})
            for key in HOLD_FIELDS:
                row[key] = held.get(key, 0 if key == "held_keys" else None)
        # Keys with work (issue #26): 0 for a queue without keys
        counts = self.active_keys()
        for row in rows:
            row["active_keys"] = counts.get(str(row["queue"]), 0)
        return rows

    def active_keys(self) -> dict[str, int]:
        """Per queue id, its keys with work: due for a turn, held, or with a call running."""
        try:
            rows: list[dict[str, Any]] = list(
                self.conn.execute(_queries()["active_keys"]).fetchall()  # type: ignore[arg-type]
            )
        except psycopg.errors.UndefinedFunction:
            return {}  # an installation older than this console: its keys are not counted
        except psycopg.Error as exc:
            raise ConsoleError(sql_message(exc)) from None
        return {str(r["queue"]): int(r["active_keys"]) for r in rows}

    def queue_keys(self, queue: str, limit: int = 20) -> dict[str, Any]:
        """The busiest keys of a queue (at most `limit`, 1..100) and its number of active keys:
        `{queue, active_keys, keys: [{key, ready, ready_capped, running, next_turn_at,
        held_until, hold_reason}]}` (functions/75_operator.sql `queue_keys`)."""
        if not 1 <= limit <= 100:
            raise BadInputError(f"--limit {limit} is out of range: give 1 to 100 keys")
        rows = self._rows("queue_keys", queue=self.queue_id(queue), limit=limit)
        active = int(rows[0]["active_keys"]) if rows else 0
        keys = [{k: v for k, v in r.items() if k != "active_keys"} for r in rows]
        return {"queue": queue, "active_keys": active, "keys": keys}

    def queue_holds(self) -> dict[str, dict[str, Any]]:
        """Per queue id, the holds of queues and keys by a Retry-After (sql/0027): held_until,
        hold_reason, held_keys, key_held_until, key_hold_reason. Only queues with a hold."""
        try:
            rows: list[dict[str, Any]] = list(
                self.conn.execute(_queries()["queue_holds"]).fetchall()  # type: ignore[arg-type]
            )
        except (psycopg.errors.UndefinedTable, psycopg.errors.UndefinedColumn):
            return {}  # installed before sql/0027: nothing can be held
        except psycopg.Error as exc:
            raise ConsoleError(sql_message(exc)) from None
        return {str(r["queue"]): dict(r) for r in rows}

    def dispatch_hold(self) -> dict[str, Any] | None:
        """Since when and why dispatch is held (the dispatcher answered 404), or None."""
        try:
            rows = self.conn.execute(_queries()["dispatch_hold"]).fetchall()
        except psycopg.errors.UndefinedTable:
            return None  # installed before sql/0018: nothing can be held
        except psycopg.Error as exc:
            raise ConsoleError(sql_message(exc)) from None
        return dict(rows[0]) if rows else None

    def series(self, window: str = "1 hour", bucket_seconds: int = 60) -> list[dict[str, Any]]:
        return self._rows("series", window=window, bucket_seconds=bucket_seconds)

    def jobs(
        self,
        queue: str | None = None,
        states: list[str] | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        error: str | None = None,
        after_job: str | None = None,
        limit: int = 50,
    ) -> list[dict[str, Any]]:
        """One page, newest first; `after_job` is the last job of the previous page."""
        for state in states or []:
            if state not in STATES:
                raise BadInputError(f"state {state!r} is not one of {', '.join(STATES)}")
        before_created = None
        if after_job:
            after_job = self.resolve_job(after_job, "--after job id")
            before_created = self._value("job_created_at", id=after_job)
            if before_created is None:
                raise NotFoundError(f"there is no job {after_job} to page after")
        return self._rows(
            "list_jobs",
            queue=self.queue_id(queue) if queue else None,
            statuses=states or None,
            created_after=created_after,
            created_before=created_before,
            error=error or None,
            before_created=before_created,
            before_id=after_job,
            limit=limit,
        )

    def job(self, job_id: str) -> dict[str, Any]:
        job_id = self.resolve_job(job_id)
        return {**self.job_with_runs(job_id), **self._job_source(job_id)}

    # --- acting ----------------------------------------------------------------------------

    def retry(self, job_id: str) -> bool:
        """True when retried; False when the job was not failed or cancelled."""
        return bool(self._value("retry_job", id=self.resolve_job(job_id)))

    def retry_failed(
        self,
        queue: str,
        since: datetime | None = None,
        error: str | None = None,
        dry_run: bool = False,
    ) -> int:
        return int(
            self._value(
                "retry_failed_jobs",
                queue=self.queue_id(queue),
                since=since,
                error=error or None,
                dry_run=dry_run,
            )
        )

    def cancel(self, job_id: str) -> bool:
        """True when cancelled; False when the job had already finished."""
        return bool(self._value("cancel_job", id=self.resolve_job(job_id)))

    def purge(
        self,
        queue: str,
        states: list[str],
        older_than: datetime | None = None,
        dry_run: bool = False,
    ) -> int:
        for state in states:
            if state not in FINISHED_STATES:
                raise BadInputError(
                    f"state {state!r} cannot be purged: only {', '.join(FINISHED_STATES)}"
                )
        return int(
            self._value(
                "purge_jobs",
                queue=self.queue_id(queue),
                statuses=states,
                older_than=older_than,
                dry_run=dry_run,
            )
        )

    def pause(self, queue: str) -> dict[str, Any]:
        return dict(self._value("pause_queue", queue=self.queue_id(queue)))

    def resume(self, queue: str) -> dict[str, Any]:
        return dict(self._value("resume_queue", queue=self.queue_id(queue)))

    def holds_of(self, queue: str, key: str | None = None) -> dict[str, Any]:
        """What holds a queue now (sql/0027): `{held_until, hold_reason, held_keys,
        key_held_until, key_hold_reason}`; with `key`, also that key's `key_hold` (held_until,
        hold_reason) or None."""
        queue_id = self.queue_id(queue)
        holds = self.queue_holds().get(queue_id, {})
        view = {k: holds.get(k, 0 if k == "held_keys" else None) for k in HOLD_FIELDS}
        if key is not None:
            rows = self._rows("key_hold", queue=queue_id, key=key)
            view["key_hold"] = dict(rows[0]) if rows else None
        return view

    def lift_hold(
        self, queue: str, key: str | None = None, all_keys: bool = False
    ) -> dict[str, Any]:
        """End a hold by a Retry-After now and dispatch the queue (functions/75_operator.sql
        `lift_hold`): the queue's own hold, one key's (`key`) or every key's (`all_keys`); the
        jobs whose retry waits for the target's Retry-After are made due now (`made_due`).
        `{queue, name, key, all_keys, lifted, lifted_queue, lifted_keys, held_until,
        held_keys, made_due, dispatched}`; `lifted` 0: nothing was held."""
        if key is not None and all_keys:
            raise BadInputError("give --key or --all-keys, not both")
        return dict(
            self._value("lift_hold", queue=self.queue_id(queue), key=key, all_keys=all_keys)
        )

    def retry_after_delayed(
        self, queue: str, key: str | None = None, all_keys: bool = False
    ) -> int:
        """How many jobs `lift_hold` with these arguments would make due now (0033: those whose
        retry waits for the target's Retry-After, of what is held now)."""
        if key is not None and all_keys:
            raise BadInputError("give --key or --all-keys, not both")
        return int(
            self._value(
                "retry_after_delayed", queue=self.queue_id(queue), key=key, all_keys=all_keys
            )
        )

    # --- issue 22: job id prefixes, runs, bulk actions on a filter, run now -----------------

    def resolve_job(self, value: str, what: str = "job id") -> str:
        """A whole job id, or the start of one (the dashboard shows 8 characters) that matches
        exactly one job."""
        text = value.strip() if isinstance(value, str) else ""
        try:
            return str(uuid.UUID(text))
        except ValueError:
            pass
        hex_digits = text.replace("-", "").lower()
        if not hex_digits or any(c not in "0123456789abcdef" for c in hex_digits):
            raise BadInputError(f"{what} {value!r} is not a UUID or the start of one")
        if len(hex_digits) > 32:
            raise BadInputError(f"{what} {value!r} is not a UUID (too long)")
        matches = [r["id"] for r in self._rows("job_ids_with_prefix", prefix=text, limit=11)]
        if not matches:
            raise NotFoundError(f"there is no job whose id starts with {text!r}")
        if len(matches) > 1:
            shown = ", ".join(matches[:10]) + (", ..." if len(matches) > 10 else "")
            count = "more than 10" if len(matches) > 10 else str(len(matches))
            raise AmbiguousJobIdError(
                f"{what} {text!r} matches {count} jobs ({shown}): give more characters"
            )
        return str(matches[0])

    def job_with_runs(self, job_id: str) -> dict[str, Any]:
        """job_detail, each attempt marked with its run (1, then one more per operator retry),
        and the operator actions (`operator_actions`: action, at, by, run)."""
        rows = self._rows("job_detail_with_runs", id=job_id)
        if not rows or rows[0]["detail"] is None:
            raise NotFoundError(f"there is no job {job_id}")
        detail = dict(rows[0]["detail"])
        runs = dict(rows[0]["runs"] or {})
        marks = list(runs.get("attempts") or [])
        history = list(detail.get("attempt_history") or [])
        if len(marks) == len(history):
            for attempt, mark in zip(history, marks, strict=True):
                attempt["run"] = mark.get("run", 1)
        detail["operator_actions"] = list(runs.get("actions") or [])
        detail["last_response_excerpt"] = runs.get("last_response_excerpt")
        # exact, where `payload`/`result` went through Python floats (1e-400 read as 0.0)
        detail["payload_text"] = rows[0]["payload_text"]
        detail["result_text"] = rows[0]["result_text"]
        return detail

    def _filter_queue(self, queue: str | None) -> str | None:
        return self.queue_id(queue) if queue else None

    def cancel_matching(
        self,
        queue: str | None,
        states: list[str],
        error: str | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        dry_run: bool = False,
    ) -> int:
        """Cancel (or count, dry_run) the pending and/or in-progress jobs of a filter."""
        for state in states:
            if state not in ("pending", "in_progress"):
                raise BadInputError(
                    f"state {state!r} cannot be cancelled: only pending and in_progress"
                )
        return int(
            self._value(
                "cancel_jobs",
                queue=self._filter_queue(queue),
                statuses=states,
                error=error or None,
                created_after=created_after,
                created_before=created_before,
                dry_run=dry_run,
            )
        )

    def retry_matching(
        self,
        queue: str | None,
        error: str | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        dry_run: bool = False,
    ) -> int:
        """Retry (or count, dry_run) the failed jobs of a filter."""
        return int(
            self._value(
                "retry_jobs",
                queue=self._filter_queue(queue),
                error=error or None,
                created_after=created_after,
                created_before=created_before,
                dry_run=dry_run,
            )
        )

    def run_now(self, job_id: str) -> bool:
        """True when a delayed pending job was made due now; False when it was not delayed."""
        return bool(self._value("run_job_now", id=self.resolve_job(job_id)))

    # --- schedules, triggers, job sources, rates and metrics (migration 0021) ---------------

    def _add_last_minute_rates(self, rows: list[dict[str, Any]]) -> None:
        """`succeeded_last_minute` / `failed_last_minute`: jobs finished in the last minute, the
        console's "ok/min" (the window's `*_per_minute` figures are averages over the window)."""
        rates = {r["queue"]: r for r in self._rows("rates", window="1 minute")}
        for row in rows:
            rate = rates.get(row["queue"])
            row["succeeded_last_minute"] = rate["succeeded"] if rate else 0
            row["failed_last_minute"] = rate["failed"] if rate else 0

    def _job_source(self, job_id: str) -> dict[str, Any]:
        rows = self._rows("job_source", id=job_id)
        return dict(rows[0]) if rows else {"source": None, "source_name": None}

    def figures_only(self, window: str = "1 minute") -> list[dict[str, Any]]:
        """`supaqueue.queue_figures` alone (no schedule, no rates): what the metrics export."""
        return self._rows("queue_figures", window=window)

    def database_now(self, minus_seconds: float = 0) -> datetime:
        return self._value("database_now", settle=minus_seconds)  # type: ignore[no-any-return]

    def metrics_between(
        self, after: datetime, until: datetime, bounds_ms: list[float]
    ) -> list[dict[str, Any]]:
        return self._rows("metrics_between", after=after, until=until, bounds=bounds_ms)

    def schedules(self) -> list[dict[str, Any]]:
        return self._rows("schedules")

    def triggers(self) -> list[dict[str, Any]]:
        return self._rows("triggers")

    def schedule_id(self, name: str) -> str:
        rows = self._rows("schedule_by_name", name=name)
        if not rows:
            known = ", ".join(r["name"] for r in self._rows("schedule_names")) or "none"
            raise NotFoundError(f"there is no schedule named {name!r} (schedules: {known})")
        return str(rows[0]["id"])

    def schedule(self, name: str) -> dict[str, Any]:
        self.schedule_id(name)
        return next(s for s in self.schedules() if s["name"] == name)

    def trigger(self, name: str) -> dict[str, Any]:
        for row in self.triggers():
            if row["name"] == name:
                return row
        known = ", ".join(r["name"] for r in self._rows("trigger_names")) or "none"
        raise NotFoundError(f"there is no trigger named {name!r} (triggers: {known})")

    def source_jobs(self, source: str, name: str, limit: int = 50) -> list[dict[str, Any]]:
        """The jobs a schedule or trigger made, newest first."""
        return self._rows("source_jobs", source=source, name=name, limit=limit)

    def run_schedule_now(self, name: str) -> str:
        """Enqueue one job of the schedule now (its slots stay as they are); the job's id."""
        return str(self._value("run_schedule_now", id=self.schedule_id(name)))

    def pause_state(self, queue: str) -> dict[str, Any]:
        """{name, paused_by_stack, paused_by_operator_since} now, as pause/resume answer."""
        return dict(self._rows("queue_pause_state", queue=self.queue_id(queue))[0])
