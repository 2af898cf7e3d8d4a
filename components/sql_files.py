"""Named SQL queries kept in .sql files: each block starts with a `-- name: <name>` line."""

from __future__ import annotations

import functools
import re
from pathlib import Path

SQL_DIR = Path(__file__).resolve().parent / "providers" / "sql"
_NAME = re.compile(r"^-- name: ([a-z_]+)\s*$", re.MULTILINE)


@functools.cache
def queries(file_name: str) -> dict[str, str]:
    """{name: statement} of `components/providers/sql/<file_name>`."""
    text = (SQL_DIR / file_name).read_text()
    parts = _NAME.split(text)
    # parts = [preamble, name1, body1, name2, body2, ...]
    return {name: body.strip() for name, body in zip(parts[1::2], parts[2::2], strict=True)}
