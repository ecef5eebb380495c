"""The Engine protocol and the dtype/shape check every backend applies at its boundary."""

from __future__ import annotations

from dataclasses import dataclass
from types import TracebackType
from typing import Mapping, Protocol, Sequence, TypeVar, Union, runtime_checkable

import numpy as np

from jetvox.engines.errors import JetvoxError

Dim = Union[int, str, None]


class EngineError(JetvoxError, RuntimeError):
    """A model could not be loaded or was fed tensors it does not accept."""


@dataclass(frozen=True)
class TensorSpec:
    """One named input or output of a model."""

    name: str
    """Tensor name, as in the ONNX graph."""
    dtype: str
    """numpy dtype name, e.g. ``float32`` or ``int64``."""
    shape: tuple[Dim, ...]
    """Dimensions: an int is fixed; a str or None is dynamic."""

    def describe(self) -> str:
        dims = ",".join("?" if not isinstance(d, int) else str(d) for d in self.shape)
        return f"{self.name}: {self.dtype}[{dims}]"


@runtime_checkable
class Engine(Protocol):
    """A loaded model: named numpy arrays in, named numpy arrays out."""

    inputs: Sequence[TensorSpec]
    outputs: Sequence[TensorSpec]
    backend: str

    def infer(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the model once; raises EngineError on a feed that does not match ``inputs``."""
        ...

    def close(self) -> None:
        """Release the model's resources; the engine may not be used afterwards."""
        ...

    def __enter__(self) -> "Engine": ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


def check_feeds(specs: Sequence[TensorSpec], feeds: Mapping[str, np.ndarray]) -> None:
    """Raise EngineError unless ``feeds`` has exactly the spec'd names, dtypes and ranks.

    Fixed dimensions must match exactly; dynamic ones accept any size >= 1.
    """
    expected = {s.name for s in specs}
    given = set(feeds)
    if expected != given:
        raise EngineError(
            f"expected inputs {sorted(expected)}, got {sorted(given)}"
        )
    for spec in specs:
        arr = feeds[spec.name]
        if not isinstance(arr, np.ndarray):
            raise EngineError(f"input {spec.name!r}: expected a numpy array, got {type(arr).__name__}")
        if arr.dtype != np.dtype(spec.dtype):
            raise EngineError(f"input {spec.describe()}: expected dtype {spec.dtype}, got {arr.dtype}")
        if arr.ndim != len(spec.shape):
            raise EngineError(
                f"input {spec.describe()}: expected rank {len(spec.shape)}, got shape {arr.shape}"
            )
        for axis, (want, got) in enumerate(zip(spec.shape, arr.shape)):
            if isinstance(want, int) and want > 0 and want != got:
                raise EngineError(
                    f"input {spec.describe()}: axis {axis} must be {want}, got shape {arr.shape}"
                )
            if got < 1:
                raise EngineError(f"input {spec.describe()}: axis {axis} is empty (shape {arr.shape})")


_E = TypeVar("_E", bound="EngineBase")


class EngineBase:
    """Context-manager plumbing shared by the backends."""

    inputs: Sequence[TensorSpec]
    outputs: Sequence[TensorSpec]
    backend: str = "?"

    def close(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def __enter__(self: _E) -> _E:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
