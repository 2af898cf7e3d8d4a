"""Repeatable migrations (issue #24 item 1): the released migrations stay byte for byte."""

from __future__ import annotations

from pathlib import Path

from supaqueue import migrations

# The migrations earlier releases applied, frozen as history: every installation recorded these
# checksums, and an applied migration whose file changed is an error. This file is their
# fixture: the shipped files must stay byte for byte these.
RELEASED = Path(__file__).with_name("released_migrations.sha256")


def _released() -> dict[str, str]:
    pairs = (line.split() for line in RELEASED.read_text().splitlines() if line.strip())
    return {name: checksum for checksum, name in pairs}


def test_released_migrations_are_kept_byte_for_byte() -> None:
    loaded = {m.path.name: m.checksum for m in migrations.load_migrations()}
    released = _released()
    assert len(released) == 25
    changed = sorted(name for name, checksum in released.items() if loaded.get(name) != checksum)
    assert changed == [], f"released migrations are history, never edited: {changed}"
