"""`jetvox provision`: the chain of cached steps that prepares a voice for this device."""

from __future__ import annotations

import logging
import platform
import sys
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Callable

import numpy as np

from device.config import Config
from provisioning import manifest as mf
from provisioning.steps import StepRunner, atomic_path, clean_partials, sha256_file
from provisioning.voices import VoiceSource, resolve_voice

log = logging.getLogger(__name__)

SPLIT_VERSION = 1
# Sentences used to prove the split and calibrate the output gain (not an evaluation set).
CHECK_SENTENCES = (
    "The kitchen temperature is twenty one degrees.",
    "Warning, the garage door has been open for ten minutes.",
    "Good morning. The washing machine has finished.",
    "Battery level low.",
)
SPLIT_TOLERANCE = 1e-4


@dataclass(frozen=True)
class ProvisionResult:
    """What `provision` did."""

    directory: Path
    """The voice's directory under the state dir."""
    manifest: dict[str, Any]
    """The manifest written."""
    ran: tuple[str, ...]
    """Steps that ran (the rest were up to date)."""


def versions() -> dict[str, str]:
    """Versions of what the built artefacts depend on."""
    out = {"python": platform.python_version()}
    for dist in ("jetvox", "onnx", "onnxruntime", "onnxruntime-gpu", "piper-tts", "numpy"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return out


def _stderr_progress(msg: str) -> None:
    print(f"[provision {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def provision(cfg: Config, progress: Callable[[str], None] | None = None) -> ProvisionResult:
    """Prepare the configured voice; a no-op when nothing it depends on changed.

    Args:
        cfg: the loaded configuration (voice, state_dir, engine shapes).
        progress: receives one line per step; defaults to stderr.
    """
    say = progress or _stderr_progress
    source = resolve_voice(cfg.voice.name, cfg.voice.model, cfg.voice.config)
    out_dir = mf.voice_dir(cfg.state_dir, source.name)
    out_dir.mkdir(parents=True, exist_ok=True)
    removed = clean_partials(out_dir)
    if removed:
        say(f"removed {removed} partial file(s) left by an interrupted run")
    previous = mf.read_manifest_or_empty(out_dir)
    runner = StepRunner(previous.get("steps", {}), say)
    vers = versions()
    source_hash = "+".join(sha256_file(p) for p in source.files)
    config_hash = sha256_file(source.config_path)

    acoustic_path = out_dir / "acoustic.onnx"
    vocoder_path = out_dir / "vocoder.onnx"
    split = runner.run(
        "split",
        {"model": source_hash, "split": SPLIT_VERSION, "onnx": vers.get("onnx")},
        [acoustic_path, vocoder_path],
        lambda: _split(source, acoustic_path, vocoder_path, say)
        if source.presplit is None
        else _import_split(source.presplit, acoustic_path, vocoder_path, say),
    )
    check = runner.run(
        "verify-split",
        {
            "model": source_hash,
            "config": config_hash,
            "split": split["outputs"],
            "ort": vers.get("onnxruntime"),
            "sentences": CHECK_SENTENCES,
        },
        [],
        lambda: _verify_split(source, acoustic_path, vocoder_path, say),
    )
    data: dict[str, Any] = {
        "voice": source.name,
        "source": {
            "model": str(source.model or source.config_path.parent),
            "model_sha256": source_hash,
            "config": str(source.config_path),
            "config_sha256": config_hash,
        },
        "sample_rate": source.sample_rate,
        "hop_length": check["info"]["hop_length"],
        "latent_channels": split["info"]["latent_channels"],
        "espeak_voice": source.espeak_voice,
        "phoneme_id_map": source.config["phoneme_id_map"],
        "inference": source.config.get("inference", {}),
        "gain": check["info"]["gain"],
        "models": {
            "acoustic": {"file": acoustic_path.name, "sha256": sha256_file(acoustic_path), **split["info"]["acoustic"]},
            "vocoder": {"file": vocoder_path.name, "sha256": sha256_file(vocoder_path), **split["info"]["vocoder"]},
        },
        "precision": {"acoustic": "fp32", "vocoder": "fp32"},
        "split_check": {k: check["info"][k] for k in ("max_abs_error", "sentences")},
        "student": source.config.get("jetvox", {}).get("student", False),
        "versions": vers,
    }
    for extra in _extra_steps():
        extra(cfg, source, out_dir, runner, data, say)
    data["steps"] = runner.records
    if runner.ran or data != {k: previous.get(k) for k in data}:
        mf.write_manifest(out_dir, data)
        say(f"manifest written: {out_dir / mf.MANIFEST_NAME}")
    else:
        say("voice already provisioned; nothing to do")
    return ProvisionResult(directory=out_dir, manifest=data, ran=tuple(runner.ran))


StepHook = Callable[[Config, VoiceSource, Path, StepRunner, dict[str, Any], Callable[[str], None]], None]


def _extra_steps() -> list[StepHook]:
    """Later steps (INT8 and its quality gate, TensorRT engines), each adding to the manifest."""
    hooks: list[StepHook] = []
    try:
        from provisioning.int8 import int8_steps
    except ImportError:
        pass
    else:
        hooks.append(int8_steps)
    try:
        from provisioning.engines_step import tensorrt_steps
    except ImportError:
        pass
    else:
        hooks.append(tensorrt_steps)
    return hooks


def _tensor_info(path: Path) -> dict[str, Any]:
    from engines.onnxrt import OnnxRuntimeEngine

    with OnnxRuntimeEngine(path) as eng:
        return {
            "inputs": [{"name": s.name, "dtype": s.dtype, "shape": list(s.shape)} for s in eng.inputs],
            "outputs": [{"name": s.name, "dtype": s.dtype, "shape": list(s.shape)} for s in eng.outputs],
        }


def _split(source: VoiceSource, acoustic_path: Path, vocoder_path: Path, say: Callable[[str], None]) -> dict[str, Any]:
    import onnx

    from provisioning.split import find_boundary, split_model

    say(f"loading {source.model.name} ({source.model.stat().st_size / 1e6:.0f} MB)")
    model = onnx.load(str(source.model))
    boundary = find_boundary(model)
    say(f"decoder starts at tensor {boundary.tensor} ({boundary.channels} channels, {boundary.vocoder_nodes} vocoder tensors)")
    acoustic, vocoder = split_model(model, boundary)
    for m, path in ((acoustic, acoustic_path), (vocoder, vocoder_path)):
        with atomic_path(path) as tmp:
            onnx.save(m, str(tmp))
        say(f"wrote {path.name} ({path.stat().st_size / 1e6:.1f} MB)")
    return {
        "boundary": boundary.tensor,
        "latent_channels": boundary.channels,
        "acoustic": _tensor_info(acoustic_path),
        "vocoder": _tensor_info(vocoder_path),
    }


def _import_split(
    pair: tuple[Path, Path], acoustic_path: Path, vocoder_path: Path, say: Callable[[str], None]
) -> dict[str, Any]:
    """A voice shipped already split (a distilled student): copy its two models into place."""
    import shutil

    for src, dst in zip(pair, (acoustic_path, vocoder_path)):
        with atomic_path(dst) as tmp:
            shutil.copyfile(src, tmp)
        say(f"imported {dst.name} ({dst.stat().st_size / 1e6:.1f} MB)")
    acoustic, vocoder = _tensor_info(acoustic_path), _tensor_info(vocoder_path)
    z = vocoder["inputs"][0]
    if z["name"] != "z" or len(z["shape"]) != 3 or not isinstance(z["shape"][1], int):
        raise RuntimeError(f"shipped vocoder must take z [1, C, frames], takes {z}")
    return {"boundary": None, "latent_channels": z["shape"][1], "acoustic": acoustic, "vocoder": vocoder}


def _verify_split(
    source: VoiceSource, acoustic_path: Path, vocoder_path: Path, say: Callable[[str], None]
) -> dict[str, Any]:
    """Acoustic then vocoder must equal the whole model (noise scales 0); also measure the output gain.

    A voice shipped already split has no whole model: it is only run, to measure hop and gain.
    """
    from device.phonemes import Phonemizer
    from engines.onnxrt import OnnxRuntimeEngine

    phonemizer = Phonemizer(source.espeak_voice, source.config["phoneme_id_map"])
    worst: float | None = None if source.model is None else 0.0
    peaks = []
    hop = 0
    full = OnnxRuntimeEngine(source.model) if source.model is not None else None
    with OnnxRuntimeEngine(acoustic_path) as ac, OnnxRuntimeEngine(vocoder_path) as voc:
        for n, sentence in enumerate(CHECK_SENTENCES, 1):
            ids = np.array([phonemizer.sentence_ids(sentence)], dtype=np.int64)
            feeds = {
                "input": ids,
                "input_lengths": np.array([ids.shape[1]], dtype=np.int64),
                "scales": np.array([0.0, 1.0, 0.0], dtype=np.float32),
            }
            z = ac.infer(feeds)["z"]
            audio = voc.infer({"z": z})["audio"].reshape(-1)
            hop = audio.shape[0] // z.shape[2]
            peaks.append(float(np.max(np.abs(audio))))
            if full is None or worst is None:
                say(f"verify {n}/{len(CHECK_SENTENCES)}: {audio.shape[0]} samples")
                continue
            ref = next(iter(full.infer(feeds).values())).reshape(-1)
            if audio.shape != ref.shape:
                raise RuntimeError(f"split changed the output length: {audio.shape} vs {ref.shape}")
            err = float(np.max(np.abs(audio - ref)))
            worst = max(worst, err)
            say(f"verify-split {n}/{len(CHECK_SENTENCES)}: max |split - whole| = {err:.2e}")
    if full is not None:
        full.close()
    if worst is not None and worst > SPLIT_TOLERANCE:
        raise RuntimeError(
            f"acoustic+vocoder differs from the whole model by {worst:.2e} (expected <= {SPLIT_TOLERANCE})"
        )
    # Piper scales every sentence to full range; a stream cannot, so use one gain for the voice.
    gain = float(min(4.0, 0.9 / float(np.median(peaks))))
    return {"max_abs_error": worst, "sentences": len(CHECK_SENTENCES), "hop_length": hop, "gain": gain}
