"""Deployed Edge Functions on disk: `<state>/functions/<slug>/function.json` plus one folder per
version holding the uploaded files. Survives down/up; the runtime serves what this says.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from supaqueue.local_stack.state import write_private

RECORD_FILE = "function.json"
PENDING_FILE = "pending.json"  # bundle-only uploads, live only after a bulk update
SLUG_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")


class DeployError(ValueError):
    """The upload cannot be deployed; the message is safe to return to the client (400)."""


@dataclass
class FunctionRecord:
    id: str
    slug: str
    name: str
    version: int
    created_at: int  # epoch milliseconds, as the real API returns them
    updated_at: int
    verify_jwt: bool
    entrypoint_path: str
    import_map_path: str | None
    ezbr_sha256: str
    source_dir: str  # folder under functions/<slug>/ holding this version's files
    static_patterns: list[str] = field(default_factory=list)
    status: str = "ACTIVE"

    def api_view(self) -> dict[str, Any]:
        """The FunctionResponse shape."""
        view: dict[str, Any] = {
            "id": self.id,
            "slug": self.slug,
            "name": self.name,
            "status": self.status,
            "version": self.version,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "verify_jwt": self.verify_jwt,
            "import_map": self.import_map_path is not None,
            "entrypoint_path": self.entrypoint_path,
            "ezbr_sha256": self.ezbr_sha256,
        }
        if self.import_map_path is not None:
            view["import_map_path"] = self.import_map_path
        return view


def normalize_path(raw: str, what: str) -> str:
    """A safe relative POSIX path for an uploaded file (file:// URLs and leading / accepted)."""
    text = raw.removeprefix("file://").replace("\\", "/").lstrip("/")
    parts = PurePosixPath(text).parts
    if not text or any(p in ("..", ".") for p in parts) or "\x00" in text:
        raise DeployError(f"{what} {raw!r} is not a valid relative file path")
    return str(PurePosixPath(*parts))


def bundle_digest(files: dict[str, bytes]) -> str:
    digest = hashlib.sha256()
    for name in sorted(files):
        data = files[name]
        digest.update(f"{name}\0{len(data)}\0".encode())
        digest.update(data)
    return digest.hexdigest()


class FunctionStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        # The gateway looks a function up on every request: parse its record only when the file
        # changed (records are replaced by rename, so a new version is a new inode).
        self._parsed: dict[str, tuple[tuple[int, int, int], dict[str, Any]]] = {}

    def _record_path(self, slug: str) -> Path:
        return self.root / slug / RECORD_FILE

    def get(self, slug: str) -> FunctionRecord | None:
        if not SLUG_PATTERN.fullmatch(slug):
            return None
        path = self._record_path(slug)
        try:
            st = path.stat()
            key = (st.st_ino, st.st_mtime_ns, st.st_size)
            cached = self._parsed.get(slug)
            if cached is None or cached[0] != key:
                cached = (key, json.loads(path.read_text()))
                self._parsed[slug] = cached
        except FileNotFoundError:
            self._parsed.pop(slug, None)
            return None
        data = cached[1]
        # A fresh record each time: callers may change theirs (activate does).
        return FunctionRecord(**{**data, "static_patterns": list(data.get("static_patterns", []))})

    def all(self) -> list[FunctionRecord]:
        if not self.root.exists():
            return []
        records = [self.get(p.name) for p in sorted(self.root.iterdir()) if p.is_dir()]
        return [r for r in records if r is not None]

    def source_path(self, record: FunctionRecord) -> Path:
        return self.root / record.slug / record.source_dir

    def _pending_path(self, slug: str) -> Path:
        return self.root / slug / PENDING_FILE

    def pending(self, slug: str) -> dict[int, FunctionRecord]:
        """Bundle-only uploads of `slug` by version (prepared, not live)."""
        if not SLUG_PATTERN.fullmatch(slug):
            return {}
        try:
            data = json.loads(self._pending_path(slug).read_text())
        except FileNotFoundError:
            return {}
        return {int(v): FunctionRecord(**r) for v, r in data.items()}

    def _save_pending(self, slug: str, records: dict[int, FunctionRecord]) -> None:
        path = self._pending_path(slug)
        if records:
            data = {str(v): asdict(r) for v, r in records.items()}
            write_private(path, json.dumps(data, indent=2) + "\n")
        else:
            path.unlink(missing_ok=True)

    def deploy(
        self,
        slug: str,
        metadata: dict[str, Any],
        files: dict[str, bytes],
        bundle_only: bool = False,
    ) -> FunctionRecord:
        """Write a new version and make it current; returns the record (version bumped).
        `bundle_only`: write it but keep it pending until `activate` (the bulk update)."""
        if not SLUG_PATTERN.fullmatch(slug):
            raise DeployError(f"slug {slug!r} must match {SLUG_PATTERN.pattern}")
        if not files:
            raise DeployError("no file parts: upload at least the entrypoint")
        entrypoint = normalize_path(str(metadata["entrypoint_path"]), "entrypoint_path")
        if entrypoint not in files:
            raise DeployError(f"entrypoint_path {entrypoint!r} is not among the uploaded files")
        import_map: str | None = None
        if metadata.get("import_map_path"):
            import_map = normalize_path(str(metadata["import_map_path"]), "import_map_path")
            if import_map not in files:
                raise DeployError(f"import_map_path {import_map!r} is not among the uploaded files")

        previous = self.get(slug)
        now = int(time.time() * 1000)
        pending = self.pending(slug)
        version = max([previous.version if previous else 0, *pending]) + 1
        source_dir = f"v{version}-{uuid.uuid4().hex[:8]}"
        target = self.root / slug / source_dir
        for name, data in files.items():
            path = target / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        record = FunctionRecord(
            id=previous.id if previous else str(uuid.uuid4()),
            slug=slug,
            name=str(metadata.get("name") or (previous.name if previous else slug)),
            version=version,
            created_at=previous.created_at if previous else now,
            updated_at=now,
            verify_jwt=bool(metadata.get("verify_jwt", True)),
            entrypoint_path=entrypoint,
            import_map_path=import_map,
            ezbr_sha256=bundle_digest(files),
            source_dir=source_dir,
            static_patterns=[str(p) for p in metadata.get("static_patterns") or []],
        )
        if bundle_only:
            self._save_pending(slug, {**pending, version: record})
        else:
            write_private(self._record_path(slug), json.dumps(asdict(record), indent=2) + "\n")
        return record

    def activate(self, slug: str, version: int, changes: dict[str, Any]) -> FunctionRecord:
        """Make a pending upload (or, for the live version, its settings) current: what a bulk
        update does for one function. KeyError when neither exists."""
        pending = self.pending(slug)
        current = self.get(slug)
        if version in pending:
            record = pending.pop(version)
        elif current is not None and current.version == version:
            record = current
        else:
            raise KeyError(f"function {slug} version {version} was not uploaded")
        for key in ("name", "verify_jwt"):
            if key in changes:
                setattr(record, key, changes[key])
        if changes.get("entrypoint_path"):
            record.entrypoint_path = normalize_path(changes["entrypoint_path"], "entrypoint_path")
        record.status = "ACTIVE"
        record.updated_at = int(time.time() * 1000)
        if current is not None:
            record.id, record.created_at = current.id, current.created_at
        write_private(self._record_path(slug), json.dumps(asdict(record), indent=2) + "\n")
        # Older pending uploads can never go live now.
        self._save_pending(slug, {v: r for v, r in pending.items() if v > record.version})
        return record

    def source(self, record: FunctionRecord) -> dict[str, bytes]:
        """The files of `record`'s version by relative path."""
        base = self.source_path(record)
        return {
            str(path.relative_to(base)): path.read_bytes()
            for path in sorted(base.rglob("*"))
            if path.is_file()
        }

    def delete(self, slug: str) -> FunctionRecord | None:
        """Forget the function; its files go once the runtime has stopped serving them."""
        record = self.get(slug)
        if record is not None:
            self._record_path(slug).unlink()
            self._pending_path(slug).unlink(missing_ok=True)  # uploads that never went live
        return record

    def prune(self, slug: str, keep: set[str]) -> None:
        """Remove version folders no process serves any more (all of them once deleted)."""
        folder = self.root / slug
        if not folder.exists():
            return
        current = self.get(slug)
        keep = keep | ({current.source_dir} if current else set())
        keep |= {r.source_dir for r in self.pending(slug).values()}
        for child in folder.iterdir():
            if child.is_dir() and child.name not in keep:
                shutil.rmtree(child, ignore_errors=True)
        if current is None and not any(folder.iterdir()):
            folder.rmdir()
