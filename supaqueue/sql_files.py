"""Named SQL queries kept in .sql files: each block starts with a `-- name: <name>` line.

One loader for every such file (the providers' `supaqueue/providers/sql/`, the console's
`supaqueue/console/sql/`, the local stack's `supaqueue/local_stack/sql/`), read through
`importlib.resources` so an installed package finds them too.
"""

from __future__ import annotations

import functools
import re
from importlib import resources

_NAME = re.compile(r"^-- name: ([a-z_]+)\s*$", re.MULTILINE)


@functools.cache
def named_queries(package: str, file_name: str) -> dict[str, str]:
    """{name: statement} of `<package>/sql/<file_name>`; the text before the first name is not a
    query (a file comment)."""
    text = resources.files(package).joinpath("sql", file_name).read_text()
    parts = _NAME.split(text)
    # parts = [preamble, name1, body1, name2, body2, ...]
    return {name: body.strip() for name, body in zip(parts[1::2], parts[2::2], strict=True)}


def queries(file_name: str) -> dict[str, str]:
    """{name: statement} of `supaqueue/providers/sql/<file_name>`."""
    return named_queries("supaqueue.providers", file_name)
