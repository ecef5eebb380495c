"""TensorRTEngine: a serialized engine behind the Engine protocol, run on the shared CUDA worker."""

from __future__ import annotations

import logging
from concurrent.futures import Future
from pathlib import Path
from typing import (
    TYPE_CHECKING,
    Mapping,
    Sequence,
)

import numpy as np

from jetvox.engines.base import EngineBase, EngineError, TensorSpec, check_feeds

if TYPE_CHECKING:
    pass

log = logging.getLogger(__name__)

from jetvox.engines.tensorrt.common import (
    DEFAULT_DYNAMIC_OUTPUT_BYTES,
    Shape,
    tensorrt_version,
)
from jetvox.engines.tensorrt.cuda_worker import CudaWorker
from jetvox.engines.tensorrt.session import _IOInfo, _Session


class TensorRTEngine(EngineBase):
    """A serialized TensorRT engine behind the Engine protocol, run on the shared CUDA worker."""

    backend = "tensorrt"

    def __init__(
        self,
        engine_path: Path | str,
        *,
        worker: CudaWorker | None = None,
        dynamic_output_bytes: int = DEFAULT_DYNAMIC_OUTPUT_BYTES,
    ) -> None:
        """Deserialise ``engine_path`` and allocate its buffers for the profile's maximum shapes.

        Raises ImportError when TensorRT or pycuda is missing and EngineError when the file is
        missing or TensorRT cannot load it (``open_engine`` then falls back to ONNX Runtime).

        Args:
            engine_path: a serialized engine built on this device (``jetvox.provisioning.tensorrt.build``).
            worker: the CUDA worker to run on; None uses ``CudaWorker.shared()``.
            dynamic_output_bytes: first allocation for outputs whose size depends on the data.
        """
        path = Path(engine_path)
        if not path.is_file():
            raise EngineError(f"TensorRT engine file not found: {path}")
        import tensorrt as trt

        tensorrt_version(trt)
        data = path.read_bytes()
        self.path = path
        self._worker = worker if worker is not None else CudaWorker.shared()
        self._session: _Session | None = self._worker.call(lambda: _Session(data, path.name, dynamic_output_bytes))
        session = self._session
        self._worker.register(session)
        self.inputs: Sequence[TensorSpec] = list(session.input_specs)
        self.outputs: Sequence[TensorSpec] = list(session.output_specs)
        self._info = list(session.input_info)
        log.debug("loaded TensorRT engine %s (%d inputs, %d outputs)", path.name, len(self.inputs), len(self.outputs))

    @property
    def profile(self) -> dict[str, tuple[Shape, Shape, Shape]]:
        """Each input's optimisation-profile (min, opt, max) shape."""
        return {i.name: (i.min, i.opt, i.max) for i in self._info}

    def _check_profile(self, feeds: Mapping[str, np.ndarray]) -> None:
        for info in self._info:
            got = tuple(feeds[info.name].shape)
            if any(g < lo or g > hi for g, lo, hi in zip(got, info.min, info.max)):
                raise EngineError(
                    f"input {info.name!r}: shape {got} is outside the engine's optimisation profile "
                    f"(min {info.min}, max {info.max}); split the input or rebuild the engine"
                )

    def _stage(self, info: _IOInfo, arr: np.ndarray) -> np.ndarray:
        """A private C-contiguous copy in the engine's dtype (int64 -> int32 on TensorRT < 10)."""
        if arr.dtype != info.engine_dtype and arr.dtype.kind in "iu" and info.engine_dtype.kind == "i":
            limits = np.iinfo(info.engine_dtype)
            if arr.size and (int(arr.min()) < limits.min or int(arr.max()) > limits.max):
                raise EngineError(f"input {info.name!r}: values do not fit the engine's {info.engine_dtype}")
        return np.array(arr, dtype=info.engine_dtype, order="C", copy=True)

    def submit(self, feeds: Mapping[str, np.ndarray]) -> Future[dict[str, np.ndarray]]:
        """Check ``feeds`` and queue one inference; the future holds the outputs.

        Args:
            feeds: one array per input, with the dtypes and ranks of ``inputs``, inside the profile.
        """
        session = self._session
        if session is None:
            raise EngineError(f"engine for {self.path.name} is closed")
        check_feeds(self.inputs, feeds)
        self._check_profile(feeds)
        staged = {info.name: self._stage(info, feeds[info.name]) for info in self._info}
        return self._worker.launch(session, lambda: session.enqueue(staged))

    def infer(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self._worker.on_worker_thread():
            raise EngineError("infer() on the CUDA worker thread would wait for itself; use submit()")
        return self.submit(feeds).result()

    def close(self) -> None:
        session, self._session = self._session, None
        if session is None:
            return

        def release() -> None:
            self._worker.drain(session)
            session.release()
            self._worker.unregister(session)

        try:
            self._worker.call(release)
        except EngineError:  # the worker has shut down, which released every registered session
            pass
