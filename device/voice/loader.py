"""A provisioned voice loaded for synthesis: manifest, phonemiser and the two engines."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from jetvox.device.config import Config
from jetvox.device.text.phonemes import Phonemizer
from jetvox.device.voice import manifest as mf
from jetvox.engines import Engine, open_engine
from jetvox.engines.staged import StagedAcoustic

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


def _open(cfg: Config, directory: Path, entry: mf.ModelEntry, cpu_only: bool = False) -> Engine:
    return open_engine(
        directory / entry.file,
        engine_path=None if cpu_only or entry.trt is None else directory / entry.trt.file,
        backend="onnxruntime" if cpu_only else cfg.engine.backend,
        providers=["CPUExecutionProvider"] if cpu_only else cfg.engine.providers or None,
        threads=cfg.engine.threads,
        spin=cfg.engine.spin,
    )


def _open_acoustic(cfg: Config, directory: Path, manifest: mf.Manifest, key: str) -> Engine:
    """The acoustic model as its stages where provisioning cut it (always on a current manifest), else whole."""
    staged = manifest.staged(key)
    if staged is None:
        return _open(cfg, directory, manifest.model(key))
    opened: list[Engine] = []
    try:
        for stage in mf.STAGES:
            # The regulator's shapes follow the durations' values: ONNX Runtime on the CPU runs it on every device.
            opened.append(_open(cfg, directory, staged[stage], cpu_only=stage == "regulator"))
    except BaseException:
        for engine in opened:  # a stage that cannot open closes those that did
            engine.close()
        raise
    encoder, regulator, decoder = opened
    return StagedAcoustic(encoder, regulator, decoder, max_frames=cfg.engine.max_frames)


def model_entries(manifest: mf.Manifest, precision: str, backend: str = "auto") -> dict[str, str]:
    """The manifest entry to load for the acoustic model and the vocoder.

    ``int8`` (or ``auto`` where the INT8 gate chose it) loads the ``*_int8`` entries. Under ``auto``,
    where TensorRT may run, a model whose INT8 entry has no engine but whose FP32 entry has one (a GPU
    without fast INT8 gets an FP16 engine built from the FP32 graph) loads the FP32 entry and its engine.

    Args:
        manifest: the provisioned voice.
        precision: ``auto``, ``fp32`` or ``int8``.
        backend: ``engine.backend``; ``onnxruntime`` never looks at engines.
    """
    if precision not in ("auto", "fp32", "int8"):
        raise ValueError(f"precision must be auto, fp32 or int8, got {precision!r}")
    if precision == "int8" and "vocoder_int8" not in manifest.models:
        raise mf.ManifestError(f"voice {manifest.voice} has no INT8 vocoder; provisioning did not build one")
    entries = {}
    for role in ("acoustic", "vocoder"):
        int8 = f"{role}_int8"
        chosen = getattr(manifest.precision, role) == "int8" and int8 in manifest.models
        if precision == "int8" and role == "vocoder":  # forced, also against the gate's choice
            chosen = True
        elif precision == "fp32":
            chosen = False
        if chosen and precision == "auto" and backend != "onnxruntime":
            if not manifest.has_engine(int8) and manifest.has_engine(role):
                chosen = False  # the engine the device built is the FP32 entry's (FP16 where INT8 is slow)
        entries[role] = int8 if chosen else role
    return entries


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
    roles = model_entries(manifest, want, cfg.engine.backend)
    want = "int8" if roles["vocoder"].endswith("_int8") else "fp32"
    engines = {
        "acoustic": _open_acoustic(cfg, directory, manifest, roles["acoustic"]),
        "vocoder": _open(cfg, directory, manifest.model(roles["vocoder"])),
    }
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
