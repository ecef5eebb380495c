"""ONNX Runtime backend: CPU by default, CUDA or TensorRT providers when onnxruntime-gpu has them."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import onnxruntime as ort

from jetvox.engines.base import EngineBase, EngineError, TensorSpec, check_feeds

log = logging.getLogger(__name__)

_ORT_TYPES = {
    "tensor(float)": "float32",
    "tensor(float16)": "float16",
    "tensor(double)": "float64",
    "tensor(int64)": "int64",
    "tensor(int32)": "int32",
    "tensor(int8)": "int8",
    "tensor(uint8)": "uint8",
    "tensor(bool)": "bool",
}

# Preferred order when the provider is chosen automatically.
_AUTO_ORDER = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")


SPIN_KEY = "session.intra_op.allow_spinning"
"""ONNX Runtime's session option for busy-waiting intra-op threads."""


def ort_session(
    model: Path | bytes,
    *,
    threads: int = 0,
    providers: Sequence[str] = ("CPUExecutionProvider",),
    optimize: bool = True,
    spin: bool = False,
) -> ort.InferenceSession:
    """The one place ONNX Runtime sessions are made (runtime, provisioning and training tools alike).

    Args:
        model: an ``.onnx`` path or a serialized model.
        threads: intra-op threads (0 lets ONNX Runtime decide); one inter-op thread.
        providers: execution providers, best first.
        optimize: full graph optimisation (the runtime's), or none (to read intermediate tensors as exported).
        spin: let idle intra-op threads busy-wait for the next run. Off by default: sessions that take turns
            on the same cores (acoustic, vocoder) otherwise slow each other down.
    """
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.add_session_config_entry(SPIN_KEY, "1" if spin else "0")
    opts.graph_optimization_level = (
        ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimize else ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    )
    source = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(source, sess_options=opts, providers=list(providers))


def choose_providers(requested: Sequence[str] | None = None) -> list[str]:
    """The providers to use: ``requested`` if given (each must exist), else the best installed."""
    available = ort.get_available_providers()
    if requested:
        missing = [p for p in requested if p not in available]
        if missing:
            raise EngineError(
                f"ONNX Runtime providers {missing} are not installed; available: {available}"
            )
        return list(requested)
    return [p for p in _AUTO_ORDER if p in available] or ["CPUExecutionProvider"]


class OnnxRuntimeEngine(EngineBase):
    """One ONNX Runtime session kept for the life of the engine."""

    backend = "onnxruntime"

    def __init__(
        self,
        model: Path | str,
        providers: Sequence[str] | None = None,
        threads: int = 0,
        spin: bool = False,
    ) -> None:
        """Load ``model``.

        Args:
            model: path of an ``.onnx`` file.
            providers: ONNX Runtime execution providers, best first; None picks automatically.
            threads: intra-op threads (0 lets ONNX Runtime decide).
            spin: let idle intra-op threads busy-wait (see ``ort_session``).
        """
        path = Path(model)
        if not path.is_file():
            raise EngineError(f"model file not found: {path}")
        try:
            self._session = ort_session(path, threads=threads, providers=choose_providers(providers), spin=spin)
        except Exception as exc:  # onnxruntime raises its own exception types
            raise EngineError(f"ONNX Runtime could not load {path}: {exc}") from exc
        self.path = path
        self.providers = self._session.get_providers()
        self.inputs = [self._spec(i) for i in self._session.get_inputs()]
        self.outputs = [self._spec(o) for o in self._session.get_outputs()]
        self._output_names = [o.name for o in self.outputs]
        log.debug("loaded %s with %s", path.name, self.providers)

    @staticmethod
    def _spec(arg: object) -> TensorSpec:
        name = getattr(arg, "name")
        ort_type = getattr(arg, "type")
        if ort_type not in _ORT_TYPES:
            raise EngineError(f"tensor {name!r} has unsupported type {ort_type}")
        shape = tuple(d if isinstance(d, int) else (d or None) for d in getattr(arg, "shape"))
        return TensorSpec(name=name, dtype=_ORT_TYPES[ort_type], shape=shape)

    def infer(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self._session is None:
            raise EngineError(f"engine for {self.path.name} is closed")
        check_feeds(self.inputs, feeds)
        values = self._session.run(self._output_names, dict(feeds))
        return dict(zip(self._output_names, values))

    def close(self) -> None:
        self._session = None
