"""One engine's GPU state: deserialised engine, execution context, pinned and device buffers, output allocator."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import (
    TYPE_CHECKING,
    Any,
    Mapping,
)

import numpy as np

from jetvox.engines.base import EngineError, TensorSpec

if TYPE_CHECKING:
    import pycuda.driver as cuda
    import tensorrt as trt

log = logging.getLogger(__name__)

from jetvox.engines.tensorrt.common import (
    TRT_ERRORS,
    Finish,
    Outputs,
    Shape,
    _dims,
    _reason,
    _volume,
    tensorrt_logger,
    tensorrt_version,
    unsupported_reason,
    version_tuple,
)


@dataclass
class _Buffer:
    """A tensor's pinned host and device memory, sized for the profile maximum."""

    name: str
    dtype: np.dtype[Any]
    """dtype on the GPU (int32 where the model says int64 on TensorRT < 10)."""
    host: np.ndarray
    device: cuda.DeviceAllocation
    capacity: int
    """Elements both buffers hold."""
    dynamic: bool = False
    """Output whose shape depends on the data: written through an output allocator."""


@dataclass(frozen=True)
class _IOInfo:
    """What the caller's thread needs to know about an input: no GPU objects."""

    name: str
    engine_dtype: np.dtype[Any]
    min: Shape
    opt: Shape
    max: Shape


class _Session:
    """Everything one engine holds on the GPU; created, used and released on the worker thread only."""

    def __init__(self, data: bytes, label: str, dynamic_output_bytes: int) -> None:
        import pycuda.driver as cuda
        import tensorrt as trt

        self._cuda = cuda
        self._trt = trt
        self.label = label
        # TensorRT 10 has int64 I/O; before it (8.5/8.6, JetPack 5 and 6.0) the ONNX parser
        # narrows int64 inputs and outputs to int32, so they are cast at the boundary.
        version = tensorrt_version(trt)
        why = unsupported_reason(version)
        if why is not None:
            raise EngineError(why)
        self.major = version_tuple(version)[0]
        logger = tensorrt_logger()
        TRT_ERRORS.clear()
        self.runtime = trt.Runtime(logger)
        engine = self.runtime.deserialize_cuda_engine(data)
        if engine is None:
            raise EngineError(
                f"TensorRT {trt.__version__} could not deserialise {label}: "
                + _reason("no reason logged (built by another TensorRT version or for another GPU?)")
            )
        self.engine = engine
        context = engine.create_execution_context()
        if context is None:
            raise EngineError(f"no execution context for {label}: " + _reason("out of GPU memory?"))
        self.context = context
        self.stream = cuda.Stream()
        self.event = cuda.Event(cuda.event_flags.BLOCKING_SYNC | cuda.event_flags.DISABLE_TIMING)
        self.inputs: list[_Buffer] = []
        self.outputs: list[_Buffer] = []
        self.input_info: list[_IOInfo] = []
        self.input_specs: list[TensorSpec] = []
        self.output_specs: list[TensorSpec] = []
        self._out_dtypes: dict[str, np.dtype[Any]] = {}
        self._dynamic_shapes: dict[str, Shape] = {}
        self._allocator: trt.IOutputAllocator | None = None
        self._released = False
        try:
            self._allocate(dynamic_output_bytes)
        except BaseException:
            self.release()
            raise

    # -- setup ----------------------------------------------------------------------------

    def _np_dtype(self, name: str) -> np.dtype[Any]:
        trt_dtype = self.engine.get_tensor_dtype(name)
        try:
            return np.dtype(self._trt.nptype(trt_dtype))
        except (TypeError, KeyError) as exc:
            raise EngineError(f"{self.label}: tensor {name!r} has type {trt_dtype}, which has no numpy equivalent") from exc

    def _public_dtype(self, dtype: np.dtype[Any]) -> np.dtype[Any]:
        if self.major < 10 and dtype == np.dtype(np.int32):
            return np.dtype(np.int64)
        return dtype

    def _profile(self, name: str, shape: Shape) -> tuple[Shape, Shape, Shape]:
        if all(d >= 0 for d in shape):
            return shape, shape, shape
        if self.major >= 10 or hasattr(self.engine, "get_tensor_profile_shape"):
            found = self.engine.get_tensor_profile_shape(name, 0)
        else:  # TensorRT < 8.5: only the older spelling (profile index first)
            found = getattr(self.engine, "get_profile_shape")(0, name)
        lo, opt, hi = (_dims(d) for d in found)
        return lo, opt, hi

    def _allocate(self, dynamic_output_bytes: int) -> None:
        trt, cuda = self._trt, self._cuda
        engine = self.engine
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        in_names = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        out_names = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        for name in in_names:
            dtype = self._np_dtype(name)
            declared = _dims(engine.get_tensor_shape(name))
            lo, opt, hi = self._profile(name, declared)
            capacity = max(_volume(hi), 1)
            host = cuda.pagelocked_empty(capacity, dtype)
            device = cuda.mem_alloc(capacity * dtype.itemsize)
            self.inputs.append(_Buffer(name, dtype, host, device, capacity))
            self.input_info.append(_IOInfo(name, dtype, lo, opt, hi))
            spec_shape = tuple(d if d >= 0 else None for d in declared)
            self.input_specs.append(TensorSpec(name, self._public_dtype(dtype).name, spec_shape))
            if not self.context.set_input_shape(name, hi):
                raise EngineError(f"{self.label}: input {name!r} rejects its own profile maximum {hi}")
        for name in out_names:
            dtype = self._np_dtype(name)
            declared = _dims(engine.get_tensor_shape(name))
            at_max = _dims(self.context.get_tensor_shape(name))
            dynamic = any(d < 0 for d in at_max)
            if dynamic:
                # The size depends on the data (e.g. frames from predicted durations):
                # TensorRT asks an output allocator for memory during execute_async_v3.
                capacity = max(dynamic_output_bytes // dtype.itemsize, 1)
                if self._allocator is None:
                    self._allocator = _make_output_allocator(self)
                if not self.context.set_output_allocator(name, self._allocator):
                    raise EngineError(f"{self.label}: output {name!r} refused an output allocator")
            else:
                capacity = max(_volume(at_max), 1)
            host = cuda.pagelocked_empty(capacity, dtype)
            device = cuda.mem_alloc(capacity * dtype.itemsize)
            self.outputs.append(_Buffer(name, dtype, host, device, capacity, dynamic))
            self._out_dtypes[name] = self._public_dtype(dtype)
            spec_shape = tuple(d if d >= 0 else None for d in declared)
            self.output_specs.append(TensorSpec(name, self._out_dtypes[name].name, spec_shape))
        log.debug(
            "%s: %d inputs, %d outputs, %d bytes of device buffers",
            self.label,
            len(self.inputs),
            len(self.outputs),
            sum(b.capacity * b.dtype.itemsize for b in self.inputs + self.outputs),
        )

    # -- output allocator callbacks (called from execute_async_v3, on the worker) ----------

    def grow_output(self, name: str, nbytes: int) -> int:
        """Device address with room for ``nbytes`` of output ``name``, reallocating if needed."""
        buf = next(b for b in self.outputs if b.name == name)
        if nbytes > buf.capacity * buf.dtype.itemsize:
            elements = -(-nbytes // buf.dtype.itemsize)
            log.warning(
                "%s: output %s needs %d bytes, more than the %d allocated; growing its buffers",
                self.label,
                name,
                nbytes,
                buf.capacity * buf.dtype.itemsize,
            )
            buf.device.free()
            buf.device = self._cuda.mem_alloc(elements * buf.dtype.itemsize)
            buf.host = self._cuda.pagelocked_empty(elements, buf.dtype)
            buf.capacity = elements
        return int(buf.device)

    def notify_shape(self, name: str, shape: Shape) -> None:
        """Record the actual shape of a data-dependent output."""
        self._dynamic_shapes[name] = shape

    # -- per call -------------------------------------------------------------------------

    def enqueue(self, feeds: Mapping[str, np.ndarray]) -> tuple[cuda.Event, Finish]:
        """Enqueue one inference on this engine's stream without waiting for it."""
        if self._released:
            raise EngineError(f"engine {self.label} is closed")
        cuda, ctx = self._cuda, self.context
        try:
            for buf in self.inputs:
                shape = feeds[buf.name].shape
                if not ctx.set_input_shape(buf.name, shape):
                    raise EngineError(f"{self.label}: TensorRT rejected shape {shape} for input {buf.name!r}")
            shapes: dict[str, Shape] = {}
            for buf in self.outputs:
                if buf.dynamic:
                    continue
                shape = _dims(ctx.get_tensor_shape(buf.name))
                if any(d < 0 for d in shape) or _volume(shape) > buf.capacity:
                    raise EngineError(
                        f"{self.label}: output {buf.name!r} has shape {shape}, which does not fit the "
                        f"{buf.capacity} elements allocated for the profile maximum"
                    )
                shapes[buf.name] = shape
            for buf in self.inputs + self.outputs:
                if not buf.dynamic:
                    ctx.set_tensor_address(buf.name, int(buf.device))
            for buf in self.inputs:
                arr = feeds[buf.name]
                staged = buf.host[: arr.size]
                staged[...] = arr.reshape(-1)
                cuda.memcpy_htod_async(buf.device, staged, self.stream)
            self._dynamic_shapes.clear()
            if not ctx.execute_async_v3(self.stream.handle):
                raise EngineError(f"{self.label}: execute_async_v3 failed: " + _reason("no reason logged"))
            for buf in self.outputs:
                if buf.dynamic:
                    if buf.name not in self._dynamic_shapes:
                        raise EngineError(f"{self.label}: TensorRT did not report the shape of output {buf.name!r}")
                    shapes[buf.name] = self._dynamic_shapes[buf.name]
                cuda.memcpy_dtoh_async(buf.host[: _volume(shapes[buf.name])], buf.device, self.stream)
            self.event.record(self.stream)
        except BaseException:
            try:  # let copies already queued from the pinned buffers land before they are reused
                self.stream.synchronize()
            except Exception:
                log.exception("%s: stream synchronisation after a failed launch failed", self.label)
            raise

        views = {buf.name: (buf.host, shapes[buf.name]) for buf in self.outputs}

        def finish() -> Outputs:
            return {
                name: host[: _volume(shape)].reshape(shape).astype(self._out_dtypes[name], copy=True)
                for name, (host, shape) in views.items()
            }

        return self.event, finish

    def release(self) -> None:
        """Free the device buffers and drop the TensorRT objects (idempotent; worker thread)."""
        if self._released:
            return
        self._released = True
        for buf in self.inputs + self.outputs:
            try:
                buf.device.free()
            except Exception:
                log.exception("%s: freeing %s failed", self.label, buf.name)
        self.inputs, self.outputs = [], []
        self._allocator = None
        # While the context is still current: execution context before engine before runtime,
        # then the stream and event (pycuda objects outliving their context warn when collected).
        for attr in ("context", "engine", "runtime", "event", "stream"):
            if hasattr(self, attr):
                delattr(self, attr)


def _make_output_allocator(session: _Session) -> trt.IOutputAllocator:
    import tensorrt as trt

    class _OutputAllocator(trt.IOutputAllocator):
        """Hands TensorRT the session's buffer for a data-dependent output (growing it if short)."""

        def __init__(self) -> None:
            trt.IOutputAllocator.__init__(self)

        def reallocate_output(self, tensor_name: str, memory: object, size: int, alignment: int) -> int:
            return session.grow_output(tensor_name, size)

        # TensorRT 10 calls the _async variant (the plain one is deprecated there); 8.x the plain one.
        def reallocate_output_async(
            self, tensor_name: str, memory: object, size: int, alignment: int, stream: int
        ) -> int:
            return session.grow_output(tensor_name, size)

        def notify_shape(self, tensor_name: str, shape: trt.Dims) -> None:
            session.notify_shape(tensor_name, _dims(shape))

    return _OutputAllocator()
