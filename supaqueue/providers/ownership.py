"""Who owns a supaqueue installation and each queue, and what a stack may therefore do.

An installation (the schema, the Vault entry, the function secret, the `supaqueue` function)
belongs to the one Pulumi stack that installed it; the database records it in
`supaqueue.installation_owner` (sql/0007_ownership.sql). A queue belongs to the stack that
declared it (`supaqueue.queue.owner_stack[_id]`). A stack is `<project>/<stack>` plus a stack id,
a random value made once and kept in that stack's state (providers/stack_identity.py; two
checkouts both named `dev` differ in it). Every rule here is enforced before anything changes:
the schema resource's `check` (so preview and up stop first), the destroy guard's delete (so
destroy stops first), and again in the writes themselves.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from supaqueue.errors import DestroyRefusedError, OwnershipError
from supaqueue.migrations import SQL_DIR, load_migrations
from supaqueue.providers.base import is_unknown
from supaqueue.sql_files import queries

SQL = "ownership.sql"
DROP_DEPENDENTS_SETTING = "supaqueue.drop_dependents"  # read by supaqueue.uninstall()
# The stack config key that lets destroy drop dependent objects (supaqueue/config.py).
DROP_DEPENDENTS_CONFIG = "supaqueue:dropDependentObjectsOnDestroy"


@dataclass(frozen=True)
class Stack:
    """A Pulumi stack as the database records it."""

    name: str
    """`<project>/<stack>`."""
    stack_id: str | None
    """Unique to the stack's state; None in state written before ownership existed."""

    def label(self) -> str:
        return f"'{self.name}'" + (f" (stack id {self.stack_id[:8]})" if self.stack_id else "")


@dataclass(frozen=True)
class Recorded:
    """What the database says about the installation."""

    installed: bool
    owner: Stack | None  # None: installed before ownership records, or never claimed


def stack_of(props: dict[str, Any]) -> Stack | None:
    """The stack in a resource's `owner` input; its id is None while unknown (a preview of a
    new stack: it cannot be any recorded owner's id)."""
    owner = props.get("owner")
    if not isinstance(owner, dict) or not isinstance(owner.get("stack"), str):
        return None
    stack_id = owner.get("stack_id")
    known = isinstance(stack_id, str) and stack_id and not is_unknown(stack_id)
    return Stack(owner["stack"], stack_id if known else None)


def recorded(conn: psycopg.Connection) -> Recorded:
    text = queries(SQL)
    if not _one(conn, text["installed"]):
        return Recorded(False, None)
    if not _one(conn, text["owner_table_exists"]):
        return Recorded(True, None)
    row = conn.execute(text["recorded_owner"]).fetchone()
    return Recorded(True, Stack(row[0], row[1]) if row else None)


def _one(conn: psycopg.Connection, query: str) -> Any:
    row = conn.execute(query).fetchone()
    return row[0] if row else None


def _is(owner: Stack, me: Stack) -> bool:
    """`owner` is `me`; an owner without stack id is a hand-over to the stack of that name."""
    if owner.stack_id is None:
        return owner.name == me.name
    return owner.stack_id == me.stack_id


def install_problem(
    conn: psycopg.Connection, me: Stack, in_state: bool, *, vanished_ok: bool = False
) -> str | None:
    """Why the stack `me` may not install or update supaqueue here (None: it may).
    `in_state`: this stack installed it (its state holds the schema resource, or the gate
    recognised its secret). `vanished_ok`: not installed is fine (the gate: the schema's own
    check tells a fresh install from a vanished one)."""
    found = recorded(conn)
    if not found.installed:
        if in_state and not vanished_ok:
            return (
                "supaqueue is recorded in this stack's state but is not installed in the "
                "database (it was removed by hand or by another stack). Nothing was changed: "
                "run `pulumi refresh` (it forgets what is gone), then `pulumi up` installs it again"
            )
        return None
    owner = found.owner
    if owner is None:
        if in_state:
            return None  # installed by this stack before ownership records: it claims it now
        return (
            "supaqueue is already installed in this database, and no stack owns it (it was "
            "installed by hand, or by a stack that has not run `pulumi up` since ownership "
            f"records exist). This stack ({me.label()}) changed nothing. To declare only queues "
            "in it from this stack, set `supaqueue:installation: external`. To make this stack "
            "its owner, run in SQL "
            f"`insert into supaqueue.installation_owner (stack) values ('{me.name}');` "
            "then `pulumi up`. If it is what is left of a failed first `up` (it holds no "
            "queues), remove it with `python -m supaqueue.migrations uninstall --dsn <dbUrl>` "
            "and run `pulumi up` again."
        )
    if _is(owner, me):
        return None
    return (
        f"supaqueue in this database is owned by the Pulumi stack {owner.label()}, not by this "
        f"stack ({me.label()}): nothing was changed (no schema, Vault, secret or function "
        "change). To declare queues in it from this stack, set "
        "`supaqueue:installation: external` (the owner keeps the schema, secret and function). "
        "Only if that stack is gone for good and this one should take over: "
        f"`update supaqueue.installation_owner set stack = '{me.name}', stack_id = null;` "
        "then `pulumi up`."
    )


def external_problem(conn: psycopg.Connection, me: Stack) -> str | None:
    """Why the stack `me` may not declare queues in an installation it does not own."""
    found = recorded(conn)
    if not found.installed:
        return (
            "`supaqueue:installation: external` declares queues in an installation another stack "
            "owns, but supaqueue is not installed in this database: run `pulumi up` on the stack "
            "that installs it first (or remove `supaqueue:installation` to install it from "
            "this stack)"
        )
    if found.owner is not None and found.owner.stack_id is not None and _is(found.owner, me):
        return (
            f"this stack ({me.label()}) owns supaqueue in this database: with "
            "`supaqueue:installation: external` an `up` would remove its schema, secret and "
            "function. Nothing was changed. Remove `supaqueue:installation: external` to keep "
            "it; run `pulumi destroy` first to remove it."
        )
    return None


def claim(conn: psycopg.Connection, me: Stack) -> None:
    """Record `me` as the owner (in the caller's transaction); refuses another's installation."""
    text = queries(SQL)
    if me.stack_id is None:
        raise OwnershipError("internal: the schema resource has no stack id to claim with")
    conn.execute(text["lock_owner"])
    row = conn.execute(text["claim"], {"stack": me.name, "stack_id": me.stack_id}).fetchone()
    if row is None:
        problem = install_problem(conn, me, in_state=True)
        raise OwnershipError(problem or "supaqueue is owned by another stack")


def destroy_problems(
    conn: psycopg.Connection, me: Stack | None, *, drop_dependents: bool
) -> list[str]:
    """Why the owner's destroy may not remove supaqueue (empty: it may)."""
    text = queries(SQL)
    found = recorded(conn)
    if not found.installed:
        return []
    owner = found.owner
    if owner is not None and (me is None or not _is(owner, me)):
        who = me.label() if me else "this stack"
        return [
            f"supaqueue in this database is owned by the Pulumi stack {owner.label()}, not by "
            f"{who}: it is not removed. If this stack's state holds it by mistake, remove it "
            "from the state with `pulumi state delete --target-dependents '<urn>'` "
            "(the URNs: `pulumi stack --show-urns`)"
        ]
    problems = []
    if _one(conn, text["owner_table_exists"]):
        stack_id = me.stack_id if me else None
        foreign = conn.execute(text["foreign_queues"], {"stack_id": stack_id}).fetchall()
        if foreign:
            listed = ", ".join(f"{name!r} (stack '{stack}')" for name, stack in foreign)
            problems.append(
                f"other stacks still declare queues in this installation: {listed}. "
                "Remove them from those stacks (or `pulumi destroy` them) first"
            )
    if not drop_dependents and _one(conn, text["dependents_function_exists"]):
        found_objects = [row[0] for row in conn.execute(text["external_dependents"]).fetchall()]
        if found_objects:
            problems.append(
                f"{len(found_objects)} object(s) outside the schema supaqueue depend on it and "
                f"would be dropped with it: {'; '.join(found_objects)}. Drop or change them "
                "first (e.g. drop the view, change the column's type, drop the foreign key); "
                f"or, to drop them with supaqueue, set `{DROP_DEPENDENTS_CONFIG}: true`, run "
                "`pulumi up`, then destroy"
            )
    if problem := foreign_objects_problem(conn, drop_dependents=drop_dependents):
        problems.append(problem)
    return problems


# What supaqueue makes in its schema: every object a migration or repeatable file creates by
# name (sql/NNNN_*.sql, sql/functions/*.sql), the runner's ledgers, and the functions of table
# triggers (sql/*_hooks.sql: tg_hook_<name>_<part>).
_CREATED = re.compile(
    r"\bcreate\s+(?:or\s+replace\s+)?(?:unlogged\s+)?"
    r"(?:table|view|materialized\s+view|sequence|function|procedure|type|domain|aggregate)\s+"
    r"(?:if\s+not\s+exists\s+)?supaqueue\.(\"?)([A-Za-z_][A-Za-z0-9_]*)\1",
    re.IGNORECASE,
)
_RUNTIME_NAMES = ("migrations", "repeatable_migrations")  # the runner's ledgers
_RUNTIME_PREFIXES = ("tg_hook_",)


@functools.cache
def supaqueue_object_names(directory: Path = SQL_DIR) -> frozenset[str]:
    """The names of what supaqueue's own migrations and repeatable files make in schema
    supaqueue (any version)."""
    names = set(_RUNTIME_NAMES)
    loaded = load_migrations(directory)
    for text in [m.sql for m in loaded] + [r.sql for r in loaded.repeatables]:
        names.update(match.group(2) for match in _CREATED.finditer(text))
    return frozenset(names)


def foreign_objects(conn: psycopg.Connection, directory: Path = SQL_DIR) -> list[str]:
    """Objects in schema supaqueue that supaqueue did not make (`table supaqueue.notes`): a drop of
    the schema would take them with it. Empty where supaqueue is not installed."""
    if not _one(conn, queries(SQL)["installed"]):
        return []
    ours = supaqueue_object_names(directory)
    return [
        f"{kind} {identity}"
        for kind, name, identity in conn.execute(queries(SQL)["schema_objects"]).fetchall()
        if name not in ours and not name.startswith(_RUNTIME_PREFIXES)
    ]


def foreign_objects_problem(conn: psycopg.Connection, *, drop_dependents: bool) -> str | None:
    """Why destroy may not drop the schema: objects someone made inside it (the same rule as
    dependents outside it: refused, listing them, unless dropDependentObjectsOnDestroy)."""
    if drop_dependents:
        return None
    found = foreign_objects(conn)
    if not found:
        return None
    return (
        f"{len(found)} object(s) in the schema supaqueue were not made by supaqueue and would be "
        f"dropped with it: {'; '.join(found)}. Move them to a schema of yours (e.g. `alter "
        "table supaqueue.<name> set schema public`) or drop them first; or, to drop them with "
        f"supaqueue, set `{DROP_DEPENDENTS_CONFIG}: true`, run `pulumi up`, then destroy"
    )


def refuse_destroy(problems: list[str], *, first: bool = True) -> None:
    """Refuse a destroy for `problems`. `first`: the destroy guard's refusal, before any delete
    (so nothing at all was removed); else the schema's own, after the destroy's earlier deletes
    (queues, triggers, schedules: the output above lists what went)."""
    if not problems:
        return
    if first:
        said = "supaqueue was not removed, and nothing else was"
    else:
        said = (
            "supaqueue was not removed (nor its settings, Vault entry, functions or function "
            "secret); what this destroy deleted before it, listed above, is gone (`pulumi up` "
            "declares it again)"
        )
    listed = "".join(f"\n  - {problem}" for problem in problems)
    raise DestroyRefusedError(f"{said}:{listed}")


def queue_problem(
    conn: psycopg.Connection, queue_id: str, name: Any, me: Stack | None
) -> str | None:
    """Why the stack `me` may not change or remove the queue `queue_id` (locks its row).
    A queue without an owner (made in SQL, or before ownership records) may be."""
    text = queries(SQL)
    if not _one(conn, text["owner_table_exists"]):
        return None
    row = conn.execute(text["queue_owner"], {"id": queue_id}).fetchone()
    if row is None or row[1] is None:
        return None
    owner = Stack(row[0] or "?", row[1])
    if me is not None and me.stack_id == owner.stack_id:
        return None
    who = me.label() if me else "this stack"
    return (
        f"queue {name!r} ({queue_id}) is owned by the Pulumi stack {owner.label()}, not by "
        f"{who}: it was not changed. Change it from its own stack; if this stack's state holds "
        "it by mistake, remove it from the state with "
        "`pulumi state delete --target-dependents '<urn>'`"
    )


def queue_name_problem(conn: psycopg.Connection, name: str, me: Stack | None) -> str | None:
    """Why the stack `me` cannot create a queue named `name` (None: no queue has that name).
    Never advises removing a queue another stack owns."""
    text = queries(SQL)
    if not _one(conn, text["owner_table_exists"]):
        return None  # before 0007 (an upgrade's preview): create itself still refuses a taken name
    row = conn.execute(text["queue_by_name"], {"name": name}).fetchone()
    if row is None:
        return None
    queue_id, owner_name, owner_id, unfinished = row
    owner = Stack(owner_name or "?", owner_id) if owner_id is not None else None
    if owner is not None and (me is None or me.stack_id != owner.stack_id):
        who = me.label() if me else "this stack"
        same_name = me is not None and owner.name == me.name
        return (
            f"queue {name!r} is owned by the Pulumi stack {owner.label()}, not by {who}: "
            "nothing was changed. Declare this stack's queue under another name (a queue "
            "belongs to one stack; that stack changes or removes it)."
            + (
                " If that owner is this stack with its state lost, remove the queue in SQL "
                f"(`select supaqueue.drop_queue('{queue_id}');`, {unfinished} unfinished "
                "job(s)) and run `pulumi up` again."
                if same_name
                else ""
            )
        )
    return (
        f"queue {name!r} already exists in the database (id {queue_id}, {unfinished} unfinished "
        "job(s)) but not in this stack's state: the state was lost, or it was made by hand in "
        "SQL. Adopt it, `pulumi import supaqueue:index:Queue <resource name> "
        f"{name} --parent installation=<the Supaqueue component's URN>` (README: \"Adopting "
        'what SQL made"); or remove it in SQL, '
        f"`select supaqueue.drop_queue('{queue_id}');` (`, true` as second argument discards "
        "its unfinished jobs), then run `pulumi up` again; or declare the queue under another name."
    )


def vanished_queue_problem(conn: psycopg.Connection, queue_id: str, name: Any) -> str | None:
    """Why a queue in this stack's state cannot be diffed: its row is gone (None: it is there,
    or the whole schema is gone, which the schema's own check reports)."""
    text = queries(SQL)
    if not _one(conn, text["installed"]) or not _one(conn, text["queue_table_exists"]):
        return None
    if conn.execute(text["queue_exists"], {"id": queue_id}).fetchone():
        return None
    return (
        f"queue {name!r} ({queue_id}) is in this stack's state but not in the database (it was "
        "dropped in SQL, e.g. with supaqueue.drop_queue): nothing was changed. To make it again "
        "(empty, with a new id), run `pulumi refresh` (it forgets the dropped queue), then "
        "`pulumi up`, or both at once with `pulumi up --refresh`. To keep it gone, remove it "
        "from the stack (the next `up` then forgets it)."
    )
