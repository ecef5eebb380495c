"""Open a model file with the right backend, falling back to ONNX Runtime when TensorRT cannot run."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

from jetvox.engines.base import Engine, EngineError
from jetvox.engines.onnxrt import OnnxRuntimeEngine

log = logging.getLogger(__name__)


def open_engine(
    onnx_path: Path | str,
    *,
    engine_path: Path | str | None = None,
    backend: str = "auto",
    providers: Sequence[str] | None = None,
    threads: int = 0,
    spin: bool = False,
) -> Engine:
    """Load a model as an Engine.

    Args:
        onnx_path: the ONNX model; always present, it is the fallback.
        engine_path: a serialized TensorRT engine for this device, if provisioning built one.
        backend: ``auto`` (TensorRT when an engine exists and loads, else ONNX Runtime),
            ``tensorrt`` (fail if it cannot load) or ``onnxruntime``.
        providers: ONNX Runtime providers, best first; None picks automatically.
        threads: ONNX Runtime intra-op threads (0 = default).
        spin: let ONNX Runtime's idle threads busy-wait (see ``ort_session``).
    """
    if backend not in ("auto", "tensorrt", "onnxruntime"):
        raise EngineError(f"backend must be auto, tensorrt or onnxruntime, got {backend!r}")
    if backend in ("auto", "tensorrt") and engine_path is not None:
        try:
            from jetvox.engines.tensorrt import TensorRTEngine

            return TensorRTEngine(engine_path)
        except Exception as exc:  # ImportError, missing file, deserialisation failure
            if backend == "tensorrt":
                raise EngineError(f"TensorRT engine {engine_path} could not be loaded: {exc}") from exc
            log.warning(
                "TensorRT engine %s unavailable (%s); falling back to ONNX Runtime", engine_path, exc
            )
    elif backend == "tensorrt":
        raise EngineError(f"backend tensorrt asked for {onnx_path}, but no TensorRT engine was built")

    return OnnxRuntimeEngine(onnx_path, providers=providers, threads=threads, spin=spin)
