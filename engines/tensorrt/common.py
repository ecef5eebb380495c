"""TensorRT helpers shared by the runtime and the builder: version checks, the logger and its error log, shapes."""

from __future__ import annotations

import collections
import logging
import math
import re
import threading
from typing import (
    TYPE_CHECKING,
    Callable,
    Sequence,
    TypeVar,
)

import numpy as np

if TYPE_CHECKING:
    import tensorrt as trt

log = logging.getLogger(__name__)

T = TypeVar("T")
Shape = tuple[int, ...]
Outputs = dict[str, np.ndarray]
Finish = Callable[[], Outputs]

DEFAULT_DYNAMIC_OUTPUT_BYTES = 16 << 20
"""First allocation for an output whose size depends on the data (grown on demand)."""


# --------------------------------------------------------------------------- versions, logging


def tensorrt_version(trt_module: object) -> str:
    """``trt_module.__version__``; ImportError when the module is not a real TensorRT.

    ``pip install tensorrt-stubs`` leaves a ``tensorrt`` directory holding only ``.pyi``
    files, which Python imports as an empty namespace package: treat it as absent.
    """
    version = getattr(trt_module, "__version__", None)
    if not isinstance(version, str) or not hasattr(trt_module, "Runtime"):
        raise ImportError("TensorRT is not installed (found only a stub or namespace package named tensorrt)")
    return version


def version_tuple(version: str) -> tuple[int, ...]:
    """``"8.6.2.3"`` -> ``(8, 6, 2, 3)``; non-numeric suffixes are ignored."""
    parts = tuple(int(p) for p in re.findall(r"\d+", version))
    if not parts:
        raise ValueError(f"not a version string: {version!r}")
    return parts


SUPPORTED = "TensorRT 8.6 (JetPack 6.0) and 10.x (JetPack 6.1 and 6.2 ship 10.3)"
"""The TensorRT versions jetvox runs on; both are tested against the fake TensorRT (tests/trt_fake.py)."""


def unsupported_reason(version: str) -> str | None:
    """Why TensorRT ``version`` cannot be used, or None when it is supported."""
    major_minor = version_tuple(version)[:2]
    if major_minor == (8, 6) or major_minor[0] == 10:
        return None
    return f"TensorRT {version} is not supported: jetvox supports {SUPPORTED}"


class _ErrorLog:
    """The last errors TensorRT logged, so failures can say why."""

    def __init__(self, keep: int = 32) -> None:
        self._lock = threading.Lock()
        self._errors: collections.deque[str] = collections.deque(maxlen=keep)

    def add(self, message: str) -> None:
        with self._lock:
            self._errors.append(message)

    def clear(self) -> None:
        with self._lock:
            self._errors.clear()

    def take(self) -> list[str]:
        """The errors since the last clear(), oldest first; clears them."""
        with self._lock:
            out = list(self._errors)
            self._errors.clear()
            return out


TRT_ERRORS = _ErrorLog()
"""Errors logged by TensorRT through tensorrt_logger() (shared by the runtime and the builder)."""

_logger_lock = threading.Lock()
_trt_logger: trt.ILogger | None = None


def tensorrt_logger() -> trt.ILogger:
    """The process-wide TensorRT logger: forwards to ``logging`` and keeps errors in TRT_ERRORS."""
    global _trt_logger
    with _logger_lock:
        if _trt_logger is None:
            import tensorrt as trt

            tensorrt_version(trt)
            trt_log = log.getChild("trt")  # TensorRT's own messages, separately filterable

            class _Logger(trt.ILogger):
                def __init__(self) -> None:
                    trt.ILogger.__init__(self)

                def log(self, severity: trt.ILogger.Severity, msg: str) -> None:
                    # Severity: 0 internal error, 1 error, 2 warning, 3 info, 4 verbose.
                    level = int(severity)
                    if level <= 1:
                        TRT_ERRORS.add(msg)
                        trt_log.error("%s", msg)
                    elif level == 2:
                        trt_log.warning("%s", msg)
                    elif level == 3:
                        trt_log.debug("%s", msg)

            _trt_logger = _Logger()
        return _trt_logger


def _reason(default: str) -> str:
    errors = TRT_ERRORS.take()
    return "; ".join(errors[-3:]) if errors else default


def _dims(dims: trt.Dims | Sequence[int]) -> Shape:
    return tuple(int(dims[i]) for i in range(len(dims)))


def _volume(shape: Sequence[int]) -> int:
    return int(math.prod(shape))
