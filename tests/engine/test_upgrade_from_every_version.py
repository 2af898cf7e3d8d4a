"""An upgrade from every earlier schema version (issue #24 item 1): what a release of version k
installed (its numbered migrations, no repeatable files), then today's runner, ends equal to the
snapshot. Its own file, so that pytest-xdist's `--dist loadfile` runs it beside the others."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from supaqueue import migrations
from supaqueue.local_stack import schema_snapshot

SNAPSHOT = (migrations.SQL_DIR / schema_snapshot.SNAPSHOT_FILE).read_text()
# Every version a release installed: the migrations pinned in released_migrations.sha256.
RELEASED = Path(__file__).with_name("released_migrations.sha256").read_text().split()[1::2]
VERSIONS = sorted(int(name[:4]) for name in RELEASED)


@pytest.mark.parametrize("version", VERSIONS)
def test_an_upgrade_from_every_earlier_version_equals_the_snapshot(
    pg_dsn: str, version: int
) -> None:
    loaded = migrations.load_migrations()
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        # What a release of that version installed: its migrations, no repeatable files.
        assert migrations.apply(conn, [m for m in loaded if m.version <= version])
        done = migrations.apply(conn, loaded)
        assert [d.label for d in done] == [m.label for m in loaded if m.version > version] + [
            r.label for r in loaded.repeatables
        ]
        assert migrations.apply(conn, loaded) == []
    assert schema_snapshot.dump_schema(pg_dsn) == SNAPSHOT
