"""The voices a daemon speaks with: its configured one always loaded, a few others on demand (least recent out)."""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from jetvox.device.config import Config
from jetvox.device.daemon.cache import voice_identity
from jetvox.device.synthesis.synthesizer import SynthesisError, Synthesizer, synthesizer_for
from jetvox.device.voice import manifest as mf
from jetvox.device.voice.loader import load_voice
from jetvox.engines.errors import JetvoxError

log = logging.getLogger(__name__)



@dataclass
class LoadedVoice:
    """A voice ready to speak: its synthesizer and the identity its cached audio is keyed by."""

    synth: Synthesizer
    """The synthesizer (used by the synthesis thread only)."""
    identity: dict[str, Any]
    """Name, precision, gain and model hashes (``cache.voice_identity``)."""

    @classmethod
    def of(cls, synth: Synthesizer) -> "LoadedVoice":
        voice = synth.voice
        hashes = {role: entry.sha256 for role, entry in voice.manifest.models.items()}
        return cls(synth, voice_identity(voice.name, hashes, voice.gain, voice.precision))

    def close(self) -> None:
        self.synth.close()
        self.synth.voice.close()


def provisioned(cfg: Config, name: str) -> str | None:
    """Why ``name`` (a well-formed name, ``messages.VOICE_NAME``) cannot be a message's voice here, or None."""
    if not (mf.voice_dir(cfg.state_dir, name) / mf.MANIFEST_NAME).is_file():
        here = sorted(p.parent.name for p in (cfg.state_dir / "voices").glob(f"*/{mf.MANIFEST_NAME}"))
        return f"{name} is not provisioned on this device (provisioned: {', '.join(here) or 'none'})"
    return None


class VoicePool:
    """The configured voice, always loaded, and at most ``synthesis.max_voices - 1`` others, least recent out.

    Used from the synthesis thread only (it owns the engines, and on a Jetson the CUDA context).
    """

    def __init__(self, cfg: Config, default: Synthesizer) -> None:
        self._cfg = cfg
        self.default = LoadedVoice.of(default)
        self._others: OrderedDict[str, LoadedVoice] = OrderedDict()

    def get(self, name: str | None) -> LoadedVoice:
        """The loaded voice ``name`` (None: the configured one); loads it, evicting the least recent, if needed."""
        if name is None or name == self.default.synth.voice.name:
            return self.default
        if name in self._others:
            self._others.move_to_end(name)
            return self._others[name]
        while self._others and len(self._others) >= self._cfg.synthesis.max_voices - 1:
            old, loaded = self._others.popitem(last=False)
            log.info("unloading voice %s (synthesis.max_voices is %d)", old, self._cfg.synthesis.max_voices)
            loaded.close()
        try:
            voice = load_voice(self._cfg, voice_name=name)
        except JetvoxError as exc:
            raise SynthesisError(f"voice {name} cannot be loaded: {exc}") from None
        loaded = LoadedVoice.of(synthesizer_for(voice, self._cfg))
        if self._cfg.synthesis.max_voices > 1:
            self._others[name] = loaded
        log.info("voice %s loaded for a message", name)
        return loaded

    def release(self, loaded: LoadedVoice) -> None:
        """Done with a voice ``get`` returned: close it if the pool does not keep it (``max_voices: 1``)."""
        if loaded is not self.default and loaded not in self._others.values():
            loaded.close()

    def reload_lexicons(self) -> None:
        """Reload the pronunciation lexicon before the next message (SIGHUP; safe from a signal handler)."""
        for loaded in (self.default, *self._others.values()):
            loaded.synth.lexicon.reload()

    @property
    def loaded(self) -> list[str]:
        """Names of the voices loaded now, the configured one first."""
        return [self.default.synth.voice.name, *self._others]

    def close(self) -> None:
        for loaded in self._others.values():
            loaded.close()
        self._others.clear()


def provisioned_voices(cfg: Config) -> list[tuple[str, str, bool]]:
    """(name, espeak-ng voice, distilled) of every voice provisioned on this device, by name."""
    out = []
    for path in sorted((cfg.state_dir / "voices").glob(f"*/{mf.MANIFEST_NAME}")):
        manifest = mf.read_manifest_or_none(path.parent)
        if manifest is not None:
            out.append((manifest.voice, manifest.espeak_voice, manifest.student))
    return out
