"""`jetvox provision`: the chain of cached steps that prepares a voice for this device."""

from __future__ import annotations

import dataclasses
import logging
import platform
import sys
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Callable

import numpy as np
import onnx

from jetvox.device.config import Config
from jetvox.device.storage import atomic_path
from jetvox.device.synthesis.feeds import acoustic_feeds
from jetvox.device.text.phonemes import Phonemizer
from jetvox.device.voice import manifest as mf
from jetvox.device.voice.sources import VoiceSource, resolve_voice
from jetvox.engines.onnxrt import OnnxRuntimeEngine
from jetvox.provisioning.int8.steps import int8_steps
from jetvox.provisioning.split import SplitError, find_boundary, split_model
from jetvox.provisioning.stages import STAGES_VERSION, qdq_nodes, split_stages
from jetvox.provisioning.steps import ProvisionError, StepRunner, clean_partials, sha256_file
from jetvox.provisioning.weights import expand_stored_weights
from jetvox.provisioning.tensorrt.step import tensorrt_steps

log = logging.getLogger(__name__)

SPLIT_VERSION = 2
"""Bump when the split's outputs change (2: a shipped split is imported with its weights expanded to float32)."""
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
    manifest: mf.Manifest
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
        cfg: the loaded configuration (voice, state_dir, engine shapes, provision settings).
        progress: receives one line per step; defaults to stderr.
    """
    say = progress or _stderr_progress
    source = resolve_voice(cfg.voice.name, cfg.voice.model, cfg.voice.config)
    out_dir = mf.voice_dir(cfg.state_dir, source.name)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ProvisionError(f"cannot create the voice directory {out_dir}: {exc.strerror}") from None
    removed = clean_partials(out_dir)
    if removed:
        say(f"removed {removed} partial file(s) left by an interrupted run")
    previous = mf.read_manifest_or_none(out_dir)
    runner = StepRunner(previous.steps if previous else {}, say)
    manifest = split_steps(source, out_dir, runner, say)
    manifest = int8_steps(cfg, manifest, out_dir, runner, say).apply(manifest)
    manifest = stage_steps(manifest, out_dir, runner, say)
    manifest = tensorrt_steps(cfg, manifest, out_dir, say).apply(manifest)
    manifest = dataclasses.replace(manifest, steps=runner.records)
    if runner.ran or previous is None or manifest.to_json() != previous.to_json():
        mf.write_manifest(out_dir, manifest)
        say(f"manifest written: {out_dir / mf.MANIFEST_NAME}")
    else:
        say("voice already provisioned; nothing to do")
    return ProvisionResult(directory=out_dir, manifest=manifest, ran=tuple(runner.ran))


def split_steps(source: VoiceSource, out_dir: Path, runner: StepRunner, say: Callable[[str], None]) -> mf.Manifest:
    """The first two steps: split the voice (or import a shipped split) and prove it; the FP32 manifest."""
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
    info = split["info"]
    return mf.Manifest(
        voice=source.name,
        source=mf.SourceInfo(
            model=str(source.model or source.config_path.parent),
            model_sha256=source_hash,
            config=str(source.config_path),
            config_sha256=config_hash,
        ),
        sample_rate=source.sample_rate,
        hop_length=check["info"]["hop_length"],
        latent_channels=info["latent_channels"],
        espeak_voice=source.espeak_voice,
        phoneme_id_map=source.config["phoneme_id_map"],
        inference=source.config.get("inference", {}),
        gain=check["info"]["gain"],
        models={
            "acoustic": _model_entry(acoustic_path, info["acoustic"]),
            "vocoder": _model_entry(vocoder_path, info["vocoder"]),
        },
        split_check={k: check["info"][k] for k in ("max_abs_error", "sentences")},
        student=bool(source.config.get("jetvox", {}).get("student", False)),
        versions=vers,
    )


def _model_entry(path: Path, tensors: dict[str, Any]) -> mf.ModelEntry:
    return mf.ModelEntry.from_json({"file": path.name, "sha256": sha256_file(path), **tensors})


def _tensor_info(path: Path) -> dict[str, Any]:
    with OnnxRuntimeEngine(path) as eng:
        return {
            "inputs": [{"name": s.name, "dtype": s.dtype, "shape": list(s.shape)} for s in eng.inputs],
            "outputs": [{"name": s.name, "dtype": s.dtype, "shape": list(s.shape)} for s in eng.outputs],
        }


def _split(source: VoiceSource, acoustic_path: Path, vocoder_path: Path, say: Callable[[str], None]) -> dict[str, Any]:
    if source.model is None:
        raise SplitError(f"voice {source.name} has no whole model to split")
    say(f"loading {source.model.name} ({source.model.stat().st_size / 1e6:.0f} MB)")
    try:
        model = onnx.load(str(source.model))
    except Exception as exc:  # protobuf's DecodeError and friends
        raise SplitError(f"voice model {source.model} is not a readable ONNX model: {exc}") from None
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
    """A voice shipped already split (a distilled student): its two models in place, with the weights it stores
    narrow (float16, INT8) expanded to float32 for the quantiser and TensorRT (``weights.py``)."""
    for src, dst in zip(pair, (acoustic_path, vocoder_path)):
        try:
            model = onnx.load(str(src))
        except Exception as exc:  # protobuf's DecodeError and friends
            raise ProvisionError(f"shipped model {src} is not a readable ONNX model: {exc}") from None
        expanded = expand_stored_weights(model)
        with atomic_path(dst) as tmp:
            onnx.save(model, str(tmp))
        say(f"imported {dst.name} ({src.stat().st_size / 1e6:.1f} MB shipped, {dst.stat().st_size / 1e6:.1f} MB "
            f"with {expanded} weight(s) expanded to float32)")
    acoustic, vocoder = _tensor_info(acoustic_path), _tensor_info(vocoder_path)
    z = vocoder["inputs"][0]
    if z["name"] != "z" or len(z["shape"]) != 3 or not isinstance(z["shape"][1], int):
        raise ProvisionError(f"shipped vocoder must take z [1, C, frames], takes {z}")
    return {"boundary": None, "latent_channels": z["shape"][1], "acoustic": acoustic, "vocoder": vocoder}


def _verify_split(
    source: VoiceSource, acoustic_path: Path, vocoder_path: Path, say: Callable[[str], None]
) -> dict[str, Any]:
    """Acoustic then vocoder must equal the whole model (noise scales 0); also measure the output gain.

    A voice shipped already split has no whole model: it is only run, to measure hop and gain.
    """
    phonemizer = Phonemizer(source.espeak_voice, source.config["phoneme_id_map"])
    worst: float | None = None if source.model is None else 0.0
    peaks = []
    hop = 0
    full = OnnxRuntimeEngine(source.model) if source.model is not None else None
    with OnnxRuntimeEngine(acoustic_path) as ac, OnnxRuntimeEngine(vocoder_path) as voc:
        for n, sentence in enumerate(CHECK_SENTENCES, 1):
            feeds = acoustic_feeds(phonemizer.sentence_ids(sentence))
            z = ac.infer(feeds)["z"]
            audio = voc.infer({"z": z})["audio"].reshape(-1)
            hop = audio.shape[0] // z.shape[2]
            peaks.append(float(np.max(np.abs(audio))))
            if full is None or worst is None:
                say(f"verify {n}/{len(CHECK_SENTENCES)}: {audio.shape[0]} samples")
                continue
            ref = next(iter(full.infer(feeds).values())).reshape(-1)
            if audio.shape != ref.shape:
                raise SplitError(f"split changed the output length: {audio.shape} vs {ref.shape}")
            err = float(np.max(np.abs(audio - ref)))
            worst = max(worst, err)
            say(f"verify-split {n}/{len(CHECK_SENTENCES)}: max |split - whole| = {err:.2e}")
    if full is not None:
        full.close()
    if worst is not None and worst > SPLIT_TOLERANCE:
        raise SplitError(
            f"acoustic+vocoder differs from the whole model by {worst:.2e} (expected <= {SPLIT_TOLERANCE})"
        )
    # Piper scales every sentence to full range; a stream cannot, so use one gain for the voice.
    gain = float(min(4.0, 0.9 / float(np.median(peaks))))
    return {"max_abs_error": worst, "sentences": len(CHECK_SENTENCES), "hop_length": hop, "gain": gain}


def stage_steps(manifest: mf.Manifest, out_dir: Path, runner: StepRunner, say: Callable[[str], None]) -> mf.Manifest:
    """Cut each acoustic model (FP32, and INT8 where the gate built one) into its static-shape stages.

    The stages together must equal the whole model at noise 0 on CHECK_SENTENCES. A model that cannot be
    cut keeps running whole on ONNX Runtime (and gets no TensorRT engine); the reason goes in the manifest.
    """
    phonemizer = Phonemizer(manifest.espeak_voice, manifest.phoneme_id_map)
    feeds = [acoustic_feeds(phonemizer.sentence_ids(s)) for s in CHECK_SENTENCES]
    report: dict[str, Any] = {}
    entries: dict[str, mf.ModelEntry] = {}
    for entry in ("acoustic", "acoustic_int8"):
        if entry not in manifest.models:
            continue
        source = out_dir / manifest.model(entry).file
        roles = mf.stage_roles(entry)
        paths = {stage: out_dir / f"{source.stem}.{stage}.onnx" for stage in roles}
        key = {"model": manifest.model(entry).sha256, "stages": STAGES_VERSION, "sentences": CHECK_SENTENCES,
               "onnx": manifest.versions.get("onnx"), "ort": manifest.versions.get("onnxruntime")}
        try:
            record = runner.run(f"stages-{entry}", key, list(paths.values()),
                                lambda: _stage(source, paths, feeds, say))
        except SplitError as exc:
            log.warning("%s stays whole (ONNX Runtime only): %s", entry, exc)
            say(f"stages {entry}: cannot be cut ({exc}); it runs whole on ONNX Runtime")
            report[entry] = {"error": str(exc)}
            continue
        info = record["info"]
        report[entry] = {k: info[k] for k in ("nodes", "max_abs_error", "encoder_outputs", "decoder_inputs")}
        for stage, role in roles.items():
            entries[role] = _model_entry(paths[stage], {**info["tensors"][stage], "stage": stage, "of": entry,
                                                        "qdq_nodes": info["qdq_nodes"][stage]})
    return dataclasses.replace(manifest.with_models(**entries), stages=report)


def _stage(source: Path, paths: dict[str, Path], feeds: list[dict[str, np.ndarray]],
           say: Callable[[str], None]) -> dict[str, Any]:
    """Cut, write and prove one acoustic model's stages."""
    stages = split_stages(onnx.load(str(source)), feeds)
    models = {"encoder": stages.encoder, "regulator": stages.regulator, "decoder": stages.decoder}
    for stage, model in models.items():
        with atomic_path(paths[stage]) as tmp:
            onnx.save(model, str(tmp))
    say(f"stages of {source.name}: " + ", ".join(f"{k} {v} nodes" for k, v in stages.summary["nodes"].items()))
    engines = [OnnxRuntimeEngine(paths[stage]) for stage in models]
    worst = 0.0
    with OnnxRuntimeEngine(source) as whole:
        for f in feeds:
            board = dict(f)
            for eng in engines:
                board.update(eng.infer({s.name: board[s.name] for s in eng.inputs}))
            ref = whole.infer(f)
            if board["z"].shape != ref["z"].shape:
                raise SplitError(f"stages changed the frame count: {board['z'].shape} vs {ref['z'].shape}")
            worst = max(worst, float(np.max(np.abs(board["z"] - ref["z"]))))
    for eng in engines:
        eng.close()
    if worst > SPLIT_TOLERANCE:
        raise SplitError(f"the stages differ from the whole acoustic model by {worst:.2e} (expected <= {SPLIT_TOLERANCE})")
    say(f"stages of {source.name}: max |stages - whole| = {worst:.2e} on {len(feeds)} sentences")
    return {**stages.summary, "max_abs_error": worst, "tensors": {s: _tensor_info(p) for s, p in paths.items()},
            "qdq_nodes": {s: qdq_nodes(m) for s, m in models.items()}}
