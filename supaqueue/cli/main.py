"""`supaqueue`: the root command.

- `supaqueue dev up|down|status|destroy`: the local stack; its own parser in local_stack/cli.py
  gets the arguments unchanged (it behaves exactly as `python -m supaqueue.local_stack.cli dev …`).
- `supaqueue status|jobs|job|retry|cancel|purge|pause|resume|lift-hold|ui`: the operator console
  (console/commands.py).
"""

from __future__ import annotations

import click

from supaqueue.console.commands import COMMANDS
from supaqueue.extras import missing_extra


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def root() -> None:
    """supaqueue: queues that call Supabase Edge Functions under control."""


@root.command(
    context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False},
    add_help_option=False,
)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def dev(args: tuple[str, ...]) -> None:
    """The local Supabase stack: up | down | status [-o env] | destroy [--dir D]."""
    missing = missing_extra("local-stack", "supaqueue dev")
    if missing:
        click.echo(missing, err=True)
        raise SystemExit(1)
    from supaqueue.local_stack import (
        cli as local_stack_cli,  # only when asked: it starts nothing itself
    )

    raise SystemExit(local_stack_cli.main(["dev", *args]))


for command in COMMANDS:
    root.add_command(command)


def main(argv: list[str] | None = None) -> int:
    try:
        root.main(args=argv, prog_name="supaqueue", standalone_mode=True)
    except SystemExit as exc:
        return int(exc.code or 0) if not isinstance(exc.code, str) else 1
    return 0
