"""Install the `net` (pg_net) and `vault` stand-ins where the real extensions are not available."""

from __future__ import annotations

from importlib import resources

import psycopg

# Serialises concurrent installs into the same database (two bootstraps racing).
_LOCK_KEY = 0x5A9E_0E7E

# real extension -> (schema it provides, stand-in SQL file)
STANDINS: dict[str, tuple[str, str]] = {
    "pg_net": ("net", "pg_net.sql"),
    "supabase_vault": ("vault", "vault.sql"),
}


def standin_sql(filename: str) -> str:
    return resources.files("supaqueue.local_stack").joinpath("sql", filename).read_text()


def install_standins(conn_or_dsn: psycopg.Connection | str) -> dict[str, str]:
    """Idempotent. Returns {extension: "extension" | "stand-in"}: what provides each schema."""
    if isinstance(conn_or_dsn, str):
        with psycopg.connect(conn_or_dsn, autocommit=True) as conn:
            return _install(conn)
    return _install(conn_or_dsn)


def _install(conn: psycopg.Connection) -> dict[str, str]:
    done: dict[str, str] = {}
    with conn.transaction():
        conn.execute("select pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
        conn.execute("create schema if not exists extensions")
        # The vault stand-in calls extensions.pgp_sym_encrypt; on Supabase pgcrypto lives there too.
        conn.execute("create extension if not exists pgcrypto with schema extensions")
        schema = conn.execute(
            "select n.nspname from pg_extension e join pg_namespace n on n.oid = e.extnamespace"
            " where e.extname = 'pgcrypto'"
        ).fetchone()
        if schema is None or schema[0] != "extensions":
            raise RuntimeError(
                f"pgcrypto is installed in schema {schema[0] if schema else '?'}; "
                "the vault stand-in needs it in schema `extensions` (as on Supabase)"
            )
        for extension, (_schema, filename) in STANDINS.items():
            if _available(conn, extension):
                conn.execute(f'create extension if not exists "{extension}"')
                done[extension] = "extension"
            else:
                conn.execute(standin_sql(filename))  # type: ignore[arg-type]
                done[extension] = "stand-in"
    return done


def _available(conn: psycopg.Connection, extension: str) -> bool:
    row = conn.execute(
        "select 1 from pg_available_extensions where name = %s", (extension,)
    ).fetchone()
    return row is not None
