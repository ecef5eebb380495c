"""Provisioning hook: TensorRT engines for the acoustic model and the gated vocoder, where TensorRT exists."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any, Callable

from device.config import Config
from provisioning.steps import StepRunner
from provisioning.voices import VoiceSource

log = logging.getLogger(__name__)

MAX_VOCODER_FRAMES = 1024
"""Largest vocoder call the engine accepts (about 12 s of audio): chunks, and whole sentences."""


def engine_plan(data: dict[str, Any], fast_int8: bool | None, fast_fp16: bool | None) -> dict[str, tuple[str, str]]:
    """{role: (manifest model entry, TensorRT precision)} for the acoustic model and the vocoder.

    A model the INT8 gate chose is built as INT8 from its Q/DQ graph (on a GPU with fast
    INT8); otherwise the FP32 graph is built as FP16 on a GPU with fast FP16, else FP32.
    """
    plan = {}
    for role in ("acoustic", "vocoder"):
        chose_int8 = data.get("precision", {}).get(role) == "int8" and f"{role}_int8" in data["models"]
        if chose_int8 and fast_int8:
            plan[role] = (f"{role}_int8", "int8")
        else:
            plan[role] = (role, "fp16" if fast_fp16 else "fp32")
    return plan


def tensorrt_steps(
    cfg: Config,
    source: VoiceSource,
    out_dir: Path,
    runner: StepRunner,
    data: dict[str, Any],
    say: Callable[[str], None],
) -> None:
    """Build (or find cached) TensorRT engines and record them as ``data["models"][entry]["trt_engine"]``.

    Where TensorRT cannot be imported, or cannot create a builder, say so and record
    ``data["tensorrt"] = {"available": False, ...}``: the voice runs on ONNX Runtime.

    Args:
        cfg: the configuration (engine shapes, workspace limit, chunking).
        source: the voice being provisioned.
        out_dir: the voice's directory (engines are written here).
        runner: the step runner (engines are cached by ``trt_build.ensure_engine``'s own key).
        data: the manifest being built; updated in place.
        say: progress callback.
    """
    from provisioning.platform import detect_platform

    info = detect_platform()
    platform = {k: v for k, v in dataclasses.asdict(info).items() if k != "total_memory_bytes"}
    if info.tensorrt_version is None or info.fast_fp16 is None:
        why = "not installed" if info.tensorrt_version is None else f"{info.tensorrt_version} found no usable GPU"
        say(f"TensorRT not available ({why}): ONNX Runtime models only")
        data["tensorrt"] = {"available": False, "reason": f"TensorRT {why}", "platform": platform}
        return
    from provisioning.trt_build import Profile, engine_cache_key, ensure_engine, profiles_for
    from provisioning.steps import sha256_file

    e, s = cfg.engine, cfg.synthesis
    shapes = dict(
        max_phonemes=e.max_phonemes,
        opt_phonemes=e.opt_phonemes,
        chunk_frames=s.chunk_frames,
        max_frames=max(MAX_VOCODER_FRAMES, s.chunk_frames + 2 * s.overlap_frames),
        overlap_frames=s.overlap_frames,
        channels=int(data.get("latent_channels", 192)),
    )
    built: dict[str, Any] = {}
    for role, (entry, precision) in engine_plan(data, info.fast_int8, info.fast_fp16).items():
        onnx_path = out_dir / data["models"][entry]["file"]
        profile = Profile.from_ranges(role, profiles_for(role, **shapes))
        key = engine_cache_key(sha256_file(onnx_path), info, precision, profile)
        say(f"TensorRT {role}: {precision} engine from {onnx_path.name}")
        engine = ensure_engine(
            onnx_path,
            out_dir,
            model=role,
            precision=precision,
            profile=profile,
            platform=info,
            workspace_bytes=e.workspace_mb << 20,
            progress=say,
        )
        data["models"][entry]["trt_engine"] = engine.name
        data["models"][entry]["trt_precision"] = precision
        data["models"][entry]["trt_key"] = key
        if entry != role:  # the runtime opens the entry it loads; the plain one keeps no stale engine
            data["models"][role].pop("trt_engine", None)
        built[role] = {"entry": entry, "precision": precision, "engine": engine.name, "key": key}
    data["tensorrt"] = {"available": True, "platform": platform, "engines": built, "shapes": shapes}
