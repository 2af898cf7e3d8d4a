"""Every code block of the README is checked by a test: a marked recipe is a file of examples/
that tests run (tests/unit/test_readme_recipes.py), and every other block is listed in
tests/support/readme.py's CHECKED with the test that checks its text."""

from __future__ import annotations

import ast

from tests.support.readme import CHECKED, REPO, Block, blocks


def unchecked(found: list[Block]) -> list[str]:
    return [f"line {b.line}: {b.key!r}" for b in found if b.recipe is None and b.key not in CHECKED]


def test_every_readme_block_is_a_recipe_or_checked_by_a_named_test() -> None:
    unmarked = [b for b in blocks() if b.recipe is None]
    assert unmarked, "no unmarked blocks: CHECKED is stale"
    missing = unchecked(blocks())
    assert not missing, (
        "README.md code blocks that no test checks; make each a recipe (examples/ and a "
        "`<!-- recipe: ... -->` marker) or check it in a test and list its first line in "
        "tests/support/readme.py CHECKED:\n  " + "\n  ".join(missing)
    )
    keys = [b.key for b in unmarked]
    twice = sorted({key for key in keys if keys.count(key) > 1})
    assert not twice, f"README.md code blocks that start alike, so CHECKED cannot tell: {twice}"
    stale = sorted(set(CHECKED) - set(keys))
    assert not stale, f"CHECKED lists blocks the README no longer has: {stale}"


def test_a_new_block_is_found_wherever_it_is() -> None:
    """An unmarked block (indented in a list too) is named with its line; a marked one is not."""
    text = (
        "# t\n\n<!-- recipe: examples/enqueue.sql -->\n```sql\nselect 1;\n```\n\n"
        "1. Run:\n   ```bash\n   supaqueue frobnicate --now\n   ```\n"
    )
    found = blocks(text)
    assert [(b.line, b.lang, b.recipe) for b in found] == [
        (4, "sql", "examples/enqueue.sql"),
        (9, "bash", None),
    ]
    assert found[1].text == "supaqueue frobnicate --now\n"
    assert unchecked(found) == ["line 9: 'supaqueue frobnicate --now'"]


def test_each_checking_test_exists_and_reads_its_block() -> None:
    """The named test is a function of the named file, and that file looks its block up by the
    same first line (tests.support.readme.block), so it checks the README's current text."""
    for key, tests in CHECKED.items():
        for where in (tests,) if isinstance(tests, str) else tests:
            _check(key, where)


def _check(key: str, where: str) -> None:
    path, name = where.split("::")
    tree = ast.parse((REPO / path).read_text())
    functions = {node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)}
    assert name in functions, f"{where} (checking {key!r}) does not exist"
    strings = {
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
    }
    assert key in strings, f"{path} never names the block {key!r}"
