"""One authority per version: pyproject.toml holds the ranges the published package asks for,
constraints.txt the exact versions this repository installs (toolchain/bootstrap.sh), and every
pin lies inside its range."""

from __future__ import annotations

import tomllib

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from harness.toolchain import REPO

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def _pins() -> dict[str, Version]:
    pins: dict[str, Version] = {}
    for line in (REPO / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version, f"constraints.txt: {line!r} is not an exact pin (name==version)"
            pins[canonicalize_name(name)] = Version(version)
    return pins


def _requirements() -> list[Requirement]:
    listed = list(PYPROJECT["dependencies"])
    for extra in PYPROJECT["optional-dependencies"].values():
        listed += extra
    return [Requirement(text) for text in listed]


def test_the_package_asks_for_ranges_never_exact_versions() -> None:
    for requirement in _requirements():
        assert not any(spec.operator in ("==", "===") for spec in requirement.specifier), (
            f"pyproject.toml: {requirement} pins a version; pins belong in constraints.txt"
        )
    for requirement in (Requirement(text) for text in PYPROJECT["dependencies"]):
        assert requirement.specifier, f"pyproject.toml: {requirement} has no range"


def test_every_requirement_is_pinned_inside_its_range() -> None:
    pins = _pins()
    for requirement in _requirements():
        name = canonicalize_name(requirement.name)
        if name == "supaqueue":  # the dev extra's own extras
            continue
        assert name in pins, f"constraints.txt has no pin for {requirement.name}"
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"constraints.txt pins {name}=={pins[name]}, outside pyproject.toml's {requirement}"
        )


def test_the_repository_installs_with_the_pins() -> None:
    bootstrap = (REPO / "toolchain" / "bootstrap.sh").read_text()
    assert '-c "$root/constraints.txt"' in bootstrap
    plugins = (REPO / "toolchain" / "install-offline-plugins.sh").read_text()
    assert "constraints.txt" in plugins and "pyproject.toml" not in plugins
