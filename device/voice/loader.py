"""A provisioned voice loaded for synthesis: manifest, phonemiser and the two engines."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from jetvox.device.config import Config
from jetvox.device.text.phonemes import Phonemizer
from jetvox.device.voice import manifest as mf
from jetvox.engines import Engine, open_engine

log = logging.getLogger(__name__)


@dataclass
class Voice:
    """Everything synthesis needs from a provisioned voice."""

    name: str
    """Voice name."""
    directory: Path
    """Provisioned directory."""
    manifest: mf.Manifest
    """The provisioning manifest."""
    phonemizer: Phonemizer
    """Text to phoneme ids."""
    acoustic: Engine
    """Phoneme ids to latent frames."""
    vocoder: Engine
    """Latent frames to waveform."""
    precision: str
    """Vocoder precision in use (``fp32`` or ``int8``)."""

    @property
    def sample_rate(self) -> int:
        return self.manifest.sample_rate

    @property
    def hop_length(self) -> int:
        return self.manifest.hop_length

    @property
    def gain(self) -> float:
        return self.manifest.gain

    def close(self) -> None:
        self.acoustic.close()
        self.vocoder.close()

    def __enter__(self) -> "Voice":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _model_paths(manifest: mf.Manifest, directory: Path, role: str) -> tuple[Path, Path | None]:
    entry = manifest.model(role)
    return directory / entry.file, (directory / entry.trt.file if entry.trt else None)


def load_voice(cfg: Config, precision: str | None = None, voice_name: str | None = None) -> Voice:
    """Open the provisioned voice named in ``cfg`` (run `jetvox provision` first).

    Args:
        cfg: configuration (state dir, voice, engine backend).
        precision: ``fp32`` or ``int8`` to force the vocoder's precision; None follows
            ``cfg.engine.precision`` (``auto`` = what the provisioning quality gate chose).
        voice_name: provisioned voice to open instead of ``cfg.voice.name``.
    """
    name = voice_name or cfg.voice.name
    directory = mf.voice_dir(cfg.state_dir, name)
    manifest = mf.read_manifest(directory)
    want = precision or cfg.engine.precision
    if want == "auto":
        want = manifest.precision.vocoder
    roles = {"acoustic": "acoustic", "vocoder": "vocoder"}
    if want == "int8":
        if "vocoder_int8" not in manifest.models:
            raise mf.ManifestError(f"voice {name} has no INT8 vocoder; provisioning did not build one")
        roles["vocoder"] = "vocoder_int8"  # also when forced against the gate's choice
        if "acoustic_int8" in manifest.models and manifest.precision.acoustic == "int8":
            roles["acoustic"] = "acoustic_int8"
    elif want != "fp32":
        raise ValueError(f"precision must be auto, fp32 or int8, got {want!r}")
    engines = {}
    for role, key in roles.items():
        onnx_path, engine_path = _model_paths(manifest, directory, key)
        engines[role] = open_engine(
            onnx_path,
            engine_path=engine_path,
            backend=cfg.engine.backend,
            providers=cfg.engine.providers or None,
            threads=cfg.engine.threads,
        )
    phonemizer = Phonemizer(manifest.espeak_voice, manifest.phoneme_id_map)
    log.info(
        "voice %s loaded (%s vocoder, %s / %s)",
        name,
        want,
        engines["acoustic"].backend,
        engines["vocoder"].backend,
    )
    return Voice(
        name=name,
        directory=directory,
        manifest=manifest,
        phonemizer=phonemizer,
        acoustic=engines["acoustic"],
        vocoder=engines["vocoder"],
        precision=want,
    )
