"""What an `up` or a `destroy` would refuse, and what it does to live work, known before the first
resource changes (issue 22: all-or-nothing plans).

Pulumi applies a plan resource by resource: a refusal found at the fifth delete leaves the first
four done. So every refusal that can be known in advance is found here, by two resources that run
first: the preflight (providers/preflight.py: everything of an `up` depends on it, so its `check`
runs before any create, update or delete, at preview and at `up`) and the destroy guard
(providers/destroy_guard.py: it depends on everything, so a destroy deletes it first). They read
the database only; the deletes themselves still refuse what they refuse (a race: a job enqueued
after the check).

The preflight's inputs describe what the stack declares, as `Declared`: per queue the settings
that matter to live work, per trigger and schedule its queue. What an `up` removes is what the
previous `up` declared (the preflight's own old inputs) and this one does not, plus removals
an earlier `up` planned but did not finish (`removing`, kept in its inputs while the queue is
still there).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import psycopg

from supaqueue.providers.ownership import Stack
from supaqueue.providers.trigger.provider import table_gone
from supaqueue.sql_files import queries

SQL = "plan.sql"
DISCARD = "discard_unfinished_on_delete"
# The queue settings the preflight compares with the database (the rest change no live work).
QUEUE_KEYS = ("edge_function_name", "workers", "max_attempts", "paused", DISCARD)


@dataclass(frozen=True)
class QueueFacts:
    """A queue as the database holds it now."""

    name: str
    id: str
    owner_stack: str | None
    owner_stack_id: str | None
    pending: int
    running: int
    workers: int
    max_attempts: int
    paused: bool
    operator_paused_at: str | None
    discard: bool | None
    """Whether its stack lets a removal discard its unfinished jobs (None: not recorded, before
    sql/0022)."""

    @property
    def unfinished(self) -> int:
        return self.pending + self.running

    def jobs(self) -> str:
        """'5 pending and 2 running jobs', naming only what is there."""
        parts = [f"{self.pending} pending"] if self.pending else []
        parts += [f"{self.running} running"] if self.running else []
        noun = "job" if self.unfinished == 1 else "jobs"
        return f"{' and '.join(parts) or 'no unfinished'} {noun}"

    def pause_note(self) -> str:
        if self.operator_paused_at:
            return f", paused by the operator since {self.operator_paused_at[:19]}"
        return ", paused by the stack" if self.paused else ""


@dataclass
class Plan:
    """What a plan would refuse (`blockers`: each says what to do) and what it does to live work
    (`effects`)."""

    blockers: list[str] = field(default_factory=list)
    effects: list[str] = field(default_factory=list)


def _facts(rows: Iterable[tuple[Any, ...]]) -> dict[str, QueueFacts]:
    found = {}
    for row in rows:
        name, queue_id, owner, owner_id, pending, running, workers, attempts, paused, op, ok = row
        found[name] = QueueFacts(
            name, queue_id, owner, owner_id, int(pending), int(running), int(workers),
            int(attempts), bool(paused), op, ok,
        )  # fmt: skip
    return found


def installed(conn: psycopg.Connection) -> bool:
    row = conn.execute(queries(SQL)["queue_table_exists"]).fetchone()
    return bool(row and row[0])


def _mapping(value: Any) -> dict[str, Any]:
    return dict(value) if isinstance(value, Mapping) else {}


def present(conn: psycopg.Connection, names: list[str], me: Stack) -> set[str]:
    """Which of the queues `names` the database holds as the stack `me`'s."""
    rows = conn.execute(queries(SQL)["present"], {"names": names, "stack_id": me.stack_id})
    return {str(row[0]) for row in rows.fetchall()}


def discards(olds: Mapping[str, Any], name: str) -> bool:
    """The discard flag of a queue as the previous `up` declared it (the preflight's inputs)."""
    for key in ("queues", "removing"):
        spec = _mapping(olds.get(key)).get(name)
        if isinstance(spec, Mapping):
            return bool(spec.get(DISCARD))
    return False


def removed_queues(olds: Mapping[str, Any], news: Mapping[str, Any]) -> list[str]:
    """Queues the previous `up` declared (or was removing) that this one does not declare (the
    callers keep those the database records as this stack's)."""
    before = set(_mapping(olds.get("queues"))) | set(_mapping(olds.get("removing")))
    return sorted(before - set(_mapping(news.get("queues"))))


def ours(facts: QueueFacts, me: Stack | None) -> bool:
    """The queue is recorded as this stack's (its create records the owner; an update claims
    one made before ownership records). Any other queue of that name is not in this stack's
    state: its check refused to create it."""
    return me is not None and me.stack_id is not None and facts.owner_stack_id == me.stack_id


def cancel_command(facts: QueueFacts) -> str:
    """The operator command that empties the queue of what it holds (README, "Operating")."""
    flags = (" --pending" if facts.pending else "") + (" --in-progress" if facts.running else "")
    return f"supaqueue cancel --queue {facts.name}{flags}"


def unfinished_refusal(facts: QueueFacts, doing: str, then: str = "then remove it") -> str:
    return (
        f"{doing} queue {facts.name!r} with {facts.jobs()}{facts.pause_note()}: refused (a "
        "queue is removed only when empty, unless it says its jobs may go). Let them finish"
        + (f" (resume it: `supaqueue resume {facts.name}`)" if facts.operator_paused_at else "")
        + f", or cancel them (`{cancel_command(facts)}`); or, to discard them, declare the queue "
        f"with `{DISCARD}: true`, run `pulumi up`, {then}"
    )


def discard_effect(facts: QueueFacts, doing: str) -> str:
    return (
        f"{doing} queue {facts.name!r}, discarding its {facts.jobs()} ({DISCARD}: true; a call "
        "in flight may still reach its function, its answer is dropped)"
    )


def _feeders(conn: psycopg.Connection, names: list[str]) -> list[tuple[str, str, str]]:
    text = queries(SQL)
    row = conn.execute(text["hooks_exist"]).fetchone()
    if not names or not (row and row[0]):
        return []
    found = conn.execute(text["feeders"], {"names": names}).fetchall()
    return [(str(kind), str(name), str(queue)) for kind, name, queue in found]


def renamed_tables(
    conn: psycopg.Connection, me: Stack | None, names: list[str], *, all_of_stack: bool
) -> list[str]:
    """Why the deletes of the triggers `names` (and, with `all_of_stack`, of every trigger
    feeding a queue of the stack `me`) would refuse: their table was renamed, and our table
    triggers went with it (trigger/provider.py says what to do)."""
    text = queries(SQL)
    row = conn.execute(text["hooks_exist"]).fetchone()
    if not (row and row[0]) or (not names and not all_of_stack):
        return []
    stack_id = me.stack_id if me is not None and all_of_stack else None
    rows = conn.execute(text["triggers_off_their_table"], {"names": names, "stack_id": stack_id})
    problems = []
    for name, schema, table in rows.fetchall():
        found = conn.execute(
            queries("trigger.sql")["renamed_to"], {"name": name, "table": table}
        ).fetchone()
        if found is not None:  # renamed (a dropped table: the delete skips it)
            problems.append(table_gone(conn, name, f"{schema}.{table}"))
    return problems


def up_plan(
    conn: psycopg.Connection,
    me: Stack | None,
    olds: Mapping[str, Any],
    news: Mapping[str, Any],
) -> Plan:
    """What the `up` from `olds` (the preflight's previous inputs) to `news` would refuse, and
    what it does to the queues' live work."""
    plan = Plan()
    if not installed(conn):
        return plan  # a first install: nothing to remove, no live work
    declared = _mapping(news.get("queues"))
    removed = removed_queues(olds, news)
    facts = _facts(
        conn.execute(
            queries(SQL)["queues_by_name"], {"names": sorted({*declared, *removed})}
        ).fetchall()
    )
    # A trigger or schedule this stack declares (before or now) is removed or moved by this
    # `up` before the queue's delete; any other one's foreign key refuses the delete.
    our_hooks = {
        (kind, name)
        for kind in ("trigger", "schedule")
        for source in (olds, news)
        for name in _mapping(source.get(f"{kind}s"))
    }
    feeders: dict[str, list[str]] = {}
    for kind, name, queue in _feeders(conn, [name for name in removed if name in facts]):
        if (kind, name) not in our_hooks:
            feeders.setdefault(queue, []).append(f"{kind} {name!r}")
    # A queue kept (or another stack's) that names a removed queue as its dead-letter queue.
    letters: dict[str, list[str]] = {}
    for user, target in conn.execute(
        queries(SQL)["dead_letter_users"], {"names": removed}
    ).fetchall():
        if user not in removed and user not in declared:
            letters.setdefault(str(target), []).append(repr(str(user)))
    for name in removed:
        found = facts.get(name)
        if found is None or not ours(found, me):
            # Gone already (its delete changes nothing), or never this stack's: declared but
            # refused at its check (a name another stack or SQL holds), so not in the state.
            continue
        # The database holds the flag its delete will use (its last applied declaration).
        discard = found.discard if found.discard is not None else discards(olds, name)
        if found.unfinished and not discard:
            plan.blockers.append(unfinished_refusal(found, "removes"))
        elif found.unfinished:
            plan.effects.append(discard_effect(found, "removes"))
        if name in letters:
            plan.blockers.append(
                f"removes queue {name!r}, which queue(s) {', '.join(letters[name])} (not "
                "declared by this stack) name as their dead_letter_queue: refused (their failed "
                "jobs go there). Point their dead_letter_queue elsewhere first"
            )
        if name in feeders:
            plan.blockers.append(
                f"removes queue {name!r}, which {', '.join(feeders[name])} (not declared by "
                "this stack: another stack's, or made in SQL) still enqueue(s) into: refused "
                "(a queue is removed only when nothing feeds it). Remove them from the stack "
                "that declares them, or in SQL (`supaqueue.drop_table_trigger(<id>)`, "
                "`delete from supaqueue.schedule where name = '<name>'`), first"
            )
    removed_triggers = sorted(
        set(_mapping(olds.get("triggers"))) - set(_mapping(news.get("triggers")))
    )
    plan.blockers += renamed_tables(conn, me, removed_triggers, all_of_stack=False)
    for name, spec in sorted(declared.items()):
        found = facts.get(name)
        if found is not None and isinstance(spec, Mapping) and ours(found, me):
            plan.effects += change_effects(conn, found, spec)
    return plan


def change_effects(
    conn: psycopg.Connection, found: QueueFacts, spec: Mapping[str, Any]
) -> list[str]:
    """What updating the queue `found` to `spec` does to its jobs and calls in flight."""
    effects = []
    name = found.name
    workers = spec.get("workers")
    if isinstance(workers, int | float) and workers < found.workers and found.running > workers:
        effects.append(
            f"queue {name!r}: workers {found.workers} → {int(workers)}: the {found.running} "
            "calls in flight finish first (none is cut short; the workers beyond "
            f"{int(workers)} retire as their call ends); a new call starts only when one of "
            f"the {int(workers)} remaining worker(s) is free"
        )
    attempts = spec.get("max_attempts")
    if isinstance(attempts, int | float) and attempts < found.max_attempts:
        row = conn.execute(
            queries(SQL)["exposed_to_lower_max_attempts"],
            {"id": found.id, "new": int(attempts), "old": found.max_attempts},
        ).fetchone()
        exposed = int(row[0]) if row else 0
        # max_attempts 1 exposes every unfinished job: "already used 0 or more" says nothing
        which = (
            f"{exposed} unfinished job(s) have already used {int(attempts) - 1} or more attempts"
            if attempts > 1
            else f"no retry any more: {exposed} unfinished job(s)"
        )
        if exposed:
            effects.append(
                f"queue {name!r}: max_attempts {found.max_attempts} → {int(attempts)}: "
                f"{which}: each fails for good at its next failure instead of being retried"
            )
    paused = spec.get("paused")
    if paused is True and not found.paused and found.unfinished:
        effects.append(
            f"queue {name!r}: paused: its {found.pending} pending job(s) wait until it is "
            f"resumed ({found.running} call(s) in flight finish)"
        )
    if paused is False and found.paused and found.pending:
        still = (
            f", but it stays paused by the operator (since {found.operator_paused_at[:19]}) "
            "until `supaqueue resume`"
            if found.operator_paused_at
            else ": they start now"
        )
        effects.append(
            f"queue {name!r}: resumed by the stack: {found.pending} pending job(s){still}"
        )
    return effects


def destroy_queue_problems(conn: psycopg.Connection, me: Stack | None) -> list[str]:
    """What a destroy of the stack `me` would refuse at the deletes of its queues, or lose
    without being asked to, found before the first delete. Ownership and other stacks' queues
    are ownership.destroy_problems'."""
    if me is None or me.stack_id is None or not installed(conn):
        return []
    text = queries(SQL)
    rows = conn.execute(text["queues_of_stack"], {"stack_id": me.stack_id, "names": []})
    problems = [
        unfinished_refusal(found, "would remove", then="then run `pulumi destroy` again")
        for found in _facts(rows.fetchall()).values()
        if found.unfinished and not found.discard
    ]
    problems += renamed_tables(conn, me, [], all_of_stack=True)
    for name, queue_id, unfinished in conn.execute(text["unowned_unfinished"]).fetchall():
        problems.append(
            f"queue {name!r} ({queue_id}) has no owner (it was made in SQL, or by a stack "
            f"before ownership records) and holds {unfinished} unfinished job(s), which "
            "removing supaqueue would discard: let them finish, or drop it on purpose in SQL, "
            f"`select supaqueue.drop_queue('{queue_id}', true);`"
        )
    return problems
