"""A recording FAKE of tensorrt and pycuda.driver: TensorRT, pycuda and a GPU cannot run here or in CI."""

# Nothing here is TensorRT or CUDA. The tests put these fake modules in sys.modules
# (monkeypatch.setitem) in place of ``tensorrt``, ``pycuda`` and ``pycuda.driver``. The fake
# records every call (name, arguments, calling thread) so tests can check call order, streams,
# bytes allocated and threads; keeps "device memory" in bytearrays; and computes trivial
# stand-in outputs so data can be followed through the pinned and device buffers. GPU work
# "finishes" only when its event (or stream) is synchronised, so overlap is observable.

from __future__ import annotations

import enum
import json
import threading
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

MAGIC = b"FAKETRT\n"


@dataclass
class Call:
    """One recorded call."""

    name: str
    args: tuple[Any, ...]
    thread: int


class Recorder:
    """Every call the fake saw, in order."""

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self._lock = threading.Lock()

    def add(self, name: str, *args: Any) -> None:
        with self._lock:
            self.calls.append(Call(name, args, threading.get_ident()))

    def named(self, *names: str) -> list[Call]:
        return [c for c in self.calls if c.name in names]

    def index(self, name: str, start: int = 0, **match: Any) -> int:
        """Position of the first call ``name`` at or after ``start`` (optionally with args[0] == match['arg0'])."""
        for i in range(start, len(self.calls)):
            c = self.calls[i]
            if c.name == name and ("arg0" not in match or (c.args and c.args[0] == match["arg0"])):
                return i
        raise AssertionError(f"no call {name} {match} after {start}: {[c.name for c in self.calls[start:]]}")

    def mark(self) -> int:
        return len(self.calls)


# --------------------------------------------------------------------------- engine descriptions


def vocoder_spec(max_frames: int = 100, channels: int = 192, hop: int = 256) -> dict[str, Any]:
    """A fake vocoder engine: z [1,C,1..max_frames] -> audio [1, T*hop] (audio = z[0,0] repeated)."""
    return {
        "model": "vocoder",
        "hop": hop,
        "tensors": [
            {
                "name": "z",
                "mode": "INPUT",
                "dtype": "FLOAT",
                "shape": [1, channels, -1],
                "profile": [[1, channels, 1], [1, channels, 48], [1, channels, max_frames]],
            },
            {"name": "audio", "mode": "OUTPUT", "dtype": "FLOAT", "shape": [1, -1]},
        ],
    }


def acoustic_spec(
    max_phonemes: int = 400, id_dtype: str = "INT64", dds: bool = False, channels: int = 192
) -> dict[str, Any]:
    """A fake acoustic engine: 2 frames per phoneme, z[0, c, t] = ids[t // 2] + c / 1000.

    ``id_dtype`` INT32 mimics TensorRT 8.x narrowing the ONNX int64 inputs; ``dds`` makes the
    frame count data-dependent (reported through the output allocator, as for a real Piper model).
    """
    return {
        "model": "acoustic",
        "dds": dds,
        "tensors": [
            {
                "name": "input",
                "mode": "INPUT",
                "dtype": id_dtype,
                "shape": [1, -1],
                "profile": [[1, 1], [1, 80], [1, max_phonemes]],
            },
            {"name": "input_lengths", "mode": "INPUT", "dtype": id_dtype, "shape": [1]},
            {"name": "scales", "mode": "INPUT", "dtype": "FLOAT", "shape": [3]},
            {"name": "z", "mode": "OUTPUT", "dtype": "FLOAT", "shape": [1, channels, -1]},
            {"name": "durations", "mode": "OUTPUT", "dtype": "FLOAT", "shape": [1, -1]},
        ],
    }


def write_engine(path: Path, spec: dict[str, Any]) -> Path:
    """Write a fake serialized engine the fake Runtime can deserialise."""
    path.write_bytes(MAGIC + json.dumps(spec).encode())
    return path


def acoustic_outputs(ids: np.ndarray, channels: int) -> tuple[np.ndarray, np.ndarray]:
    """What the fake acoustic engine computes (for assertions)."""
    p = ids.shape[1]
    frames = np.repeat(ids[0].astype(np.float32), 2)
    z = (frames[None, :] + (np.arange(channels, dtype=np.float32) / 1000.0)[:, None])[None]
    return z.astype(np.float32), np.full((1, p), 2.0, dtype=np.float32)


def vocoder_outputs(z: np.ndarray, hop: int = 256) -> np.ndarray:
    """What the fake vocoder engine computes (for assertions)."""
    return np.repeat(z[0, 0], hop)[None].astype(np.float32)


_ORT_TO_TRT = {"tensor(float)": "FLOAT", "tensor(int64)": "INT64", "tensor(int32)": "INT32", "tensor(bool)": "BOOL"}


def onnx_spec(path: str, profile: dict[str, tuple[tuple[int, ...], ...]], major: int) -> dict[str, Any] | None:
    """A fake engine that runs a real ONNX model with ONNX Runtime (None when ``path`` is no ONNX model).

    Its tensors are the model's, int64 narrowed to int32 before TensorRT 10 as the real parser does, with
    the profile the build set; output shapes come from the named axes they share with the inputs.
    """
    import onnxruntime as ort

    try:
        sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    except Exception:
        return None
    tensors = []
    for mode, args in (("INPUT", sess.get_inputs()), ("OUTPUT", sess.get_outputs())):
        for a in args:
            dtype = _ORT_TO_TRT[a.type]
            if dtype == "INT64" and major < 10:
                dtype = "INT32"
            t = {"name": a.name, "mode": mode, "dtype": dtype, "shape": [d if isinstance(d, int) else -1 for d in a.shape],
                 "symbols": [d if isinstance(d, str) else None for d in a.shape]}
            if mode == "INPUT":
                t["profile"] = [list(s) for s in profile[a.name]]
            tensors.append(t)
    return {"model": "onnx", "onnx": path, "tensors": tensors}


# --------------------------------------------------------------------------- the fake GPU


@dataclass
class FakeGPU:
    """Settings and state shared by the fake modules."""

    trt_version: str = "10.3.0"
    rec: Recorder = field(default_factory=Recorder)
    memory: dict[int, Any] = field(default_factory=dict)
    fast_int8: bool = True
    fast_fp16: bool = True
    build_fails: bool = False
    parse_ok: bool = True
    network_has_qdq: bool = True
    next_address: int = 0x10000
    next_stream: int = 0x5000
    auto_complete: bool = False
    """When True, GPU work is finished as soon as it is queried (no waiting needed)."""
    output_error: float = 0.0
    """Noise of this size relative to each float output's peak, added by an ONNX-backed engine (a mis-built
    engine, for verify-device)."""

    @property
    def major(self) -> int:
        return int(self.trt_version.split(".")[0])


class _Enum(enum.IntEnum):
    pass


def make_fakes(trt_version: str = "10.3.0") -> Fakes:
    """Fresh fake ``tensorrt``, ``pycuda`` and ``pycuda.driver`` modules sharing one FakeGPU."""
    gpu = FakeGPU(trt_version=trt_version)
    return Fakes(gpu, _make_trt(gpu), *_make_pycuda(gpu))


@dataclass
class Fakes:
    """The fake modules and their shared state."""

    gpu: FakeGPU
    trt: types.ModuleType
    pycuda: types.ModuleType
    cuda: types.ModuleType

    @property
    def rec(self) -> Recorder:
        return self.gpu.rec

    def install(self, monkeypatch: Any) -> None:
        """Put the fakes in sys.modules for the test (and forget any cached TensorRT logger)."""
        import sys

        import jetvox.engines.tensorrt.common as etrt

        monkeypatch.setitem(sys.modules, "tensorrt", self.trt)
        monkeypatch.setitem(sys.modules, "pycuda", self.pycuda)
        monkeypatch.setitem(sys.modules, "pycuda.driver", self.cuda)
        monkeypatch.setattr(etrt, "_trt_logger", None)


# --------------------------------------------------------------------------- pycuda.driver


def _make_pycuda(gpu: FakeGPU) -> tuple[types.ModuleType, types.ModuleType]:
    rec = gpu.rec
    cuda = types.ModuleType("pycuda.driver")
    cuda.__doc__ = "FAKE pycuda.driver (tests/trt_fake.py)"

    class Error(Exception):
        pass

    class ctx_flags:  # noqa: N801 - pycuda's spelling
        SCHED_AUTO = 0
        SCHED_SPIN = 1
        SCHED_YIELD = 2
        SCHED_BLOCKING_SYNC = 4

    class event_flags:  # noqa: N801
        DEFAULT = 0
        BLOCKING_SYNC = 1
        DISABLE_TIMING = 2

    def init(flags: int = 0) -> None:
        rec.add("cuda.init", flags)

    class Context:
        def pop(self) -> None:
            rec.add("context.pop")

        def detach(self) -> None:
            rec.add("context.detach")

    class Device:
        def __init__(self, number: int) -> None:
            self.number = number

        def name(self) -> str:
            return "Orin"

        def compute_capability(self) -> tuple[int, int]:
            return (8, 7)

        def total_memory(self) -> int:
            return 8 << 30

        def make_context(self, flags: int = 0) -> Context:
            rec.add("make_context", flags)
            return Context()

    class Stream:
        def __init__(self, flags: int = 0) -> None:
            self.handle = gpu.next_stream
            gpu.next_stream += 1
            self.events: list[Event] = []
            rec.add("Stream", self.handle)

        def synchronize(self) -> None:
            rec.add("stream.synchronize", self.handle)
            for e in self.events:
                e.done = True

    class Event:
        def __init__(self, flags: int = 0) -> None:
            self.flags = flags
            self.done = True
            self.stream: Stream | None = None
            rec.add("Event", flags)

        def record(self, stream: Stream | None = None) -> Event:
            rec.add("event.record", stream.handle if stream else 0)
            self.done = False
            self.stream = stream
            if stream is not None:
                stream.events.append(self)
            return self

        def query(self) -> bool:
            rec.add("event.query", self.stream.handle if self.stream else 0)
            if gpu.auto_complete:
                self.done = True
            return self.done

        def synchronize(self) -> Event:
            rec.add("event.synchronize", self.stream.handle if self.stream else 0)
            self.done = True
            return self

    class DeviceAllocation:
        def __init__(self, nbytes: int) -> None:
            self.address = gpu.next_address
            gpu.next_address += max(nbytes, 1) + 0x100
            self.buf = bytearray(nbytes)
            gpu.memory[self.address] = self

        def __int__(self) -> int:
            return self.address

        def free(self) -> None:
            rec.add("mem_free", self.address, len(self.buf))
            gpu.memory.pop(self.address, None)

    def mem_alloc(nbytes: int) -> DeviceAllocation:
        if nbytes <= 0:
            raise Error("cuMemAlloc failed: invalid argument")
        alloc = DeviceAllocation(nbytes)
        rec.add("mem_alloc", nbytes, alloc.address)
        return alloc

    def pagelocked_empty(shape: Any, dtype: Any, order: str = "C", mem_flags: int = 0) -> np.ndarray:
        rec.add("pagelocked_empty", shape, np.dtype(dtype))
        return np.zeros(shape, dtype=dtype, order=order)

    def _alloc(ptr: Any) -> DeviceAllocation:
        alloc = gpu.memory.get(int(ptr))
        if alloc is None:
            raise Error(f"invalid device pointer {int(ptr):#x}")
        return alloc

    def memcpy_htod_async(dest: Any, src: np.ndarray, stream: Stream | None = None) -> None:
        rec.add("htod", int(dest), src.nbytes, stream.handle if stream else 0)
        assert isinstance(src, np.ndarray) and src.flags.c_contiguous, "source must be a C-contiguous array"
        alloc = _alloc(dest)
        if src.nbytes > len(alloc.buf):
            raise Error(f"htod of {src.nbytes} bytes overflows an allocation of {len(alloc.buf)}")
        alloc.buf[: src.nbytes] = src.tobytes()

    def memcpy_dtoh_async(dest: np.ndarray, src: Any, stream: Stream | None = None) -> None:
        rec.add("dtoh", int(src), dest.nbytes, stream.handle if stream else 0)
        alloc = _alloc(src)
        if dest.nbytes > len(alloc.buf):
            raise Error(f"dtoh of {dest.nbytes} bytes overflows an allocation of {len(alloc.buf)}")
        dest[...] = np.frombuffer(bytes(alloc.buf[: dest.nbytes]), dtype=dest.dtype).reshape(dest.shape)

    for name, obj in dict(
        Error=Error,
        LogicError=Error,
        ctx_flags=ctx_flags,
        event_flags=event_flags,
        init=init,
        Context=Context,
        Device=Device,
        Stream=Stream,
        Event=Event,
        DeviceAllocation=DeviceAllocation,
        mem_alloc=mem_alloc,
        pagelocked_empty=pagelocked_empty,
        memcpy_htod_async=memcpy_htod_async,
        memcpy_dtoh_async=memcpy_dtoh_async,
    ).items():
        setattr(cuda, name, obj)
    package = types.ModuleType("pycuda")
    package.__doc__ = "FAKE pycuda (tests/trt_fake.py)"
    package.__path__ = []
    package.driver = cuda  # type: ignore[attr-defined]
    return package, cuda


# --------------------------------------------------------------------------- tensorrt


def _make_trt(gpu: FakeGPU) -> types.ModuleType:
    rec = gpu.rec
    trt = types.ModuleType("tensorrt")
    trt.__doc__ = "FAKE tensorrt (tests/trt_fake.py)"
    trt.__version__ = gpu.trt_version  # type: ignore[attr-defined]

    DataType = _Enum("DataType", "FLOAT HALF INT8 INT32 BOOL UINT8 INT64 FP8 BF16", start=0)
    np_types: dict[Any, Any] = {
        DataType.FLOAT: np.float32,
        DataType.HALF: np.float16,
        DataType.INT8: np.int8,
        DataType.INT32: np.int32,
        DataType.BOOL: np.bool_,
        DataType.UINT8: np.uint8,
        DataType.INT64: np.int64,
    }

    def nptype(dtype: Any) -> Any:
        if dtype not in np_types:
            raise TypeError(f"could not resolve TensorRT datatype {dtype} to an equivalent numpy datatype")
        return np_types[dtype]

    TensorIOMode = _Enum("TensorIOMode", "NONE INPUT OUTPUT", start=0)
    BuilderFlag = _Enum("BuilderFlag", "FP16 INT8 DEBUG GPU_FALLBACK REFIT DISABLE_TIMING_CACHE TF32", start=0)
    MemoryPoolType = _Enum("MemoryPoolType", "WORKSPACE DLA_MANAGED_SRAM", start=0)
    NetworkDefinitionCreationFlag = _Enum("NetworkDefinitionCreationFlag", "EXPLICIT_BATCH STRONGLY_TYPED", start=0)
    LayerType = _Enum("LayerType", "CONVOLUTION QUANTIZE DEQUANTIZE", start=0)
    Sev = _Enum("Severity", "INTERNAL_ERROR ERROR WARNING INFO VERBOSE", start=0)

    class Dims(tuple):  # type: ignore[type-arg]
        pass

    class ILogger:
        Severity = Sev
        INTERNAL_ERROR = Sev.INTERNAL_ERROR
        ERROR = Sev.ERROR
        WARNING = Sev.WARNING
        INFO = Sev.INFO
        VERBOSE = Sev.VERBOSE

        def __init__(self) -> None:
            pass

        def log(self, severity: Any, msg: str) -> None:
            pass

    class Logger(ILogger):
        def __init__(self, min_severity: Any = Sev.WARNING) -> None:
            self.min_severity = min_severity

    class IOutputAllocator:
        def __init__(self) -> None:
            pass

    class HostMemory(bytes):
        @property
        def nbytes(self) -> int:
            return len(self)

    # -- runtime ---------------------------------------------------------------------------

    def _volume(shape: tuple[int, ...]) -> int:
        return int(np.prod(shape)) if shape else 1

    class ExecutionContext:
        def __init__(self, engine: CudaEngine) -> None:
            self.engine = engine
            self.shapes: dict[str, tuple[int, ...]] = {}
            self.addresses: dict[str, int] = {}
            self.allocators: dict[str, Any] = {}

        def set_input_shape(self, name: str, shape: Any) -> bool:
            shape = tuple(int(d) for d in shape)
            rec.add("set_input_shape", name, shape)
            t = self.engine.tensor(name)
            lo, _, hi = (tuple(s) for s in self.engine.profile(name))
            if len(shape) != len(lo) or any(g < a or g > b for g, a, b in zip(shape, lo, hi)):
                return False
            self.shapes[name] = shape
            assert t["mode"] == "INPUT"
            return True

        def _output_shapes(self) -> dict[str, tuple[int, ...]]:
            spec = self.engine.spec
            if spec["model"] == "onnx":
                return self.engine.onnx_output_shapes(self.shapes)
            if spec["model"] == "vocoder":
                t = self.shapes["z"][2]
                return {"audio": (1, t * spec["hop"])}
            p = self.shapes["input"][1]
            channels = self.engine.tensor("z")["shape"][1]
            return {"z": (1, channels, 2 * p), "durations": (1, p)}

        def get_tensor_shape(self, name: str) -> Dims:
            rec.add("context.get_tensor_shape", name)
            t = self.engine.tensor(name)
            if t["mode"] == "INPUT":
                return Dims(self.shapes.get(name, t["shape"]))
            inputs = [x["name"] for x in self.engine.spec["tensors"] if x["mode"] == "INPUT"]
            if any(n not in self.shapes for n in inputs):
                return Dims(t["shape"])
            if self.engine.spec.get("dds") and name == "z":
                return Dims((1, t["shape"][1], -1))  # depends on the predicted durations
            return Dims(self._output_shapes()[name])

        def set_tensor_address(self, name: str, address: int) -> bool:
            rec.add("set_tensor_address", name, address)
            self.addresses[name] = int(address)
            return True

        def set_output_allocator(self, name: str, allocator: Any) -> bool:
            rec.add("set_output_allocator", name)
            self.allocators[name] = allocator
            return True

        def _read(self, name: str) -> np.ndarray:
            t = self.engine.tensor(name)
            shape = self.shapes[name]
            dtype = np.dtype(np_types[DataType[t["dtype"]]])
            alloc = gpu.memory[self.addresses[name]]
            n = _volume(shape) * dtype.itemsize
            return np.frombuffer(bytes(alloc.buf[:n]), dtype=dtype).reshape(shape)

        def _write(self, address: int, arr: np.ndarray) -> None:
            alloc = gpu.memory[address]
            data = np.ascontiguousarray(arr).tobytes()
            assert len(data) <= len(alloc.buf), f"kernel writes {len(data)} bytes into {len(alloc.buf)}"
            alloc.buf[: len(data)] = data

        def execute_async_v3(self, stream_handle: int) -> bool:
            rec.add("execute_async_v3", stream_handle)
            spec = self.engine.spec
            for t in spec["tensors"]:
                if t["mode"] == "INPUT" and t["name"] not in self.addresses:
                    return False
            if spec["model"] == "onnx":
                outs = self.engine.run_onnx({t["name"]: self._read(t["name"]) for t in spec["tensors"] if t["mode"] == "INPUT"})
            elif spec["model"] == "vocoder":
                outs = {"audio": vocoder_outputs(self._read("z"), spec["hop"])}
            else:
                ids = self._read("input")
                z, durations = acoustic_outputs(ids, self.engine.tensor("z")["shape"][1])
                outs = {"z": z, "durations": durations}
            for name, arr in outs.items():
                if name in self.allocators:
                    allocator = self.allocators[name]
                    # TensorRT 10 calls the _async variant, 8.x the plain one.
                    if gpu.major >= 10:
                        ptr = allocator.reallocate_output_async(name, 0, arr.nbytes, 256, stream_handle)
                    else:
                        ptr = allocator.reallocate_output(name, 0, arr.nbytes, 256)
                    rec.add("reallocate_output", name, arr.nbytes)
                    allocator.notify_shape(name, Dims(arr.shape))
                    self._write(int(ptr), arr)
                else:
                    self._write(self.addresses[name], arr)
            return True

    class CudaEngine:
        def __init__(self, spec: dict[str, Any]) -> None:
            self.spec = spec
            self._sess: Any = None

        def _session(self) -> Any:
            import onnxruntime as ort

            if self._sess is None:
                self._sess = ort.InferenceSession(self.spec["onnx"], providers=["CPUExecutionProvider"])
            return self._sess

        def run_onnx(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            """The ONNX model's outputs (int64 inputs widened back, outputs narrowed as the engine declares them)."""
            sess = self._session()
            want = {a.name: a.type for a in sess.get_inputs()}
            feeds = {k: v.astype(np.int64) if want[k] == "tensor(int64)" else v for k, v in feeds.items()}
            names = [o.name for o in sess.get_outputs()]
            outs = {}
            for name, arr in zip(names, sess.run(names, feeds)):
                dtype = np.dtype(np_types[DataType[self.tensor(name)["dtype"]]])
                arr = np.asarray(arr).astype(dtype)
                if dtype == np.float32 and gpu.output_error:
                    noise = np.random.default_rng(0).standard_normal(arr.shape) * gpu.output_error
                    arr = (arr + noise * float(np.max(np.abs(arr), initial=1.0))).astype(np.float32)
                outs[name] = arr
            return outs

        def onnx_output_shapes(self, input_shapes: dict[str, tuple[int, ...]]) -> dict[str, tuple[int, ...]]:
            bound: dict[str, int] = {}
            for t in self.spec["tensors"]:
                if t["mode"] == "INPUT" and t["name"] in input_shapes:
                    for sym, got in zip(t["symbols"], input_shapes[t["name"]]):
                        if sym:
                            bound[sym] = got
            out = {}
            for t in self.spec["tensors"]:
                if t["mode"] == "OUTPUT":
                    if all(d >= 0 or sym in bound for d, sym in zip(t["shape"], t["symbols"])):
                        out[t["name"]] = tuple(d if d >= 0 else bound[sym] for d, sym in zip(t["shape"], t["symbols"]))
            if len(out) < sum(t["mode"] == "OUTPUT" for t in self.spec["tensors"]):  # e.g. samples = 256 frames
                zeros = {t["name"]: np.zeros(input_shapes[t["name"]], np_types[DataType[t["dtype"]]])
                         for t in self.spec["tensors"] if t["mode"] == "INPUT"}
                out = {k: tuple(v.shape) for k, v in self.run_onnx(zeros).items()}
            return out

        def tensor(self, name: str) -> dict[str, Any]:
            return next(t for t in self.spec["tensors"] if t["name"] == name)

        def profile(self, name: str) -> list[list[int]]:
            t = self.tensor(name)
            return t.get("profile") or [t["shape"]] * 3

        @property
        def num_io_tensors(self) -> int:
            return len(self.spec["tensors"])

        def get_tensor_name(self, index: int) -> str:
            rec.add("engine.get_tensor_name", index)
            return str(self.spec["tensors"][index]["name"])

        def get_tensor_mode(self, name: str) -> Any:
            return TensorIOMode[self.tensor(name)["mode"]]

        def get_tensor_dtype(self, name: str) -> Any:
            return DataType[self.tensor(name)["dtype"]]

        def get_tensor_shape(self, name: str) -> Dims:
            return Dims(self.tensor(name)["shape"])

        def get_tensor_profile_shape(self, name: str, profile_index: int) -> list[Dims]:
            rec.add("get_tensor_profile_shape", name, profile_index)
            return [Dims(s) for s in self.profile(name)]

        def create_execution_context(self) -> ExecutionContext:
            rec.add("create_execution_context")
            return ExecutionContext(self)

    class Runtime:
        def __init__(self, logger: ILogger) -> None:
            rec.add("Runtime")
            self.logger = logger

        def deserialize_cuda_engine(self, data: bytes) -> CudaEngine | None:
            rec.add("deserialize_cuda_engine", len(data))
            if not bytes(data).startswith(MAGIC):
                self.logger.log(Sev.ERROR, "fake: the engine plan file is not compatible with this version")
                return None
            return CudaEngine(json.loads(bytes(data)[len(MAGIC) :]))

    # -- builder ---------------------------------------------------------------------------

    @dataclass
    class Layer:
        type: Any
        name: str = "layer"

    class Network:
        def __init__(self, flags: int) -> None:
            self.flags = flags
            self.source: str | None = None
            self.layers = [Layer(LayerType.CONVOLUTION)]
            if gpu.network_has_qdq:
                self.layers += [Layer(LayerType.QUANTIZE), Layer(LayerType.DEQUANTIZE)]

        @property
        def num_layers(self) -> int:
            return len(self.layers)

        def get_layer(self, index: int) -> Layer:
            return self.layers[index]

    @dataclass
    class ParserError:
        message: str
        node_index: int

        def desc(self) -> str:
            return self.message

        def node(self) -> int:
            return self.node_index

    class OnnxParser:
        def __init__(self, network: Network, logger: ILogger) -> None:
            rec.add("OnnxParser")
            self.errors: list[ParserError] = []
            self.network = network

        def parse_from_file(self, path: str) -> bool:
            rec.add("parse_from_file", path)
            self.network.source = path
            if not gpu.parse_ok:
                self.errors = [ParserError("fake: unsupported operator RandomNormalLike", 7)]
            return gpu.parse_ok

        @property
        def num_errors(self) -> int:
            return len(self.errors)

        def get_error(self, index: int) -> ParserError:
            return self.errors[index]

    class TimingCache:
        def __init__(self, data: bytes) -> None:
            self.data = bytes(data)

        def serialize(self) -> HostMemory:
            rec.add("timing_cache.serialize")
            return HostMemory(b"TIMING:" + str(len(self.data)).encode())

    class OptimizationProfile:
        def __init__(self) -> None:
            self.shapes: dict[str, tuple[tuple[int, ...], ...]] = {}

        def set_shape(self, name: str, lo: Any, opt: Any, hi: Any) -> None:
            rec.add("profile.set_shape", name, tuple(lo), tuple(opt), tuple(hi))
            self.shapes[name] = (tuple(lo), tuple(opt), tuple(hi))

    class BuilderConfig:
        def __init__(self) -> None:
            self.flags = 0
            self.cache: TimingCache | None = None
            self.profile: OptimizationProfile | None = None

        def set_flag(self, flag: Any) -> None:
            rec.add("config.set_flag", flag.name)
            self.flags |= 1 << int(flag)

        def get_flag(self, flag: Any) -> bool:
            return bool(self.flags & (1 << int(flag)))

        def set_memory_pool_limit(self, pool: Any, size: int) -> None:
            rec.add("config.set_memory_pool_limit", pool.name, size)

        def add_optimization_profile(self, profile: OptimizationProfile) -> int:
            rec.add("config.add_optimization_profile")
            self.profile = profile
            return 0

        def create_timing_cache(self, data: bytes) -> TimingCache:
            rec.add("config.create_timing_cache", len(data))
            return TimingCache(data)

        def set_timing_cache(self, cache: TimingCache, ignore_mismatch: bool) -> bool:
            rec.add("config.set_timing_cache", len(cache.data), ignore_mismatch)
            self.cache = cache
            return True

        def get_timing_cache(self) -> TimingCache:
            assert self.cache is not None
            return self.cache

    class Builder:
        def __init__(self, logger: ILogger) -> None:
            rec.add("Builder")
            self.logger = logger

        @property
        def platform_has_fast_int8(self) -> bool:
            return gpu.fast_int8

        @property
        def platform_has_fast_fp16(self) -> bool:
            return gpu.fast_fp16

        def create_network(self, flags: int = 0) -> Network:
            rec.add("create_network", flags)
            return Network(flags)

        def create_builder_config(self) -> BuilderConfig:
            return BuilderConfig()

        def create_optimization_profile(self) -> OptimizationProfile:
            return OptimizationProfile()

        def build_serialized_network(self, network: Network, config: BuilderConfig) -> HostMemory | None:
            rec.add("build_serialized_network", config.flags)
            if gpu.build_fails:
                self.logger.log(Sev.ERROR, "fake: insufficient workspace for the tactics of layer /dec/conv_pre")
                return None
            spec = None
            if network.source is not None and config.profile is not None:
                spec = onnx_spec(network.source, config.profile.shapes, gpu.major)
            return HostMemory(MAGIC + json.dumps(spec or vocoder_spec()).encode())

    exports: dict[str, Callable[..., Any] | Any] = dict(
        DataType=DataType,
        nptype=nptype,
        TensorIOMode=TensorIOMode,
        BuilderFlag=BuilderFlag,
        MemoryPoolType=MemoryPoolType,
        NetworkDefinitionCreationFlag=NetworkDefinitionCreationFlag,
        LayerType=LayerType,
        Dims=Dims,
        ILogger=ILogger,
        Logger=Logger,
        IOutputAllocator=IOutputAllocator,
        Runtime=Runtime,
        OnnxParser=OnnxParser,
        Builder=Builder,
    )
    for name, obj in exports.items():
        setattr(trt, name, obj)
    return trt
