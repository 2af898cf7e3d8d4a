"""Edge Function secrets of the local project (`<state>/secrets.json`, 0600)."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path

from supaqueue.local_stack.state import write_private


class SecretStore:
    def __init__(self, path: Path) -> None:
        self.path = path

    def _read(self) -> dict[str, dict[str, str]]:
        try:
            data: dict[str, dict[str, str]] = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        return data

    def values(self) -> dict[str, str]:
        return {name: entry["value"] for name, entry in self._read().items()}

    def listing(self) -> list[dict[str, str]]:
        """The SecretResponse shape: values as sha256 digests, as the real API returns them."""
        return [
            {
                "name": name,
                "value": hashlib.sha256(entry["value"].encode()).hexdigest(),
                "updated_at": entry["updated_at"],
            }
            for name, entry in sorted(self._read().items())
        ]

    def upsert(self, pairs: dict[str, str]) -> bool:
        """Set secrets; True when any value actually changed."""
        data = self._read()
        now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        changed = False
        for name, value in pairs.items():
            if data.get(name, {}).get("value") != value:
                data[name] = {"value": value, "updated_at": now}
                changed = True
        if changed:
            write_private(self.path, json.dumps(data, indent=2) + "\n")
        return changed

    def delete(self, names: list[str]) -> bool:
        data = self._read()
        removed = [n for n in names if data.pop(n, None) is not None]
        if removed:
            write_private(self.path, json.dumps(data, indent=2) + "\n")
        return bool(removed)
