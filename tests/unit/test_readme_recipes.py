"""Each README code block marked `<!-- recipe: <path> -->` is that file, byte for byte, and every
file in `examples/` is shown in the README, so the recipes the tests run are the ones users read
(tests/edge/test_recipes_on_local_stack.py, tests/engine/test_recipes_sql.py run them)."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
MARKED = re.compile(r"<!-- recipe: (\S+) -->\n```\w*\n(.*?)```\n", re.DOTALL)
# Files of an example that are not its recipe text (a function's Deno settings; a Node.js
# program's package settings and ignore list; a Go program's module files).
NOT_SHOWN = {"deno.json", "package.json", "tsconfig.json", ".gitignore", "go.mod", "go.sum"}


def _marked() -> dict[str, str]:
    readme = (REPO / "README.md").read_text()
    found = MARKED.findall(readme)
    assert len(found) == readme.count("<!-- recipe: "), "a recipe marker without a code block"
    return dict(found)


def test_readme_recipe_blocks_are_the_tested_files() -> None:
    marked = _marked()
    assert marked, "no recipe blocks in README.md"
    for path, block in marked.items():
        file = REPO / path
        assert file.is_file(), f"README.md shows {path}, which does not exist"
        assert block == file.read_text(), (
            f"README.md's block for {path} differs from the file: copy the file into the README"
        )


def test_every_example_is_shown_in_the_readme() -> None:
    files = {
        p.relative_to(REPO).as_posix()
        for p in (REPO / "examples").rglob("*")
        if p.is_file() and p.name not in NOT_SHOWN and "__pycache__" not in p.parts
    }
    assert files == set(_marked()), "examples/ and the README's recipe blocks differ"
