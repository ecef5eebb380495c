"""The provisioning manifest, typed: what was built for a voice, from what, with which measured figures.

Provisioning writes it and the runtime reads it, both through this module only. The JSON keeps the
layout of schema 1 (flat model entries), so manifests written before it was typed still load.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from jetvox.device.storage import atomic_write_text
from jetvox.engines.base import TensorSpec
from jetvox.engines.errors import JetvoxError

MANIFEST_NAME = "manifest.json"
SCHEMA_VERSION = 1
"""Written as ``"format"``; bump it when a field changes meaning (old manifests then ask to re-provision)."""

STAGES = ("encoder", "regulator", "decoder")
"""The static-shape stages an acoustic model runs as (see ``provisioning/stages.py``)."""


def stage_roles(entry: str) -> dict[str, str]:
    """{stage: model entry} of an acoustic entry's stages, e.g. ``acoustic_int8_decoder``."""
    return {stage: f"{entry}_{stage}" for stage in STAGES}


class ManifestError(JetvoxError, ValueError):
    """A voice has not been provisioned, or its manifest is unreadable."""


def _spec_from_json(data: Mapping[str, Any]) -> TensorSpec:
    return TensorSpec(name=str(data["name"]), dtype=str(data["dtype"]), shape=tuple(data["shape"]))


def _spec_to_json(spec: TensorSpec) -> dict[str, Any]:
    return {"name": spec.name, "dtype": spec.dtype, "shape": list(spec.shape)}


@dataclass(frozen=True)
class TrtEngine:
    """A TensorRT engine built on this device for one model entry."""

    file: str
    """Engine file name in the voice's directory."""
    precision: str
    """``int8``, ``fp16`` or ``fp32``."""
    key: str
    """Cache key: model hash, TensorRT and L4T versions, GPU, precision and profile."""


@dataclass(frozen=True)
class ModelEntry:
    """One ONNX model of the voice (``acoustic``, ``vocoder`` and their ``*_int8`` variants)."""

    file: str
    """ONNX file name in the voice's directory."""
    sha256: str
    """Hash of that file."""
    inputs: tuple[TensorSpec, ...]
    """Model inputs."""
    outputs: tuple[TensorSpec, ...]
    """Model outputs."""
    trt: TrtEngine | None = None
    """The TensorRT engine for this model, where one was built."""
    quantization: Mapping[str, Any] = field(default_factory=dict)
    """For an INT8 model: layers kept in FP32, calibration chosen, activation type, quantised part."""

    _FIXED = ("file", "sha256", "inputs", "outputs", "trt_engine", "trt_precision", "trt_key")

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ModelEntry:
        trt = None
        if data.get("trt_engine"):
            trt = TrtEngine(str(data["trt_engine"]), str(data["trt_precision"]), str(data["trt_key"]))
        return cls(
            file=str(data["file"]),
            sha256=str(data["sha256"]),
            inputs=tuple(_spec_from_json(t) for t in data["inputs"]),
            outputs=tuple(_spec_from_json(t) for t in data["outputs"]),
            trt=trt,
            quantization={k: v for k, v in data.items() if k not in cls._FIXED},
        )

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "file": self.file,
            "sha256": self.sha256,
            "inputs": [_spec_to_json(t) for t in self.inputs],
            "outputs": [_spec_to_json(t) for t in self.outputs],
            **self.quantization,
        }
        if self.trt is not None:
            out.update(trt_engine=self.trt.file, trt_precision=self.trt.precision, trt_key=self.trt.key)
        return out


@dataclass(frozen=True)
class SourceInfo:
    """Where the voice came from."""

    model: str
    """The Piper ``.onnx`` file, or the shipped directory of a voice shipped split."""
    model_sha256: str
    """Hash of the model file(s)."""
    config: str
    """The voice's ``.onnx.json``."""
    config_sha256: str
    """Hash of that file."""


@dataclass(frozen=True)
class Precision:
    """The precision the quality gates chose per model."""

    acoustic: str = "fp32"
    """``fp32`` or ``int8``."""
    vocoder: str = "fp32"
    """``fp32`` or ``int8``."""


@dataclass(frozen=True)
class Manifest:
    """Everything the runtime needs from a provisioned voice, and the record of how it was made."""

    voice: str
    """Voice name (also its directory's name)."""
    source: SourceInfo
    """Where the voice came from."""
    sample_rate: int
    """Audio samples per second."""
    hop_length: int
    """Audio samples per latent frame."""
    latent_channels: int
    """Channels of the latent ``z`` between acoustic model and vocoder."""
    espeak_voice: str
    """espeak-ng voice for phonemisation."""
    phoneme_id_map: Mapping[str, list[int]]
    """Phoneme to ids, from the voice's config."""
    gain: float
    """Output gain calibrated at provisioning (one per voice: a stream cannot normalise per sentence)."""
    models: Mapping[str, ModelEntry]
    """Model entries by role: ``acoustic``, ``vocoder``, and ``*_int8`` where the gate built them."""
    precision: Precision = field(default_factory=Precision)
    """What the quality gates chose."""
    inference: Mapping[str, float] = field(default_factory=dict)
    """The voice's default noise_scale, length_scale, noise_w."""
    student: bool = False
    """A distilled student voice."""
    split_check: Mapping[str, Any] = field(default_factory=dict)
    """Split proof: largest |split - whole| and sentences checked."""
    int8: Mapping[str, Any] = field(default_factory=dict)
    """The INT8 gate's report: figures and reasons per model."""
    tensorrt: Mapping[str, Any] = field(default_factory=dict)
    """TensorRT availability, platform and engines built."""
    stages: Mapping[str, Any] = field(default_factory=dict)
    """Per acoustic entry: how it was cut into stages (node counts, tensors passed, proof), or why it was not."""
    versions: Mapping[str, str] = field(default_factory=dict)
    """Versions the artefacts depend on."""
    steps: Mapping[str, Any] = field(default_factory=dict)
    """Cached step records (key, output hashes, info) for the next `jetvox provision`."""

    def model(self, role: str) -> ModelEntry:
        """The entry for ``role``; ManifestError naming what exists when it is missing."""
        try:
            return self.models[role]
        except KeyError:
            raise ManifestError(
                f"voice {self.voice} has no {role} model (it has {', '.join(sorted(self.models))}); "
                "provisioning did not build one"
            ) from None

    def staged(self, entry: str) -> dict[str, ModelEntry] | None:
        """{stage: entry} of the acoustic entry ``entry`` where provisioning cut it into stages, else None."""
        roles = stage_roles(entry)
        if not all(r in self.models for r in roles.values()):
            return None
        return {stage: self.models[r] for stage, r in roles.items()}

    def has_engine(self, entry: str) -> bool:
        """Whether a TensorRT engine was built for ``entry`` (or, for an acoustic model, for its stages)."""
        staged = self.staged(entry)
        if staged is not None:
            return any(e.trt is not None for e in staged.values())
        return entry in self.models and self.models[entry].trt is not None

    def with_models(self, **entries: ModelEntry | None) -> Manifest:
        """A copy with model entries added, replaced, or (given None) removed."""
        models = dict(self.models)
        for role, entry in entries.items():
            if entry is None:
                models.pop(role, None)
            else:
                models[role] = entry
        return dataclasses.replace(self, models=models)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Manifest:
        """Parse the JSON form; ManifestError naming the key that is missing or malformed."""
        try:
            return cls(
                voice=str(data["voice"]),
                source=SourceInfo(**data["source"]),
                sample_rate=int(data["sample_rate"]),
                hop_length=int(data["hop_length"]),
                latent_channels=int(data["latent_channels"]),
                espeak_voice=str(data["espeak_voice"]),
                phoneme_id_map=dict(data["phoneme_id_map"]),
                gain=float(data["gain"]),
                models={role: ModelEntry.from_json(m) for role, m in data["models"].items()},
                precision=Precision(**data.get("precision", {})),
                inference=dict(data.get("inference", {})),
                student=bool(data.get("student", False)),
                split_check=dict(data.get("split_check", {})),
                int8=dict(data.get("int8", {})),
                tensorrt=dict(data.get("tensorrt", {})),
                stages=dict(data.get("stages", {})),
                versions=dict(data.get("versions", {})),
                steps=dict(data.get("steps", {})),
            )
        except KeyError as exc:
            raise ManifestError(f"manifest lacks {exc.args[0]!r}; run `jetvox provision` again") from None
        except (TypeError, ValueError, AttributeError) as exc:
            raise ManifestError(f"manifest is malformed ({exc}); run `jetvox provision` again") from None

    def to_json(self) -> dict[str, Any]:
        """The JSON form (schema ``SCHEMA_VERSION``)."""
        return {
            "format": SCHEMA_VERSION,
            "voice": self.voice,
            "source": dataclasses.asdict(self.source),
            "sample_rate": self.sample_rate,
            "hop_length": self.hop_length,
            "latent_channels": self.latent_channels,
            "espeak_voice": self.espeak_voice,
            "phoneme_id_map": dict(self.phoneme_id_map),
            "gain": self.gain,
            "models": {role: m.to_json() for role, m in self.models.items()},
            "precision": dataclasses.asdict(self.precision),
            "inference": dict(self.inference),
            "student": self.student,
            "split_check": dict(self.split_check),
            "int8": dict(self.int8),
            "tensorrt": dict(self.tensorrt),
            "stages": dict(self.stages),
            "versions": dict(self.versions),
            "steps": dict(self.steps),
        }


def voice_dir(state_dir: Path, voice: str) -> Path:
    """Directory holding one provisioned voice."""
    return state_dir / "voices" / voice


def read_manifest(directory: Path) -> Manifest:
    """The manifest in ``directory``; ManifestError if missing or broken."""
    path = directory / MANIFEST_NAME
    if not path.is_file():
        raise ManifestError(f"no provisioned voice in {directory}: run `jetvox provision` first")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ManifestError(f"manifest {path} is unreadable ({exc}); run `jetvox provision` again") from None
    if not isinstance(data, dict) or data.get("format") != SCHEMA_VERSION:
        found = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise ManifestError(f"manifest {path} has format {found!r}, expected {SCHEMA_VERSION}; re-provision")
    return Manifest.from_json(data)


def read_manifest_or_none(directory: Path) -> Manifest | None:
    """The manifest, or None when there is none yet (or it is unreadable or from another schema)."""
    try:
        return read_manifest(directory)
    except ManifestError:
        return None


def write_manifest(directory: Path, manifest: Manifest) -> Path:
    """Write the manifest atomically."""
    path = directory / MANIFEST_NAME
    atomic_write_text(path, json.dumps(manifest.to_json(), indent=2, sort_keys=True, ensure_ascii=False))
    return path
