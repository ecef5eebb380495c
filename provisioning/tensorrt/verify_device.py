"""`make verify-device`: build TensorRT engines on this Jetson and compare them with ONNX Runtime FP32."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from contextlib import closing
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from jetvox.device.evaluation.quality import log_mel_distance
from jetvox.device.synthesis.feeds import acoustic_feeds
from jetvox.engines.base import EngineError
from jetvox.engines.onnxrt import OnnxRuntimeEngine
from jetvox.provisioning.tensorrt.build import (
    BuildError,
    Profile,
    ensure_engine,
    profiles_for,
)
from jetvox.provisioning.tensorrt.platform import PlatformInfo, detect_platform

if TYPE_CHECKING:
    from jetvox.engines.tensorrt import CudaWorker

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_MISMATCH = 1
EXIT_NO_TENSORRT = 2
SENTENCE_PHONEMES = (24, 80, 160, 320)
"""Phoneme counts of the synthetic sentences (clipped to the profile maximum)."""


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m jetvox.provisioning.tensorrt.verify_device",
        description="Build TensorRT engines for the split models and compare them with ONNX Runtime FP32.",
    )
    p.add_argument("--acoustic", type=Path, required=True, help="acoustic ONNX model")
    p.add_argument("--vocoder", type=Path, required=True, help="vocoder ONNX model (quantised for int8)")
    p.add_argument("--out", type=Path, required=True, help="directory for the engines and timing cache")
    p.add_argument("--precision", choices=("int8", "fp16", "fp32"), default="int8", help="vocoder precision")
    p.add_argument(
        "--acoustic-precision", choices=("int8", "fp16", "fp32"), default=None, help="default: --precision"
    )
    p.add_argument("--sentences", type=int, default=3, help="synthetic sentences to compare (1-4)")
    p.add_argument("--sample-rate", type=int, default=22050)
    p.add_argument("--max-phonemes", type=int, default=400)
    p.add_argument("--opt-phonemes", type=int, default=80)
    p.add_argument("--chunk-frames", type=int, default=32)
    p.add_argument("--overlap-frames", type=int, default=16)
    p.add_argument("--max-frames", type=int, default=1024, help="largest vocoder call, in latent frames")
    p.add_argument("--workspace-mb", type=int, default=1024)
    p.add_argument("--max-log-mel", type=float, default=None, help="fail above this log-mel distance")
    return p.parse_args(argv)


def _phoneme_ids(count: int, seed: int) -> list[int]:
    """Piper-shaped ids: BOS 1, then phonemes (3..59, present in every Piper map) each followed by pad 0, EOS 2."""
    rng = np.random.default_rng(seed)
    ids = [1, 0]
    for pid in rng.integers(3, 60, size=max(1, (count - 3) // 2)):
        ids += [int(pid), 0]
    return (ids + [2])[:count]


def _compare(args: argparse.Namespace, engines: dict[str, Path], worker: CudaWorker) -> tuple[float, list[str]]:
    """Run the synthetic sentences through both backends; (worst log-mel distance, failures)."""
    from jetvox.engines.tensorrt import TensorRTEngine

    worst_mel = 0.0
    failures: list[str] = []
    cpu = ["CPUExecutionProvider"]
    with closing(OnnxRuntimeEngine(args.acoustic, providers=cpu)) as ort_ac, closing(
        OnnxRuntimeEngine(args.vocoder, providers=cpu)
    ) as ort_voc, closing(TensorRTEngine(engines["acoustic"], worker=worker)) as trt_ac, closing(
        TensorRTEngine(engines["vocoder"], worker=worker)
    ) as trt_voc:
        for n, count in enumerate(SENTENCE_PHONEMES[: max(1, min(args.sentences, len(SENTENCE_PHONEMES)))]):
            ids = _phoneme_ids(min(count, args.max_phonemes), seed=n)
            feeds = acoustic_feeds(ids)  # no noise: deterministic
            t0 = time.perf_counter()
            z_ref = ort_ac.infer(feeds)["z"]
            t1 = time.perf_counter()
            z_trt = trt_ac.infer(feeds)["z"]
            t2 = time.perf_counter()
            if z_ref.shape == z_trt.shape:
                z_err = f"max |dz| {float(np.max(np.abs(z_ref - z_trt))):.4g}"
            else:
                z_err = f"frames differ: ORT {z_ref.shape[2]}, TensorRT {z_trt.shape[2]}"
            z = np.ascontiguousarray(z_ref[:, :, : args.max_frames])  # same latents into both vocoders
            t3 = time.perf_counter()
            audio_ref = ort_voc.infer({"z": z})["audio"][0]
            t4 = time.perf_counter()
            audio_trt = trt_voc.infer({"z": z})["audio"][0]
            t5 = time.perf_counter()
            audio_err = float(np.max(np.abs(audio_ref - audio_trt)))
            mel = log_mel_distance(audio_ref, audio_trt, args.sample_rate)
            worst_mel = max(worst_mel, mel)
            print(
                f"sentence {n + 1}: {len(ids)} phonemes, {z.shape[2]} frames | acoustic {z_err} "
                f"(ORT {1e3 * (t1 - t0):.0f} ms, TensorRT {1e3 * (t2 - t1):.0f} ms) | "
                f"vocoder max |da| {audio_err:.4g}, log-mel distance {mel:.4f} "
                f"(ORT {1e3 * (t4 - t3):.0f} ms, TensorRT {1e3 * (t5 - t4):.0f} ms)"
            )
            if not np.all(np.isfinite(audio_trt)):
                failures.append(f"sentence {n + 1}: TensorRT vocoder output is not finite")
    return worst_mel, failures


def _tensorrt_version() -> str | None:
    """TensorRT's version when TensorRT and pycuda are both importable; else None, having said why."""
    try:
        import tensorrt as trt

        from jetvox.engines.tensorrt import tensorrt_version

        version = tensorrt_version(trt)
        import pycuda.driver  # noqa: F401 - only checking it is there
    except ImportError as exc:
        print(
            f"verify-device: TensorRT is not usable here ({exc}).\n"
            "Run this on a Jetson with JetPack's TensorRT Python bindings (python3-libnvinfer) "
            "and pycuda (pip install -e '.[jetson]').",
            file=sys.stderr,
        )
        return None
    return version


def _build_engines(args: argparse.Namespace, info: PlatformInfo) -> dict[str, Path]:
    """The acoustic and vocoder engines for the arguments' shapes and precisions (built, or found cached)."""
    shapes = dict(
        max_phonemes=args.max_phonemes,
        opt_phonemes=args.opt_phonemes,
        chunk_frames=args.chunk_frames,
        max_frames=args.max_frames,
        overlap_frames=args.overlap_frames,
    )
    return {
        model: ensure_engine(
            onnx,
            args.out,
            model=model,
            precision=precision,
            profile=Profile.from_ranges(model, profiles_for(model, **shapes)),
            platform=info,
            workspace_bytes=args.workspace_mb << 20,
            progress=lambda line: print(f"  {line}", flush=True),
        )
        for model, onnx, precision in (
            ("acoustic", args.acoustic, args.acoustic_precision or args.precision),
            ("vocoder", args.vocoder, args.precision),
        )
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit status.

    Args:
        argv: command-line arguments (None: sys.argv[1:]).
    """
    args = _parse(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    version = _tensorrt_version()
    if version is None:
        return EXIT_NO_TENSORRT
    from jetvox.engines.tensorrt import CudaWorker

    info = detect_platform()
    print(
        f"device: {info.model or 'unknown'} | L4T {info.l4t_version} | JetPack {info.jetpack_version} | "
        f"TensorRT {version} | GPU {info.gpu_name} sm_{info.sm_version} | "
        f"fast int8 {info.fast_int8} fp16 {info.fast_fp16} | "
        f"memory {(info.total_memory_bytes or 0) / 2**30:.1f} GiB"
    )
    try:
        engines = _build_engines(args, info)
    except (BuildError, ValueError) as exc:
        print(f"verify-device: engine build failed: {exc}", file=sys.stderr)
        return EXIT_MISMATCH
    worker = CudaWorker()
    try:
        worker.start()
        worst_mel, failures = _compare(args, engines, worker)
    except EngineError as exc:
        print(f"verify-device: TensorRT could not run the engines: {exc}", file=sys.stderr)
        return EXIT_MISMATCH
    finally:
        worker.shutdown()
    if args.max_log_mel is not None and worst_mel > args.max_log_mel:
        failures.append(f"worst log-mel distance {worst_mel:.4f} exceeds --max-log-mel {args.max_log_mel}")
    for failure in failures:
        print(f"verify-device: FAIL {failure}", file=sys.stderr)
    if failures:
        return EXIT_MISMATCH
    print(f"verify-device: OK (worst log-mel distance {worst_mel:.4f})")
    return EXIT_OK


if __name__ == "__main__":  # run as `python -m jetvox.provisioning.tensorrt.verify_device` (a script path would shadow `platform`)
    sys.exit(main())
