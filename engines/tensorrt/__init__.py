"""TensorRT backend: serialized engines run on one CUDA worker thread, with pinned buffers and a stream per engine.

Import tensorrt and pycuda only in here: ``common`` (versions, logger), ``cuda_worker`` (the thread that owns
the CUDA context), ``session`` (one engine's GPU state), ``engine`` (the Engine implementation).
"""

from jetvox.engines.tensorrt.common import (
    TRT_ERRORS,
    tensorrt_logger,
    tensorrt_version,
    version_tuple,
)
from jetvox.engines.tensorrt.cuda_worker import CudaWorker
from jetvox.engines.tensorrt.engine import TensorRTEngine

__all__ = ["TRT_ERRORS", "CudaWorker", "TensorRTEngine", "tensorrt_logger", "tensorrt_version", "version_tuple"]
