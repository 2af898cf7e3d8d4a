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

from local_stack.state import write_private

RECORD_FILE = "function.json"
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

    def _record_path(self, slug: str) -> Path:
        return self.root / slug / RECORD_FILE

    def get(self, slug: str) -> FunctionRecord | None:
        if not SLUG_PATTERN.match(slug):
            return None
        path = self._record_path(slug)
        try:
            return FunctionRecord(**json.loads(path.read_text()))
        except FileNotFoundError:
            return None

    def all(self) -> list[FunctionRecord]:
        if not self.root.exists():
            return []
        records = [self.get(p.name) for p in sorted(self.root.iterdir()) if p.is_dir()]
        return [r for r in records if r is not None]

    def source_path(self, record: FunctionRecord) -> Path:
        return self.root / record.slug / record.source_dir

    def deploy(
        self, slug: str, metadata: dict[str, Any], files: dict[str, bytes]
    ) -> FunctionRecord:
        """Write a new version and make it current; returns the record (version bumped)."""
        if not SLUG_PATTERN.match(slug):
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
        version = previous.version + 1 if previous else 1
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
        write_private(self._record_path(slug), json.dumps(asdict(record), indent=2) + "\n")
        return record

    def delete(self, slug: str) -> FunctionRecord | None:
        """Forget the function; its files go once the runtime has stopped serving them."""
        record = self.get(slug)
        if record is not None:
            self._record_path(slug).unlink()
        return record

    def prune(self, slug: str, keep: set[str]) -> None:
        """Remove version folders no process serves any more (all of them once deleted)."""
        folder = self.root / slug
        if not folder.exists():
            return
        current = self.get(slug)
        keep = keep | ({current.source_dir} if current else set())
        for child in folder.iterdir():
            if child.is_dir() and child.name not in keep:
                shutil.rmtree(child, ignore_errors=True)
        if current is None and not any(folder.iterdir()):
            folder.rmdir()
