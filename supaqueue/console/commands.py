"""The operator commands: `supaqueue status | keys | jobs | job | retry | cancel | purge | pause |
resume | lift-hold | ui | run-now`.

Exit codes (scripts may rely on them):
  0 done · 1 error (database, connection, stack config) · 2 bad usage · 3 no such job or queue ·
  4 nothing to do (e.g. cancel of a finished job, no failed job matched) ·
  5 not confirmed (answered no, or no terminal to ask and no --yes)
"""

from __future__ import annotations

import functools
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any, TypeVar

import click
from rich.live import Live

from supaqueue.console import render
from supaqueue.console.api import FINISHED_STATES, STATES, ConsoleError, Operator
from supaqueue.console.target import connect_target, verified_db_url
from supaqueue.console.timeparse import TimeParam, WindowParam, interval
from supaqueue.extras import missing_extra

EXIT_NOTHING_TO_DO = 4
EXIT_NOT_CONFIRMED = 5
F = TypeVar("F", bound=Callable[..., Any])


class Stop(Exception):
    """Ends a command with this exit code and message (on stderr)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def database_options(fn: F) -> F:
    fn = click.option(
        "--stack",
        metavar="NAME",
        help="read the database URL from this Pulumi stack's "
        "supaqueue:dbUrl secret (dev, prod, ...)",
    )(fn)
    fn = click.option(
        "--db-url", metavar="URL", help="Postgres URL (default: $DB_URL); prefer --stack"
    )(fn)
    return fn


def json_option(fn: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="JSON for scripts")(fn)


def yes_option(fn: F) -> F:
    return click.option("--yes", "-y", is_flag=True, help="do not ask for confirmation")(fn)


def watch_options(fn: F) -> F:
    fn = click.option(
        "--watch",
        type=click.FloatRange(min=0.2),
        default=None,
        metavar="SECONDS",
        help="refresh every SECONDS until interrupted",
    )(fn)
    return click.option("--times", type=click.IntRange(min=1), default=None, hidden=True)(fn)


@contextmanager
def operator(db_url: str | None, stack: str | None) -> Iterator[Operator]:
    conn = connect_target(db_url, stack)
    try:
        yield Operator(conn)
    finally:
        conn.close()


def _require_console_extra(command: str) -> None:
    missing = missing_extra("console", command)
    if missing:
        raise ConsoleError(missing)


def guarded(fn: F) -> F:
    """Errors become one line on stderr and their exit code, never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ConsoleError as exc:
            click.echo(f"supaqueue: {exc}", err=True)
            sys.exit(exc.exit_code)
        except Stop as exc:
            click.echo(f"supaqueue: {exc}", err=True)
            sys.exit(exc.code)
        except KeyboardInterrupt:
            sys.exit(130)

    return wrapper  # type: ignore[return-value]


def confirm(what: str, yes: bool) -> None:
    """Say what will happen; go on only if confirmed (or --yes)."""
    if yes:
        return
    if not sys.stdin.isatty():
        raise Stop(EXIT_NOT_CONFIRMED, f"{what}: not done; confirm with --yes (no terminal to ask)")
    if not click.confirm(f"{what}. Go ahead?", default=False, err=True):
        raise Stop(EXIT_NOT_CONFIRMED, "not confirmed: nothing changed")


def repeat(watch: float | None, times: int | None, draw: Callable[[], Any], as_json: bool) -> None:
    """Print once, or (--watch) redraw until interrupted or `times` draws."""
    out = render.console()
    if watch is None:
        if as_json:
            click.echo(draw())
        else:
            out.print(draw())
        return
    count = 0
    if as_json:  # one JSON document per line, for scripts that follow
        while times is None or count < times:
            click.echo(draw())
            count += 1
            if times is None or count < times:
                time.sleep(watch)
        return
    if not out.is_terminal:  # a file or a pipe: each draw at once, flushed (Live would
        # write only when it stops, so `status --watch 1 > file` stayed empty until Ctrl-C)
        while times is None or count < times:
            out.print(draw())
            out.file.flush()
            count += 1
            if times is None or count < times:
                time.sleep(watch)
        return
    with Live(draw(), console=out, auto_refresh=False) as live:
        count = 1
        while times is None or count < times:
            time.sleep(watch)
            live.update(draw(), refresh=True)
            count += 1


def split_states(values: tuple[str, ...]) -> list[str]:
    # `in-progress` as `cancel --in-progress` and the tables spell it, or the SQL's `in_progress`
    return [s.strip().replace("-", "_") for v in values for s in v.split(",") if s.strip()]


# --- reading ------------------------------------------------------------------------------


@click.command()
@database_options
@click.option(
    "--window",
    type=WindowParam(),
    default="1h",
    show_default=True,
    help="figures over the last WINDOW (15m, 1h, 1d)",
)
@json_option
@watch_options
@guarded
def status(
    db_url: str | None,
    stack: str | None,
    window: str,
    as_json: bool,
    watch: float | None,
    times: int | None,
) -> None:
    """Every queue: state, workers busy/total, rate limit, depth, throughput, attempt times."""
    with operator(db_url, stack) as op:

        def draw() -> Any:
            rows = op.figures(interval(window))
            return render.to_json(rows) if as_json else render.status_table(rows, window)

        repeat(watch, times, draw, as_json)


@click.command()
@click.argument("queue")
@click.option(
    "--limit",
    type=click.IntRange(1, 100),
    default=20,
    show_default=True,
    help="show at most this many keys",
)
@database_options
@json_option
@watch_options
@guarded
def keys(
    queue: str,
    limit: int,
    db_url: str | None,
    stack: str | None,
    as_json: bool,
    watch: float | None,
    times: int | None,
) -> None:
    """A queue's busiest keys: calls running, ready jobs, next turn, hold; and how many keys
    have work."""
    with operator(db_url, stack) as op:

        def draw() -> Any:
            view = op.queue_keys(queue, limit)
            return render.to_json(view) if as_json else render.keys_table(view)

        repeat(watch, times, draw, as_json)


@click.command()
@database_options
@click.option("--queue", "-q", metavar="NAME", help="only this queue")
@click.option(
    "--state",
    "-s",
    "states",
    multiple=True,
    metavar="STATE",
    help=f"only these states ({', '.join(STATES)}; repeat or comma-separate)",
)
@click.option("--since", type=TimeParam(), help="created at or after (2h, 7d or ISO time)")
@click.option("--until", type=TimeParam(), help="created before (2h, 7d or ISO time)")
@click.option(
    "--error", metavar="TEXT", help="last error or response excerpt contains TEXT (any case)"
)
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True)
@click.option("--after", metavar="JOB_ID", help="the next page: jobs listed after this one")
@json_option
@watch_options
@guarded
def jobs(
    db_url: str | None,
    stack: str | None,
    queue: str | None,
    states: tuple[str, ...],
    since: datetime | None,
    until: datetime | None,
    error: str | None,
    limit: int,
    after: str | None,
    as_json: bool,
    watch: float | None,
    times: int | None,
) -> None:
    """Jobs, newest first, a page at a time (keyset paging: fast at any table size)."""
    with operator(db_url, stack) as op:

        def draw() -> Any:
            rows = op.jobs(
                queue=queue,
                states=split_states(states) or None,
                created_after=since,
                created_before=until,
                error=error,
                after_job=after,
                limit=limit,
            )
            if as_json:
                return render.to_json(rows)
            table = render.jobs_table(rows)
            if len(rows) == limit:
                table.caption = f"next page: --after {rows[-1]['id']}"
            elif not rows:
                table.caption = "no jobs match"
            return table

        repeat(watch, times, draw, as_json)


@click.command()
@click.argument("job_id")
@database_options
@json_option
@guarded
def job(job_id: str, db_url: str | None, stack: str | None, as_json: bool) -> None:
    """One job: payload, result, every attempt, and its pipeline."""
    with operator(db_url, stack) as op:
        detail = op.job(job_id)
    if as_json:
        click.echo(render.to_json(detail))
    else:
        render.console().print(render.job_view(detail))


# --- acting -------------------------------------------------------------------------------


def report(as_json: bool, result: dict[str, Any], text: str, changed: int) -> None:
    if as_json:
        click.echo(render.to_json(result))
    else:
        click.echo(text)
    if not changed:
        sys.exit(EXIT_NOTHING_TO_DO)


@click.command()
@click.argument("job_ids", nargs=-1)
@click.option("--queue", "-q", metavar="NAME", help="with --failed: the queue")
@click.option("--failed", "all_failed", is_flag=True, help="every failed job of --queue")
@click.option("--since", type=TimeParam(), help="with --failed: failed at or after this time")
@click.option(
    "--error", metavar="TEXT", help="with --failed: last error or response excerpt contains TEXT"
)
@database_options
@yes_option
@json_option
@guarded
def retry(
    job_ids: tuple[str, ...],
    queue: str | None,
    all_failed: bool,
    since: datetime | None,
    error: str | None,
    db_url: str | None,
    stack: str | None,
    yes: bool,
    as_json: bool,
) -> None:
    """Retry failed or cancelled jobs with fresh attempts (their cancelled dependents too)."""
    if bool(job_ids) == bool(all_failed):
        raise click.UsageError("give job ids, or --queue NAME --failed (not both)")
    if all_failed and not queue:
        raise click.UsageError("--failed needs --queue NAME")
    if job_ids and (queue or since or error):
        raise click.UsageError("--queue, --since and --error go with --failed")
    with operator(db_url, stack) as op:
        if all_failed:
            assert queue is not None
            matching = op.retry_failed(queue, since, error, dry_run=True)
            if not matching:
                report(as_json, {"retried": 0}, f"no failed job of queue {queue} matches", 0)
            confirm(f"Retry {matching} failed job(s) of queue {queue}", yes)
            count = op.retry_failed(queue, since, error)
            report(as_json, {"retried": count}, f"retried {count} job(s) of queue {queue}", count)
            return
        confirm(f"Retry {len(job_ids)} job(s): {', '.join(job_ids)}", yes)
        done: list[str] = []
        skipped: list[str] = []
        for job_id in job_ids:
            (done if op.retry(job_id) else skipped).append(job_id)
        lines = [f"retried {j}" for j in done]
        lines += [f"not retried (not failed or cancelled): {j}" for j in skipped]
        report(as_json, {"retried": done, "not_retried": skipped}, "\n".join(lines), len(done))


@click.command()
@click.argument("job_ids", nargs=-1)
@click.option("--queue", "-q", metavar="NAME", help="with --pending/--in-progress: the queue")
@click.option("--pending", is_flag=True, help="every pending job of --queue")
@click.option(
    "--in-progress",
    "in_progress",
    is_flag=True,
    help="every in-progress job of --queue (their late answers change nothing)",
)
@click.option(
    "--error", metavar="TEXT", help="with --queue: only jobs whose error or response has TEXT"
)
@database_options
@yes_option
@json_option
@guarded
def cancel(
    job_ids: tuple[str, ...],
    queue: str | None,
    pending: bool,
    in_progress: bool,
    error: str | None,
    db_url: str | None,
    stack: str | None,
    yes: bool,
    as_json: bool,
) -> None:
    """Cancel pending or in-progress jobs (and their pending dependents): by id (or the start
    of one), or all of a queue's with --queue Q --pending and/or --in-progress."""
    if queue or pending or in_progress or error:
        cancel_queue(job_ids, queue, pending, in_progress, error, db_url, stack, yes, as_json)
        return
    if not job_ids:
        raise click.UsageError("give job ids, or --queue NAME --pending and/or --in-progress")
    with operator(db_url, stack) as op:
        confirm(
            f"Cancel {len(job_ids)} job(s) and their pending dependents: {', '.join(job_ids)}", yes
        )
        done: list[str] = []
        skipped: list[str] = []
        for job_id in job_ids:
            (done if op.cancel(job_id) else skipped).append(job_id)
    lines = [f"cancelled {j}" for j in done]
    lines += [f"not cancelled (already finished): {j}" for j in skipped]
    report(as_json, {"cancelled": done, "not_cancelled": skipped}, "\n".join(lines), len(done))


def cancel_queue(
    job_ids: tuple[str, ...],
    queue: str | None,
    pending: bool,
    in_progress: bool,
    error: str | None,
    db_url: str | None,
    stack: str | None,
    yes: bool,
    as_json: bool,
) -> None:
    """`cancel --queue Q --pending/--in-progress`: empty a queue on purpose, after confirming
    the count (sql/0020 cancel_jobs)."""
    if job_ids:
        raise click.UsageError("give job ids, or --queue NAME --pending/--in-progress (not both)")
    if not queue:
        raise click.UsageError("--pending/--in-progress need --queue NAME")
    states = [s for s, chosen in (("pending", pending), ("in_progress", in_progress)) if chosen]
    if not states:
        raise click.UsageError("--queue needs --pending and/or --in-progress")
    what = " and ".join(s.replace("_", "-") for s in states)
    match = f" whose error or response contains {error!r}" if error else ""
    with operator(db_url, stack) as op:
        matching = op.cancel_matching(queue, states, error, dry_run=True)
        if not matching:
            none = " or ".join(s.replace("_", "-") for s in states)  # not "no pending and …"
            report(as_json, {"cancelled": 0}, f"no {none} job of queue {queue}{match}", 0)
        confirm(
            f"Cancel {matching} {what} job(s) of queue {queue}{match}, and their pending "
            "dependents",
            yes,
        )
        count = op.cancel_matching(queue, states, error)
    report(
        as_json,
        {"cancelled": count, "matched": matching},
        f"cancelled {count} job(s) of queue {queue}",
        count,
    )


@click.command(name="run-now")
@click.argument("job_id")
@database_options
@json_option
@guarded
def run_now(job_id: str, db_url: str | None, stack: str | None, as_json: bool) -> None:
    """Run a delayed job now (its run_at or retry backoff not yet reached)."""
    with operator(db_url, stack) as op:
        resolved = op.resolve_job(job_id)
        done = op.run_now(resolved)
    text = (
        f"job {resolved} is due now"
        if done
        else f"job {resolved} was not delayed (not pending, or already due): nothing changed"
    )
    report(as_json, {"job": resolved, "run_now": done}, text, int(done))


@click.command()
@click.option("--queue", "-q", metavar="NAME", required=True)
@click.option(
    "--state",
    "-s",
    "states",
    multiple=True,
    metavar="STATE",
    help=f"only these states ({', '.join(FINISHED_STATES)}; default all three)",
)
@click.option("--older-than", type=TimeParam(), help="finished before (7d, 2h or ISO time)")
@database_options
@yes_option
@json_option
@guarded
def purge(
    queue: str,
    states: tuple[str, ...],
    older_than: datetime | None,
    db_url: str | None,
    stack: str | None,
    yes: bool,
    as_json: bool,
) -> None:
    """Delete finished jobs of a queue and their attempt history (not jobs others wait for)."""
    chosen = split_states(states) or list(FINISHED_STATES)
    with operator(db_url, stack) as op:
        matching = op.purge(queue, chosen, older_than, dry_run=True)
        age = f" finished before {older_than.isoformat()}" if older_than else ""
        if not matching:
            report(as_json, {"purged": 0}, f"no {'/'.join(chosen)} job of {queue}{age}", 0)
        confirm(
            f"Delete {matching} {'/'.join(chosen)} job(s) of queue {queue}{age}, with their "
            "attempt history",
            yes,
        )
        count = op.purge(queue, chosen, older_than)
    report(as_json, {"purged": count}, f"purged {count} job(s) of queue {queue}", count)


def _pause_state(state: dict[str, Any]) -> str:
    name = state["name"]
    if state["paused_by_operator_since"] and state["paused_by_stack"]:
        return (
            f"queue {name} paused (operator, since {state['paused_by_operator_since']}; "
            "the stack also declares it paused)"
        )
    if state["paused_by_operator_since"]:
        return f"queue {name} paused (operator, since {state['paused_by_operator_since']})"
    if state["paused_by_stack"]:
        return (
            f"queue {name}: operator pause lifted, but the stack declares it paused "
            "(set paused: false in the stack and `pulumi up` to run it)"
        )
    return f"queue {name} running"


@click.command()
@click.argument("queue")
@database_options
@yes_option
@json_option
@guarded
def pause(queue: str, db_url: str | None, stack: str | None, yes: bool, as_json: bool) -> None:
    """Stop a queue dispatching (calls in flight finish). Kept across `pulumi up`."""
    with operator(db_url, stack) as op:
        before = op.pause_state(queue)
        if before["paused_by_operator_since"]:  # exit 4: nothing to do
            report(as_json, before, f"nothing to do: {_pause_state(before)}", 0)
        confirm(f"Pause queue {queue} (no new calls until `supaqueue resume {queue}`)", yes)
        state = op.pause(queue)
    report(as_json, state, _pause_state(state), 1)


@click.command()
@click.argument("queue")
@database_options
@yes_option
@json_option
@guarded
def resume(queue: str, db_url: str | None, stack: str | None, yes: bool, as_json: bool) -> None:
    """Lift the operator's pause (a queue the stack declares paused stays paused)."""
    with operator(db_url, stack) as op:
        before = op.pause_state(queue)
        if not before["paused_by_operator_since"]:  # exit 4: no operator pause to lift
            stack_too = (
                " (the stack declares it paused: set paused: false in the stack and `pulumi up`)"
                if before["paused_by_stack"]
                else ""
            )
            report(
                as_json,
                before,
                f"nothing to do: queue {queue} is not paused by an operator{stack_too}",
                0,
            )
        confirm(f"Resume queue {queue}", yes)
        state = op.resume(queue)
    report(as_json, state, _pause_state(state), 1)


def _clock(value: Any) -> str:
    """A time of the operator API's JSON answer (ISO text) as the status table shows it."""
    when = datetime.fromisoformat(value) if isinstance(value, str) else value
    return render.clock(when) if isinstance(when, datetime) else "-"


def _other_holds(queue: str, holds: dict[str, Any]) -> str:
    """What (else) holds the queue, and how to lift it: its own hold, its held keys."""
    left = []
    if holds.get("held_until"):
        left.append(
            f"queue {queue} itself is held until {_clock(holds['held_until'])} "
            f"(`supaqueue lift-hold {queue}`)"
        )
    if holds.get("held_keys"):
        left.append(f"{holds['held_keys']} key(s) held (--key KEY or --all-keys)")
    return "".join(f"; {part}" for part in left)


def _lifted_text(queue: str, key: str | None, answer: dict[str, Any]) -> str:
    if key is not None:
        what = f"hold of key {key!r} lifted"
    elif answer["all_keys"]:
        what = f"holds of {answer['lifted_keys']} key(s) lifted"
    else:
        what = "hold lifted"
    # made_due (0033): the jobs whose retry waited for the target's Retry-After, due now
    return (
        f"queue {queue}: {what}; {answer['made_due']} job(s) delayed by a Retry-After made due"
        f" now; {answer['dispatched']} job(s) dispatched" + _other_holds(queue, answer)
    )


@click.command(name="lift-hold")
@click.argument("queue")
@click.option("--key", metavar="KEY", default=None, help="lift the hold of this key only")
@click.option("--all-keys", is_flag=True, help="lift the hold of every key of the queue")
@database_options
@yes_option
@json_option
@guarded
def lift_hold(
    queue: str,
    key: str | None,
    all_keys: bool,
    db_url: str | None,
    stack: str | None,
    yes: bool,
    as_json: bool,
) -> None:
    """End a hold by the target's Retry-After now (the queue's, or its keys'): the jobs the
    Retry-After delayed are due now, and the queue dispatches at once."""
    if key is not None and all_keys:
        raise click.UsageError("give --key or --all-keys, not both")
    with operator(db_url, stack) as op:
        holds = op.holds_of(queue, key)
        if key is not None:
            held = holds["key_hold"]
            lifting = (
                f"key {key!r} of queue {queue} (held until {_clock(held['held_until'])}: "
                f"{held['hold_reason']})"
                if held
                else None
            )
        elif all_keys:
            count = holds["held_keys"]
            lifting = f"{count} key(s) of queue {queue}" if count else None
        else:
            lifting = (
                f"queue {queue} (held until {_clock(holds['held_until'])}: {holds['hold_reason']})"
                if holds["held_until"]
                else None
            )
        if lifting is None:  # exit 4: nothing held
            if key is not None:
                nothing = f"key {key!r} of queue {queue} is not held"
            else:
                nothing = (
                    f"no key of queue {queue} is held" if all_keys else f"queue {queue} is not held"
                )
            answer = {"queue": queue, "lifted": 0, **holds}
            report(as_json, answer, f"nothing to do: {nothing}{_other_holds(queue, holds)}", 0)
        delayed = op.retry_after_delayed(queue, key, all_keys)
        confirm(
            f"Lift the hold of {lifting}; its jobs are dispatched at once, and {delayed} job(s) "
            "its Retry-After delayed are due now",
            yes,
        )
        answer = op.lift_hold(queue, key, all_keys)
    if not answer["lifted"]:  # the hold ended by itself meanwhile
        report(as_json, answer, "nothing to do: the hold had ended already", 0)
    report(as_json, answer, _lifted_text(queue, key, answer), int(answer["lifted"]))


@click.command()
@database_options
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=0,
    show_default=True,
    help="port on 127.0.0.1 (0: any free one)",
)
@click.option("--open/--no-open", "open_browser", default=True, help="open a browser")
@guarded
def ui(db_url: str | None, stack: str | None, port: int, open_browser: bool) -> None:
    """The dashboard, on 127.0.0.1 only; prints a URL with a one-time token."""
    _require_console_extra("supaqueue ui")
    from supaqueue.console.dashboard.server import serve

    serve(verified_db_url(db_url, stack), port=port, open_browser=open_browser)


COMMANDS = [status, jobs, job, retry, cancel, purge, pause, resume, ui, run_now]


# --- schedules, triggers and metrics ------------------------------------------------------


def _show_sources(
    kind: str, name: str | None, limit: int, db_url: str | None, stack: str | None, as_json: bool
) -> None:
    """Every schedule or trigger (`kind`); with NAME, that one and the jobs it made."""
    with operator(db_url, stack) as op:
        if name is None:
            rows = op.schedules() if kind == "schedule" else op.triggers()
            table = render.schedules_table if kind == "schedule" else render.triggers_table
            out: Any = render.to_json(rows) if as_json else table(rows)
        else:
            row = op.schedule(name) if kind == "schedule" else op.trigger(name)
            made = op.source_jobs(kind, name, limit)
            out = (
                render.to_json({**row, "jobs": made})
                if as_json
                else render.source_view(kind, row, made)
            )
    if as_json:
        click.echo(out)
    else:
        render.console().print(out)


@click.command()
@click.argument("name", required=False)
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True)
@database_options
@json_option
@guarded
def schedules(
    name: str | None, limit: int, db_url: str | None, stack: str | None, as_json: bool
) -> None:
    """Schedules: next run, last slot, last job; with NAME, the jobs that schedule made."""
    _show_sources("schedule", name, limit, db_url, stack, as_json)


@click.command()
@click.argument("name", required=False)
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True)
@database_options
@json_option
@guarded
def triggers(
    name: str | None, limit: int, db_url: str | None, stack: str | None, as_json: bool
) -> None:
    """Table triggers: table, events, last job; with NAME, the jobs that trigger made."""
    _show_sources("trigger", name, limit, db_url, stack, as_json)


@click.command("run-schedule")
@click.argument("name")
@database_options
@yes_option
@json_option
@guarded
def run_schedule(
    name: str, db_url: str | None, stack: str | None, yes: bool, as_json: bool
) -> None:
    """Enqueue one job of a schedule now (its next runs stay as they are)."""
    with operator(db_url, stack) as op:
        row = op.schedule(name)
        confirm(
            f"Enqueue one job of schedule {name} on queue {row['queue_name']} now "
            f"(its next run, {render.when(row['next_run_at'])}, stays)",
            yes,
        )
        job_id = op.run_schedule_now(name)
    report(as_json, {"schedule": name, "job": job_id}, f"enqueued job {job_id}", 1)


@click.command()
@database_options
@click.option(
    "--listen",
    default="127.0.0.1:9464",
    show_default=True,
    metavar="HOST:PORT",
    help="loopback address to serve /metrics on (port 0: any free one)",
)
@click.option("--settle-seconds", type=click.FloatRange(0, 300), default=None, hidden=True)
@guarded
def metrics(
    db_url: str | None, stack: str | None, listen: str, settle_seconds: float | None
) -> None:
    """Prometheus metrics of every queue on http://HOST:PORT/metrics, read at each scrape."""
    _require_console_extra("supaqueue metrics")
    from supaqueue.console import metrics as exporter

    exporter.parse_listen(listen)  # a bad address is a usage error before anything else
    url = verified_db_url(db_url, stack)
    exporter.serve(
        url, listen, exporter.SETTLE_SECONDS if settle_seconds is None else settle_seconds
    )


COMMANDS += [schedules, triggers, run_schedule, metrics]
COMMANDS += [keys]  # issue #26: the busiest keys of a queue
COMMANDS += [lift_hold]  # issue #26 item 3: end a Retry-After hold early


# --- typed clients --------------------------------------------------------------------------


def _write(text: str, out: str | None) -> None:
    if out is None:
        click.echo(text, nl=False)
        return
    try:
        # the README's `--out supabase/functions/_shared/…` names folders a project may not have yet
        os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
        with open(out, "w", encoding="utf-8") as file:
            file.write(text)
    except OSError as exc:
        raise Stop(1, f"--out {out}: cannot write it ({exc.strerror})") from None
    click.echo(f"wrote {out}", err=True)


@click.group()
def gen() -> None:
    """Generate code from the database: typed enqueue clients, the payload handler."""


@gen.command("types")
@click.option(
    "--lang",
    type=click.Choice(["typescript", "python"]),
    required=True,
    help="typescript (Deno, Node: postgres.js) or python (psycopg)",
)
@click.option("--out", metavar="FILE", help="write to FILE (default: standard output)")
@database_options
@guarded
def gen_types(lang: str, out: str | None, db_url: str | None, stack: str | None) -> None:
    """A typed enqueue client: queue names as literal types, payload types from each queue's
    payload_schema (any JSON for a queue without one)."""
    import psycopg

    from supaqueue.console import typegen

    conn = connect_target(db_url, stack)
    try:
        queues = typegen.read_queues(conn)
    except (psycopg.errors.UndefinedTable, psycopg.errors.InvalidSchemaName):
        raise Stop(1, "supaqueue is not installed in that database (no supaqueue.queue)") from None
    except psycopg.errors.UndefinedColumn:
        raise Stop(
            1, "that database's supaqueue predates payload schemas: run `pulumi up` to upgrade it"
        ) from None
    finally:
        conn.close()
    text = typegen.generate(queues, lang)
    for warning in typegen.warnings(text):
        click.echo(f"supaqueue: warning: {warning}", err=True)
    _write(text, out)


@gen.command("handler")
@click.option("--out", metavar="FILE", help="write to FILE (default: standard output)")
@guarded
def gen_handler(out: str | None) -> None:
    """The Deno module that validates a job's payload against its queue's schema in the called
    function (a bad payload: 422 naming the field, not retried)."""
    from supaqueue.console import typegen

    _write(typegen.handler_module(), out)


COMMANDS += [gen]
