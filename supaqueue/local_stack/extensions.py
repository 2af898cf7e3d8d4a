"""Which of Supabase's extensions the machine has, and what the local stack does about it.

Where the real `pg_net` or `supabase_vault` is installed (Supabase's Postgres packages), the stack
preloads and uses it; elsewhere it installs a stand-in (local_stack/standins.py). The stand-in
pg_net sender runs only when `net` is the stand-in: beside the real worker both would send.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Provider = Literal["extension", "stand-in"]

# Supabase extensions the stack can use for real, in preload order, with the schema each makes.
REAL: dict[str, str] = {"pg_net": "net", "supabase_vault": "vault"}
ALWAYS_PRELOADED = ("pg_cron",)


@dataclass(frozen=True)
class ExtensionPlan:
    """What the cluster preloads and which part provides `net` and `vault`."""

    installed: frozenset[str] = frozenset()

    def provider(self, extension: str) -> Provider:
        return "extension" if extension in self.installed else "stand-in"

    @property
    def preload(self) -> tuple[str, ...]:
        return ALWAYS_PRELOADED + tuple(name for name in REAL if name in self.installed)

    @property
    def standin_sender(self) -> bool:
        """Run our pg_net sender? Never beside the real extension's worker."""
        return self.provider("pg_net") == "stand-in"

    def settings(self, getkey_script: Path) -> dict[str, str]:
        """postgresql.conf settings (unquoted values) this plan needs."""
        found = {"shared_preload_libraries": ",".join(self.preload)}
        if "supabase_vault" in self.installed:
            # supabase_vault asks this program for its root key (64 hex characters).
            found["vault.getkey_script"] = str(getkey_script)
        return found

    def describe(self) -> dict[str, Provider]:
        return {schema: self.provider(name) for name, schema in REAL.items()}


def installed_extensions(sharedir: Path, libdir: Path) -> frozenset[str]:
    """The REAL extensions whose control file and library are both installed."""
    return frozenset(
        name
        for name in REAL
        if (sharedir / "extension" / f"{name}.control").is_file()
        and (libdir / f"{name}.so").is_file()
    )


def server_dirs(pg_bin: Path) -> tuple[Path, Path]:
    """(sharedir, pkglibdir) of the server in `pg_bin`: from its pg_config, else Debian's layout."""
    pg_config = pg_bin / "pg_config"
    if pg_config.exists():
        done = subprocess.run(
            [str(pg_config), "--sharedir", "--pkglibdir"],
            capture_output=True,
            text=True,
            check=False,
            timeout=30,
        )
        lines = done.stdout.split()
        if done.returncode == 0 and len(lines) == 2:
            return Path(lines[0]), Path(lines[1])
    major = pg_bin.parent.name  # /usr/lib/postgresql/<major>/bin
    return Path("/usr/share/postgresql") / major, pg_bin.parent / "lib"


def detect(pg_bin: Path) -> ExtensionPlan:
    return ExtensionPlan(installed_extensions(*server_dirs(pg_bin)))
