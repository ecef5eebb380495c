"""Cached provisioning steps: keyed by input hashes and versions, written atomically, skipped when unchanged."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any, Callable, Mapping

from jetvox.engines.errors import JetvoxError

log = logging.getLogger(__name__)


class ProvisionError(JetvoxError, RuntimeError):
    """Provisioning cannot go on: the message says what was expected and what came."""

_HASH_CACHE: dict[tuple[str, int, int], str] = {}


def sha256_file(path: Path) -> str:
    """SHA-256 of a file, memoised on (path, size, mtime)."""
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _HASH_CACHE:
        h = hashlib.sha256()
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        _HASH_CACHE[key] = h.hexdigest()
    return _HASH_CACHE[key]


def hash_key(data: Mapping[str, Any]) -> str:
    """Stable hash of a JSON-serialisable mapping."""
    blob = json.dumps(data, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()


def clean_partials(directory: Path) -> int:
    """Delete temporary files left by an interrupted run; returns how many."""
    n = 0
    if directory.is_dir():
        for p in directory.rglob(".tmp-*"):
            p.unlink(missing_ok=True)
            n += 1
    return n


class StepRunner:
    """Runs named steps, skipping those whose key and outputs match the previous record."""

    def __init__(self, previous: Mapping[str, Any], progress: Callable[[str], None]) -> None:
        self.previous = dict(previous)
        self.records: dict[str, Any] = {}
        self.progress = progress
        self.ran: list[str] = []

    def run(
        self,
        name: str,
        key: Mapping[str, Any],
        outputs: list[Path],
        build: Callable[[], Mapping[str, Any] | None],
    ) -> dict[str, Any]:
        """Run ``build`` unless step ``name`` already produced ``outputs`` for this ``key``.

        Returns the step's record (``key``, output hashes and what ``build`` returned).
        """
        digest = hash_key(key)
        old = self.previous.get(name)
        if old and old.get("key") == digest and self._outputs_intact(old, outputs):
            self.progress(f"{name}: up to date")
            self.records[name] = old
            return dict(old)
        self.progress(f"{name}: running")
        info = dict(build() or {})
        record = {
            "key": digest,
            "outputs": {p.name: sha256_file(p) for p in outputs},
            "info": info,
        }
        self.records[name] = record
        self.ran.append(name)
        self.progress(f"{name}: done")
        return record

    @staticmethod
    def _outputs_intact(old: Mapping[str, Any], outputs: list[Path]) -> bool:
        hashes = old.get("outputs", {})
        for p in outputs:
            if not p.is_file() or hashes.get(p.name) != sha256_file(p):
                return False
        return True
