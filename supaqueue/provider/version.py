"""The plugin's version: the installed `supaqueue` distribution's (one authority: its metadata),
as the semantic version Pulumi compares (`0.1.0`; `0.2.0a1` → `0.2.0-alpha.1`)."""

from __future__ import annotations

import functools
import re
from importlib import metadata

DISTRIBUTION = "supaqueue"
_PEP440 = re.compile(
    r"^(?P<release>\d+(?:\.\d+)*)"
    r"(?:(?P<pre>a|b|rc)(?P<pre_n>\d+))?"
    r"(?:\.post(?P<post>\d+))?"
    r"(?:\.dev(?P<dev>\d+))?"
    r"(?:\+(?P<local>[A-Za-z0-9.]+))?$"
)
_PRE = {"a": "alpha", "b": "beta", "rc": "rc"}


def semver(version: str) -> str:
    """A PEP 440 version as semver (pre-releases and dev builds as semver pre-releases, so
    they sort before the release; post releases and local labels as build metadata)."""
    match = _PEP440.match(version.strip())
    if match is None:
        raise ValueError(f"supaqueue's version {version!r} has no semantic-version form")
    release = [*match["release"].split("."), "0", "0"][:3]
    text = ".".join(str(int(part)) for part in release)
    pre = []
    if match["pre"]:
        pre.append(f"{_PRE[match['pre']]}.{match['pre_n']}")
    if match["dev"] is not None:
        pre.append(f"dev.{match['dev']}")
    if pre:
        text += "-" + ".".join(pre)
    build = [part for part in (match["post"] and f"post.{match['post']}", match["local"]) if part]
    return text + ("+" + ".".join(build) if build else "")


@functools.cache
def plugin_version() -> str:
    return semver(metadata.version(DISTRIBUTION))
