"""TensorRT backend: serialized engines run on one CUDA worker thread, with pinned buffers and a stream per engine."""

from __future__ import annotations

import atexit
import collections
import logging
import math
import queue
import re
import threading
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Mapping, Protocol, Sequence, TypeVar, Union

import numpy as np

from engines.base import EngineBase, EngineError, TensorSpec, check_feeds

if TYPE_CHECKING:
    import pycuda.driver as cuda
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


# --------------------------------------------------------------------------- the CUDA worker


class _Releasable(Protocol):
    def release(self) -> None: ...


@dataclass
class _Call:
    fn: Callable[[], Any]
    future: Future[Any]


@dataclass
class _Launch:
    owner: object
    launch: Callable[[], tuple[cuda.Event, Finish]]
    future: Future[Outputs]


@dataclass
class _Pending:
    owner: object
    event: cuda.Event
    finish: Finish
    future: Future[Outputs]


_Job = Union[_Call, _Launch]


def _fulfil(future: Future[Any], fn: Callable[[], Any]) -> None:
    """Run ``fn`` and put its result, or what it raised, into ``future``."""
    try:
        result = fn()
    except BaseException as exc:
        future.set_exception(exc)
    else:
        future.set_result(result)


class CudaWorker:
    """The one thread that owns the process's CUDA context; every pycuda and TensorRT runtime call runs on it.

    Launches are enqueued on their engine's stream without waiting and an event is recorded
    after each; futures complete when their event has been reached. The worker only blocks
    on the oldest event when no new job is waiting, so work for another engine (another
    stream) is enqueued while earlier work is still running: the acoustic model of sentence
    N+1 overlaps the vocoder chunks of sentence N. One launch per engine is in flight at a
    time (its pinned buffers are reused), so a second launch for the same engine first
    waits for the previous one.
    """

    _shared: ClassVar[CudaWorker | None] = None
    _shared_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, device: int = 0, *, name: str = "jetvox-cuda") -> None:
        """Prepare a worker for CUDA device ``device``; start() starts it.

        Args:
            device: CUDA device ordinal (Jetsons have one GPU, 0).
            name: thread name, shown in logs and debuggers.
        """
        self.device = device
        self.name = name
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._pending: list[_Pending] = []
        self._resources: dict[int, _Releasable] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._start_error: BaseException | None = None
        self._closed = False

    @classmethod
    def shared(cls) -> CudaWorker:
        """The process-wide worker, started on first use (and again after shutdown())."""
        with cls._shared_lock:
            worker = cls._shared
            if worker is None or worker.closed:
                worker = cls()
                worker.start()
                atexit.register(worker.shutdown)
                cls._shared = worker
            return worker

    @property
    def closed(self) -> bool:
        """True once shutdown() was called or the CUDA context could not be created."""
        return self._closed

    def on_worker_thread(self) -> bool:
        """Whether the caller is the worker thread itself."""
        return self._thread is not None and threading.current_thread() is self._thread

    def start(self) -> None:
        """Start the thread and create the CUDA context; EngineError if CUDA cannot be used."""
        with self._lock:
            if self._thread is None and not self._closed:
                self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                self._thread.start()
        if self._thread is not None:
            self._ready.wait()
        if self._start_error is not None:
            raise EngineError(f"CUDA could not be initialised: {self._start_error}") from self._start_error
        if self._thread is None:
            raise EngineError("CUDA worker was shut down before it started")

    def shutdown(self, wait: bool = True) -> None:
        """Finish the work in flight, free every engine's buffers, pop the CUDA context and stop."""
        with self._lock:
            already = self._closed
            self._closed = True
            thread = self._thread
        if not already and thread is not None and self._start_error is None:
            self._jobs.put(None)
        if wait and thread is not None and threading.current_thread() is not thread:
            thread.join()
        with CudaWorker._shared_lock:
            if CudaWorker._shared is self:
                CudaWorker._shared = None

    def run_soon(self, fn: Callable[[], T]) -> Future[T]:
        """Run ``fn`` on the worker thread after the jobs already queued."""
        future: Future[T] = Future()
        self._put(_Call(fn, future))
        return future

    def call(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on the worker thread and return its result (directly when already on it)."""
        if self.on_worker_thread():
            return fn()
        return self.run_soon(fn).result()

    def launch(self, owner: object, enqueue: Callable[[], tuple[cuda.Event, Finish]]) -> Future[Outputs]:
        """Queue asynchronous GPU work for ``owner``.

        Args:
            owner: the engine state the work belongs to; its previous launch is waited for first.
            enqueue: runs on the worker, enqueues the work on the owner's stream without
                waiting, and returns the event recorded after it and a function that reads
                the results once the event is reached.
        """
        future: Future[Outputs] = Future()
        self._put(_Launch(owner, enqueue, future))
        return future

    def register(self, resource: _Releasable) -> None:
        """Have ``resource.release()`` run on the worker before the context goes away."""
        with self._lock:
            self._resources[id(resource)] = resource

    def unregister(self, resource: _Releasable) -> None:
        """Forget a resource registered with register()."""
        with self._lock:
            self._resources.pop(id(resource), None)

    def drain(self, owner: object) -> None:
        """Wait for ``owner``'s launches in flight and complete their futures (worker thread only)."""
        if not self.on_worker_thread():
            raise RuntimeError("CudaWorker.drain() must run on the worker thread")
        for pending in [p for p in self._pending if p.owner is owner]:
            self._pending.remove(pending)
            self._settle(pending)

    # -- worker thread --------------------------------------------------------------------

    def _put(self, job: _Job) -> None:
        with self._lock:
            if self._closed:
                raise EngineError("the CUDA worker has shut down")
            if self._thread is None:
                raise EngineError("the CUDA worker has not been started")
            self._jobs.put(job)

    def _run(self) -> None:
        try:
            import pycuda.driver as cuda

            cuda.init()
            # Blocking sync: waiting for the GPU sleeps instead of spinning a CPU core
            # (a Jetson has few, and the phonemiser and audio need them).
            context = cuda.Device(self.device).make_context(cuda.ctx_flags.SCHED_BLOCKING_SYNC)
        except BaseException as exc:  # ImportError, pycuda.driver.Error
            self._start_error = exc
            self._closed = True
            self._ready.set()
            return
        log.debug("CUDA context created on device %d by %s", self.device, self.name)
        self._ready.set()
        try:
            self._loop()
        finally:
            self._teardown(context)

    def _loop(self) -> None:
        while True:
            job: _Job | None
            if self._pending:
                try:
                    job = self._jobs.get_nowait()
                except queue.Empty:
                    self._wait_oldest()
                    continue
            else:
                job = self._jobs.get()
            if job is None:
                return
            self._handle(job)
            self._reap()

    def _handle(self, job: _Job) -> None:
        if not job.future.set_running_or_notify_cancel():
            return
        if isinstance(job, _Call):
            _fulfil(job.future, job.fn)
            return
        self.drain(job.owner)
        try:
            event, finish = job.launch()
        except BaseException as exc:
            job.future.set_exception(exc)
        else:
            self._pending.append(_Pending(job.owner, event, finish, job.future))

    def _reap(self) -> None:
        """Complete every launch whose event has been reached, without waiting."""
        still: list[_Pending] = []
        for pending in self._pending:
            try:
                done = pending.event.query()
            except Exception as exc:
                self._complete(pending, exc)
                continue
            if done:
                self._complete(pending)
            else:
                still.append(pending)
        self._pending = still

    def _wait_oldest(self) -> None:
        self._settle(self._pending.pop(0))
        self._reap()

    def _settle(self, pending: "_Pending") -> None:
        """Block until ``pending``'s event has fired, then complete its future (with the error, if any)."""
        try:
            pending.event.synchronize()
        except Exception as exc:
            self._complete(pending, exc)
        else:
            self._complete(pending)

    @staticmethod
    def _complete(pending: _Pending, error: BaseException | None = None) -> None:
        if error is not None:
            pending.future.set_exception(EngineError(f"GPU work failed: {error}"))
            return
        _fulfil(pending.future, pending.finish)

    def _teardown(self, context: cuda.Context) -> None:
        while self._pending:
            self._wait_oldest()
        with self._lock:
            resources = list(self._resources.values())
            self._resources.clear()
        for resource in resources:
            try:
                resource.release()
            except Exception:
                log.exception("releasing TensorRT resources failed")
        try:
            context.pop()
            context.detach()
        except Exception:
            log.exception("popping the CUDA context failed")
        log.debug("CUDA worker %s stopped", self.name)


# --------------------------------------------------------------------------- one engine's GPU state


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
        self.major = version_tuple(tensorrt_version(trt))[0]
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


# --------------------------------------------------------------------------- the Engine


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
            engine_path: a serialized engine built on this device (``provisioning.trt_build``).
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
