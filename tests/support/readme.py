"""The README's fenced code blocks, for the tests that check them. A block marked
`<!-- recipe: <path> -->` is a file of examples/ (tests/unit/test_readme_recipes.py); every other
block is found here by its first line, and CHECKED names the test that checks it
(tests/unit/test_readme_blocks.py fails on a block that no test checks)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
FENCE = re.compile(r"^( *)(```+)(\S*)\s*$")
RECIPE = re.compile(r"^<!-- recipe: (\S+) -->$")


@dataclass(frozen=True)
class Block:
    line: int
    """The README line of its opening fence (1-based)."""
    lang: str
    text: str
    """Its lines, without the list indentation the fence has, each ending in a newline."""
    recipe: str | None
    """The examples/ file of a marked block."""

    @property
    def key(self) -> str:
        """Its first line, stripped: how CHECKED names it."""
        return self.text.splitlines()[0].strip() if self.text.strip() else ""


def blocks(text: str | None = None) -> list[Block]:
    lines = (README.read_text() if text is None else text).split("\n")
    found: list[Block] = []
    index = 0
    while index < len(lines):
        opening = FENCE.match(lines[index])
        if not opening:
            index += 1
            continue
        indent, fence, lang = opening.groups()
        end = index + 1
        while end < len(lines) and lines[end].strip() != fence:
            end += 1
        assert end < len(lines), f"README.md line {index + 1}: a code block is never closed"
        body = [line.removeprefix(indent) for line in lines[index + 1 : end]]
        marker = RECIPE.match(lines[index - 1].strip()) if index else None
        found.append(
            Block(
                line=index + 1,
                lang=lang,
                text="".join(f"{line}\n" for line in body),
                recipe=marker.group(1) if marker else None,
            )
        )
        index = end + 1
    return found


def block(key: str) -> Block:
    """The one unmarked README block whose first line is `key`."""
    matching = [b for b in blocks() if b.recipe is None and b.key == key]
    assert len(matching) == 1, f"README.md has {len(matching)} code blocks starting {key!r}"
    return matching[0]


# The tests that check unmarked blocks
COMMANDS = "tests/unit/test_readme_commands.py::"
CONFIG = "tests/unit/test_readme_config_blocks.py::"
HOOKS = "tests/engine/test_readme_hooks.py::"
TYPED = "tests/console/test_readme_typed_clients.py::test_the_readme_snippets_type_check_and_run"
TYPED_API = (
    "tests/local_stack/test_typed_client_api.py::"
    "test_the_generated_client_enqueues_through_the_data_api"
)
WARNINGS = (
    "tests/providers/test_readme_preview_warnings.py::test_the_warnings_are_what_preview_says"
)

# Each unmarked README block (by its first line) and the test(s) that check exactly its text.
CHECKED: dict[str, str | tuple[str, ...]] = {
    "make up     # installs the toolchain, starts the local stack, runs `pulumi up` on the dev "
    "stack, runs a demo job": COMMANDS + "test_make_lines_name_real_targets",
    "supaqueue:chainMaxJobs: 100        # 0-1000, default 50; 0 or 1: no chaining": (
        CONFIG + "test_the_chain_budget_block"
    ),
    "- name: emails": CONFIG + "test_the_batch_queue_block",
    'import { batchHandler, JobError } from "./_shared/payload_handler.ts";': TYPED,
    "supaqueue gen types --lang typescript --stack dev --out "
    "supabase/functions/_shared/supaqueue.gen.ts": (
        TYPED,
        COMMANDS + "test_the_gen_commands_parse",
    ),
    "// Deno or Node, over SQL (postgres.js; in an Edge Function: "
    'Deno.env.get("SUPABASE_DB_URL"))': TYPED,
    "// Through the Data API with supabase-js (`supaqueue:dataApi: true` exposes supaqueue_api)": (
        TYPED_API
    ),
    "import psycopg": TYPED,
    "// the called function (supabase/functions/send-email/index.ts)": TYPED,
    "supaqueue status --stack dev                 # every queue: state, workers busy/total, "
    "rate limit,": COMMANDS + "test_the_operator_commands_parse",
    "supaqueue:triggers:": (
        CONFIG + "test_the_trigger_block",
        HOOKS + "test_the_trigger_blocks_condition_is_valid_on_its_table",
    ),
    "supaqueue:schedules:": (
        CONFIG + "test_the_schedule_block",
        HOOKS + "test_the_schedule_blocks_cron_runs_at_three_in_paris",
    ),
    "export PULUMI_CONFIG_PASSPHRASE=...      # or a secrets provider of your own": (
        COMMANDS + "test_the_prod_secrets_block_runs_the_stack_script"
    ),
    "warning: supaqueue: queue 'emails': workers 10 → 2: the 8 calls in flight finish first "
    "(none is cut short; …); a new call starts only when one of the 2 remaining worker(s) "
    "is free": WARNINGS,
}
