"""Provisioning hook: TensorRT engines for the acoustic model's stages and the gated vocoder, where TensorRT exists."""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from jetvox.device.config import Config
from jetvox.device.voice.manifest import Manifest, TrtEngine, stage_roles
from jetvox.provisioning.steps import sha256_file
from jetvox.provisioning.tensorrt import build as trt_build
from jetvox.provisioning.tensorrt import platform as trt_platform

log = logging.getLogger(__name__)

MAX_VOCODER_FRAMES = 1024
"""Largest vocoder call the engine accepts (about 12 s of audio): chunks, and whole sentences."""


def engine_plan(manifest: Manifest, fast_int8: bool | None, fast_fp16: bool | None) -> dict[str, tuple[str, str]]:
    """{role: (manifest model entry, TensorRT precision)} for the acoustic model's stages and the vocoder.

    The acoustic model is built as its encoder and decoder stages (the regulator between them runs on
    ONNX Runtime); a voice whose acoustic model could not be cut gets no acoustic engine. A model the INT8
    gate chose is built from its Q/DQ graph as INT8 on a GPU with fast INT8, each stage only if it holds
    Q/DQ nodes (the others of that graph are FP16); everything else is FP16 on a GPU with fast FP16, else FP32.
    """
    plain = "fp16" if fast_fp16 else "fp32"
    plan: dict[str, tuple[str, str]] = {}
    for model in ("acoustic", "vocoder"):
        chose_int8 = getattr(manifest.precision, model) == "int8" and f"{model}_int8" in manifest.models
        entry = f"{model}_int8" if chose_int8 and fast_int8 else model
        if model == "vocoder":
            plan["vocoder"] = (entry, "int8" if entry != model else plain)
            continue
        staged = manifest.staged(entry)
        if staged is None:
            continue
        for stage in ("encoder", "decoder"):
            qdq = int(staged[stage].quantization.get("qdq_nodes", 0))
            plan[f"acoustic_{stage}"] = (stage_roles(entry)[stage], "int8" if entry != model and qdq else plain)
    return plan


@dataclass(frozen=True)
class TensorRTResult:
    """The engines built (by manifest entry) and the report for the manifest's ``tensorrt`` section."""

    engines: dict[str, TrtEngine]
    """Engine per model entry it was built from."""
    report: dict[str, Any]
    """Availability, platform, engines and shapes."""

    def apply(self, manifest: Manifest) -> Manifest:
        """The manifest with each entry's engine attached (an entry not built from keeps none)."""
        models = {
            role: dataclasses.replace(entry, trt=self.engines.get(role)) for role, entry in manifest.models.items()
        }
        return dataclasses.replace(manifest, models=models, tensorrt=self.report)


def shapes_of(cfg: Config) -> dict[str, int]:
    """The profile sizes the config sets (``trt_build.dim_ranges``'s arguments)."""
    e, s = cfg.engine, cfg.synthesis
    return dict(
        max_phonemes=e.max_phonemes,
        opt_phonemes=e.opt_phonemes,
        chunk_frames=s.chunk_frames,
        max_frames=max(MAX_VOCODER_FRAMES, s.chunk_frames + 2 * s.overlap_frames),
        overlap_frames=s.overlap_frames,
        max_acoustic_frames=e.max_frames,
    )


def profile_of(cfg: Config, manifest: Manifest, role: str, entry: str) -> trt_build.Profile:
    """The optimisation profile of ``role`` built from manifest entry ``entry``."""
    dims = trt_build.dim_ranges(role, **shapes_of(cfg))
    return trt_build.Profile.from_ranges(role, trt_build.profiles_for(manifest.model(entry).inputs, dims))


def tensorrt_steps(cfg: Config, manifest: Manifest, out_dir: Path, say: Callable[[str], None]) -> TensorRTResult:
    """Build (or find cached) TensorRT engines for the models the runtime will load.

    Where TensorRT cannot be imported, or cannot create a builder, say so and report
    ``{"available": False, ...}``: the voice runs on ONNX Runtime.

    Args:
        cfg: the configuration (engine shapes, workspace limit, chunking).
        manifest: the voice with the INT8 gate's choices.
        out_dir: the voice's directory (engines are written here, cached by ``trt_build.ensure_engine``'s key).
        say: progress callback.
    """
    info = trt_platform.detect_platform()
    platform = {k: v for k, v in dataclasses.asdict(info).items() if k != "total_memory_bytes"}
    if info.tensorrt_version is None or info.fast_fp16 is None:
        why = "not installed" if info.tensorrt_version is None else f"{info.tensorrt_version} found no usable GPU"
        say(f"TensorRT not available ({why}): ONNX Runtime models only")
        return TensorRTResult({}, {"available": False, "reason": f"TensorRT {why}", "platform": platform})
    shapes = shapes_of(cfg)
    engines: dict[str, TrtEngine] = {}
    built: dict[str, Any] = {}
    plan = engine_plan(manifest, info.fast_int8, info.fast_fp16)
    if "acoustic_encoder" not in plan:
        why = "the acoustic model could not be cut into static-shape stages; ONNX Runtime runs it whole"
        say(f"TensorRT acoustic: skipped ({why})")
        built["acoustic"] = {"entry": "acoustic", "error": why}
    for role, (entry, precision) in plan.items():
        onnx_path = out_dir / manifest.model(entry).file
        say(f"TensorRT {role}: {precision} engine from {onnx_path.name}")
        try:
            profile = profile_of(cfg, manifest, role, entry)
            key = trt_build.engine_cache_key(sha256_file(onnx_path), info, precision, profile)
            engine = trt_build.ensure_engine(
                onnx_path,
                out_dir,
                model=role,
                precision=precision,
                profile=profile,
                platform=info,
                workspace_bytes=cfg.engine.workspace_mb << 20,
                progress=say,
            )
        except trt_build.BuildError as exc:  # this model runs on ONNX Runtime; the others keep their engines
            log.warning("TensorRT %s engine failed; ONNX Runtime runs it: %s", role, exc)
            say(f"TensorRT {role}: build failed, ONNX Runtime runs this model ({exc})")
            built[role] = {"entry": entry, "precision": precision, "error": str(exc)}
            continue
        engines[entry] = TrtEngine(engine.name, precision, key)
        built[role] = {"entry": entry, "precision": precision, "engine": engine.name, "key": key}
    return TensorRTResult(engines, {"available": True, "platform": platform, "engines": built, "shapes": shapes})
