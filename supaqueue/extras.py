"""The distribution's optional parts (pyproject.toml's extras) and the modules each brings, so a
command that needs one says which `pip install` is missing instead of failing on an import."""

from __future__ import annotations

from importlib.util import find_spec

# extra -> the top-level modules it installs (its pyproject.toml entries, by import name)
EXTRA_MODULES = {
    "console": ("aiohttp", "jinja2", "prometheus_client", "cryptography"),
    "local-stack": ("aiohttp", "uvloop", "jwt"),
}


def absent(*modules: str) -> list[str]:
    return [module for module in modules if find_spec(module) is None]


def missing_extra(extra: str, what: str) -> str | None:
    """None when the extra is installed; else one line naming what is missing and the fix."""
    modules = absent(*EXTRA_MODULES[extra])
    if not modules:
        return None
    return (
        f"{what} needs supaqueue's {extra!r} extra ({', '.join(modules)} not installed): "
        f"pip install 'supaqueue[{extra}]'"
    )
