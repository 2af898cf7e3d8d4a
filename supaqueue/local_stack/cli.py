"""`supaqueue dev up | down | status [-o env] | destroy [--dir D]`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import NoReturn

from supaqueue.local_stack import lifecycle
from supaqueue.local_stack.state import default_dir


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # One line and exit 1, like every other failure of the CLI (argparse would exit 2).
        self.exit(1, f"{self.prog}: {message} (see {self.prog} --help)\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="supaqueue")
    groups = parser.add_subparsers(dest="group", required=True)
    dev = groups.add_parser("dev", help="the local Supabase stack")
    commands = dev.add_subparsers(dest="command", required=True)
    for name, text in (
        ("up", "start the local stack (Postgres, Edge runtime, Management API)"),
        ("down", "stop it (data kept)"),
        ("status", "show whether it runs and how to reach it"),
        ("destroy", "stop it and delete its data"),
    ):
        sub = commands.add_parser(name, help=text)
        sub.add_argument(
            "--dir",
            type=Path,
            default=None,
            help="state folder (default: $SUPAQUEUE_LOCAL_STACK_DIR, else .local-stack/ in the "
            "Pulumi project here or above, else ~/.local/state/supaqueue/local-stack)",
        )
        if name == "status":
            sub.add_argument("-o", "--output", choices=["pretty", "env"], default="pretty")
    return parser


def run(args: argparse.Namespace) -> int:
    state_dir = (args.dir or default_dir()).resolve()
    if args.command == "up":
        state, already = lifecycle.up(state_dir)
        print(f"local stack {'already running' if already else 'started'}: {state.api_url}")
    elif args.command == "down":
        stopped = lifecycle.down(state_dir)
        print("local stack stopped" if stopped else "local stack was not running")
    elif args.command == "destroy":
        removed = lifecycle.destroy(state_dir)
        print(f"removed {state_dir}" if removed else f"nothing to remove at {state_dir}")
    elif args.command == "status":
        state = lifecycle.running_state(state_dir)
        env = state.env()
        if args.output == "env":
            for key, value in env.items():
                print(f"{key}={value}")
        else:
            print(f"local stack running in {state_dir}")
            for key in ("API_URL", "FUNCTIONS_URL", "REST_URL", "DB_URL", "PROJECT_REF"):
                print(f"  {key:<14} {env[key]}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return run(args)
    except lifecycle.StackError as exc:
        print(f"supaqueue dev {args.command}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"supaqueue dev {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
