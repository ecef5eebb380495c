"""The CUDA worker: the one thread that owns the CUDA context and keeps engine launches in flight."""

from __future__ import annotations

import atexit
import logging
import queue
import threading
from concurrent.futures import Future
from dataclasses import dataclass
from typing import (
    TYPE_CHECKING,
    Any,
    Callable,
    ClassVar,
    Protocol,
    TypeVar,
    Union,
)

from jetvox.engines.base import EngineError

if TYPE_CHECKING:
    import pycuda.driver as cuda

log = logging.getLogger(__name__)

from jetvox.engines.tensorrt.common import Finish, Outputs

T = TypeVar("T")

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
