"""The provisioning manifest: what was built for a voice, from what, and with which measured figures."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from provisioning.steps import atomic_write_text

MANIFEST_NAME = "manifest.json"
FORMAT = 1


class ManifestError(ValueError):
    """A voice has not been provisioned, or its manifest is unreadable."""


def voice_dir(state_dir: Path, voice: str) -> Path:
    """Directory holding one provisioned voice."""
    return state_dir / "voices" / voice


def read_manifest(directory: Path) -> dict[str, Any]:
    """The manifest in ``directory``; ManifestError if missing or broken."""
    path = directory / MANIFEST_NAME
    if not path.is_file():
        raise ManifestError(f"no provisioned voice in {directory}: run `jetvox provision` first")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ManifestError(f"manifest {path} is unreadable ({exc}); run `jetvox provision` again") from None
    if data.get("format") != FORMAT:
        raise ManifestError(f"manifest {path} has format {data.get('format')!r}, expected {FORMAT}; re-provision")
    return data


def read_manifest_or_empty(directory: Path) -> dict[str, Any]:
    """The manifest, or {} when there is none yet (or it is from another format)."""
    try:
        return read_manifest(directory)
    except ManifestError:
        return {}


def write_manifest(directory: Path, data: dict[str, Any]) -> Path:
    """Write the manifest atomically."""
    path = directory / MANIFEST_NAME
    atomic_write_text(path, json.dumps({"format": FORMAT, **data}, indent=2, sort_keys=True, ensure_ascii=False))
    return path
