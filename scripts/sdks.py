"""Generate the TypeScript (Node.js) and Go SDKs in `sdk/` from the provider's schema.

    python scripts/sdks.py            # write sdk/nodejs and sdk/go/supaqueue (`make sdks`)
    python scripts/sdks.py --check    # fail, naming the files, if the committed SDKs are stale

Through `pulumi package gen-sdk` (the language hosts' GeneratePackage), from the schema the
plugin's GetSchema serves: `supaqueue/provider/schema.json` with the plugin's version and the
component's argument types (derived from the resources' inputs) added, so
the SDKs ask for the plugin of the same version (`respectSchemaVersion` in the schema). The SDKs
are committed, as Pulumi's own providers commit theirs: a Go SDK is fetched from the repository
itself, and a reviewer sees what a schema change does to each language. The hand-written
`sdk/go.mod` and `sdk/go.sum` are not generated. Python's SDK is the `supaqueue` package itself.
"""

from __future__ import annotations

import argparse
import filecmp
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from supaqueue.provider.schema import served

REPO = Path(__file__).resolve().parent.parent
SCHEMA = REPO / "supaqueue" / "provider" / "schema.json"
SDK = REPO / "sdk"
# What gen-sdk writes per language, relative to its --out folder (and to sdk/).
GENERATED = {"nodejs": "nodejs", "go": "go/supaqueue"}
TIMEOUT_SECONDS = 300


def generate(out: Path, pulumi: str = "pulumi", env: dict[str, str] | None = None) -> None:
    """Every language's SDK under `out` (laid out as sdk/)."""
    with tempfile.TemporaryDirectory(prefix="supaqueue-sdks-") as scratch:
        schema = Path(scratch) / "schema.json"
        schema.write_text(json.dumps(served()))  # as GetSchema serves it
        for language in GENERATED:
            done = subprocess.run(
                [pulumi, "package", "gen-sdk", str(schema), "--language", language,
                 "--out", str(out), "--non-interactive"],
                cwd=scratch, env=env or dict(os.environ), capture_output=True, text=True,
                timeout=TIMEOUT_SECONDS, check=False,
            )  # fmt: skip
            if done.returncode != 0:
                raise SystemExit(f"pulumi package gen-sdk --language {language}:\n{done.stderr}")


def differences(fresh: Path) -> list[str]:
    """Files that differ between a fresh generation and the committed sdk/ (relative paths)."""
    found: list[str] = []

    def walk(cmp: filecmp.dircmp[str], prefix: str) -> None:
        found.extend(f"{prefix}{name}" for name in cmp.left_only + cmp.right_only)
        found.extend(f"{prefix}{name}" for name in cmp.diff_files + cmp.funny_files)
        for name, sub in cmp.subdirs.items():
            walk(sub, f"{prefix}{name}/")

    for folder in GENERATED.values():
        if not (SDK / folder).is_dir():
            found.append(f"{folder}/ (missing)")
            continue
        cmp = filecmp.dircmp(str(fresh / folder), str(SDK / folder), ignore=[])
        walk(cmp, f"{folder}/")
    return sorted(found)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only compare with sdk/")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="supaqueue-sdk-") as tmp:
        fresh = Path(tmp)
        generate(fresh)
        if args.check:
            if stale := differences(fresh):
                raise SystemExit(
                    "sdk/ is not what the schema generates; run `make sdks` and commit:\n  "
                    + "\n  ".join(stale)
                )
            print("sdk/ is up to date with supaqueue/provider/schema.json")
            return
        for folder in GENERATED.values():
            shutil.rmtree(SDK / folder, ignore_errors=True)
            shutil.copytree(fresh / folder, SDK / folder)
        # gen-sdk's .gitattributes marks its Go files generated; keep it beside them.
        if (fresh / "go" / ".gitattributes").exists():
            shutil.copy(fresh / "go" / ".gitattributes", SDK / "go" / ".gitattributes")
        print(f"wrote {', '.join(f'sdk/{f}' for f in GENERATED.values())}")


if __name__ == "__main__":
    main()
