"""The README's shell blocks name real commands: each `supaqueue …` line (and each
`supaqueue …` named in its comments) parses with the real click CLI, each `make X` is a target
of the Makefile, and the production-secrets block runs scripts/pulumi-stack.sh as written
(with a stand-in `pulumi` that records its arguments)."""

from __future__ import annotations

import re
import shlex
import subprocess
import uuid
from pathlib import Path

import click
import pytest

from supaqueue.cli.main import root
from supaqueue.config import SECRET_KEYS, parse_stack_config
from tests.support.readme import REPO, block
from tests.support.stack_script import stand_in_pulumi

# The README's placeholders, as a user fills them in
PLACEHOLDERS = {
    "<job id>": str(uuid.uuid4()),
    "<last id of the previous page>": str(uuid.uuid4()),
    "<password>": "pw",
    "<ref>": "qwertyuiopasdfghjklz",
}


def fill(text: str) -> str:
    for placeholder, value in PLACEHOLDERS.items():
        text = text.replace(placeholder, value)
    assert "<" not in text, f"a placeholder without a value here: {text!r}"
    return text


def parse(line: str) -> click.Context:
    """The click context of `line` (`supaqueue …`): every group down to the command parsed,
    options and arguments checked; nothing runs."""
    words = shlex.split(fill(line))
    assert words[0] == "supaqueue", line
    command: click.Command = root
    ctx = root.make_context("supaqueue", words[1:])
    while isinstance(command, click.Group):
        rest = [*ctx._protected_args, *ctx.args]
        assert rest, f"{line!r} names no command"
        name, found, rest = command.resolve_command(ctx, rest)
        assert name is not None and found is not None, line
        command = found
        ctx = command.make_context(name, rest, parent=ctx)
    assert not ctx.args, f"{line!r}: extra arguments {ctx.args}"
    return ctx


def commands(text: str) -> list[str]:
    """The `supaqueue …` lines of a shell block, comments stripped, and the `supaqueue …`
    commands its comments name in backticks."""
    found = []
    for line in text.splitlines():
        code, _, comment = line.partition("#")
        if code.strip().startswith("supaqueue "):
            found.append(code.strip())
        found += re.findall(r"`(supaqueue [^`]+)`", comment)
    return found


def test_the_operator_commands_parse() -> None:
    text = block(
        "supaqueue status --stack dev                 # every queue: state, workers busy/total, "
        "rate limit,"
    ).text
    lines = commands(text)
    # the block's 20 lines and `supaqueue resume emails`
    assert len(lines) == 21, lines
    parsed = {line: parse(line) for line in lines}
    # what the lines say reaches the command as its parameters
    job = parsed["supaqueue job 1a2b3c4d --stack prod"]
    assert job.params["stack"] == "prod"
    metrics = parsed["supaqueue metrics --stack prod --listen 127.0.0.1:9464"]
    assert metrics.params["listen"] == "127.0.0.1:9464"


@pytest.mark.parametrize(
    ("line", "why"),
    [
        ("supaqueue jobs --stack prod --since", "requires an argument"),
        ("supaqueue retry --queue emails --failed --stack prod --bogus", "No such option"),
        ("supaqueue requeue <job id>", "No such command"),
        ("supaqueue pause emails extra", "unexpected extra argument"),
    ],
)
def test_a_wrong_line_does_not_parse(line: str, why: str) -> None:
    """What the check above would say of a wrong README line."""
    with pytest.raises(click.UsageError, match=why):
        parse(line)


def test_the_gen_commands_parse() -> None:
    text = block(
        "supaqueue gen types --lang typescript --stack dev --out "
        "supabase/functions/_shared/supaqueue.gen.ts"
    ).text
    lines = commands(text)
    assert len(lines) == 3
    for line in lines:
        parse(line)


def test_make_lines_name_real_targets() -> None:
    text = block(
        "make up     # installs the toolchain, starts the local stack, runs `pulumi up` on the dev "
        "stack, runs a demo job"
    ).text
    targets = set(re.findall(r"^([a-z][\w-]*):", (REPO / "Makefile").read_text(), re.MULTILINE))
    named = [line.split("#")[0].split() for line in text.splitlines()]
    assert [words[0] for words in named] == ["make", "make"]
    assert {words[1] for words in named} <= targets, (named, sorted(targets))


def test_the_prod_secrets_block_runs_the_stack_script(tmp_path: Path) -> None:
    """In a project root with a stand-in `pulumi` on the toolchain's path (as
    tests/unit/test_pulumi_stack_script.py): the script reaches pulumi with the README's
    arguments, the keys are the config's secret keys, and the URL, filled in, is accepted."""
    text = block(
        "export PULUMI_CONFIG_PASSPHRASE=...      # or a secrets provider of your own"
    ).text
    env = stand_in_pulumi(
        tmp_path, "s3://not-used", 'printf "%s\\n" "$*" >> "$SUPAQUEUE_ROOT/pulumi-calls"\n'
    )
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", fill(text)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    calls = [c for c in (tmp_path / "pulumi-calls").read_text().splitlines() if "config" in c]
    url = fill("postgresql://postgres:<password>@db.<ref>.supabase.co:5432/postgres")
    assert calls == [
        "--stack prod config set --secret supaqueue:accessToken sbp_...",
        f"--stack prod config set --secret supaqueue:dbUrl {url}",
    ]
    assert {c.split()[5].removeprefix("supaqueue:") for c in calls} == set(SECRET_KEYS)
    config = parse_stack_config(
        {"target": "supabase", "projectRef": PLACEHOLDERS["<ref>"], "dbUrl": url}, {}
    )
    assert config.db_url == url
