"""TensorRT backend and engine building, tested against a recording fake (TensorRT, pycuda and a GPU cannot run here)."""

# tests/trt_fake.py stands in for tensorrt and pycuda: it records every call and its thread and
# computes trivial outputs. These tests prove the call protocol (order, streams, buffers, threads,
# flags, caching), not TensorRT's numerics; `make verify-device` checks the real thing on a Jetson.

from __future__ import annotations

import dataclasses
import logging
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest

from jetvox.engines.base import EngineError
from jetvox.engines.tensorrt import CudaWorker, TensorRTEngine
from jetvox.engines.base import TensorSpec
from jetvox.provisioning.tensorrt.build import (
    BuildError,
    Profile,
    build_engine,
    dim_ranges,
    engine_cache_key,
    ensure_engine,
    profiles_for,
)
from jetvox.provisioning.tensorrt.platform import PlatformInfo, detect_platform

try:
    from tests import trt_fake
except ImportError:  # tests/ itself on sys.path (pytest's default rootdir-relative import)
    import trt_fake  # type: ignore[no-redef]

ROOT = Path(__file__).resolve().parents[1]
SHAPES = dict(max_phonemes=400, opt_phonemes=80, chunk_frames=32, max_frames=100, overlap_frames=16,
              max_acoustic_frames=8192)
IDS = (TensorSpec("input", "int64", (1, "phonemes")), TensorSpec("input_lengths", "int64", (1,)),
       TensorSpec("scales", "float32", (3,)))
Z = (TensorSpec("z", "float32", (1, 192, "frames")),)


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(params=["10.3.0", "8.6.2"], ids=["trt10.3-jetpack6.1", "trt8.6-jetpack6.0"])
def fakes(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> trt_fake.Fakes:
    """Both TensorRT versions JetPack 6 ships: every test using this runs on each."""
    f = trt_fake.make_fakes(request.param)
    f.install(monkeypatch)
    return f


@pytest.fixture
def fakes86(monkeypatch: pytest.MonkeyPatch) -> trt_fake.Fakes:
    f = trt_fake.make_fakes("8.6.1")
    f.install(monkeypatch)
    return f


@pytest.fixture
def worker() -> Iterator[CudaWorker]:
    w = CudaWorker(name="test-cuda")
    w.start()
    yield w
    w.shutdown()


@pytest.fixture(autouse=True)
def _no_shared_worker_left() -> Iterator[None]:
    yield
    shared = CudaWorker._shared
    if shared is not None:
        shared.shutdown()


def _vocoder(tmp_path: Path, worker: CudaWorker, **kw: int) -> TensorRTEngine:
    path = trt_fake.write_engine(tmp_path / "vocoder.engine", trt_fake.vocoder_spec(**kw))
    return TensorRTEngine(path, worker=worker)


def _acoustic(tmp_path: Path, worker: CudaWorker, **kw: object) -> TensorRTEngine:
    path = trt_fake.write_engine(tmp_path / "acoustic.engine", trt_fake.acoustic_spec(**kw))  # type: ignore[arg-type]
    return TensorRTEngine(path, worker=worker)


def _acoustic_feeds(ids: list[int]) -> dict[str, np.ndarray]:
    return {
        "input": np.array([ids], dtype=np.int64),
        "input_lengths": np.array([len(ids)], dtype=np.int64),
        "scales": np.array([0.0, 1.0, 0.0], dtype=np.float32),
    }


def _z(frames: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((1, 192, frames)).astype(np.float32)


# --------------------------------------------------------------------------- profiles


def test_acoustic_encoder_profile_shapes() -> None:
    shapes = profiles_for(IDS, dim_ranges("acoustic_encoder", **SHAPES))
    assert shapes == {
        "input": ((1, 1), (1, 80), (1, 400)),
        "input_lengths": ((1,), (1,), (1,)),
        "scales": ((3,), (3,), (3,)),
    }


def test_acoustic_decoder_profile_covers_the_configured_frames() -> None:
    inputs = (TensorSpec("h", "float32", (1, 128, "frames")), TensorSpec("noise", "float32", ()))
    shapes = profiles_for(inputs, dim_ranges("acoustic_decoder", **SHAPES))
    assert shapes == {"h": ((1, 128, 1), (1, 128, 320), (1, 128, 8192)), "noise": ((), (), ())}


def test_vocoder_profile_shapes_use_the_chunk_with_its_overlap() -> None:
    shapes = profiles_for(Z, dim_ranges("vocoder", **SHAPES))
    assert shapes == {"z": ((1, 192, 1), (1, 192, 32 + 2 * 16), (1, 192, 100))}


def test_profile_arguments_are_validated() -> None:
    with pytest.raises(ValueError, match="opt_phonemes"):
        dim_ranges("acoustic_encoder", **{**SHAPES, "opt_phonemes": 500})
    with pytest.raises(ValueError, match="max_frames"):
        dim_ranges("vocoder", **{**SHAPES, "max_frames": 50})
    with pytest.raises(ValueError, match="acoustic_encoder"):
        dim_ranges("acoustic", **SHAPES)
    # an axis no profile sets is refused, not guessed (the whole acoustic model's data-dependent frames)
    with pytest.raises(BuildError, match="axis 2 .'frames'. is dynamic"):
        profiles_for(Z, dim_ranges("acoustic_encoder", **SHAPES))


# --------------------------------------------------------------------------- runtime


def test_engine_specs_and_buffers_allocated_once_at_profile_max(
    fakes: trt_fake.Fakes, worker: CudaWorker, tmp_path: Path
) -> None:
    eng = _acoustic(tmp_path, worker)
    assert eng.backend == "tensorrt"
    assert [(s.name, s.dtype, s.shape) for s in eng.inputs] == [
        ("input", "int64", (1, None)),
        ("input_lengths", "int64", (1,)),
        ("scales", "float32", (3,)),
    ]
    assert [(s.name, s.dtype, s.shape) for s in eng.outputs] == [
        ("z", "float32", (1, 192, None)),
        ("durations", "float32", (1, None)),
    ]
    assert eng.profile["input"] == ((1, 1), (1, 80), (1, 400))
    allocs = [c.args[0] for c in fakes.rec.named("mem_alloc")]
    # int64 ids (8 bytes) for 400 phonemes, one int64 length, 3 float scales,
    # z for 2 frames per phoneme at the maximum, durations per phoneme.
    assert allocs == [400 * 8, 8, 3 * 4, 192 * 800 * 4, 400 * 4]
    pinned = [(c.args[0], c.args[1]) for c in fakes.rec.named("pagelocked_empty")]
    assert pinned == [
        (400, np.dtype(np.int64)),
        (1, np.dtype(np.int64)),
        (3, np.dtype(np.float32)),
        (192 * 800, np.dtype(np.float32)),
        (400, np.dtype(np.float32)),
    ]
    for ids in ([5, 6, 7], list(range(1, 300)), [9]):
        out = eng.infer(_acoustic_feeds(ids))
        z, durations = trt_fake.acoustic_outputs(np.array([ids]), 192)
        np.testing.assert_array_equal(out["z"], z)
        np.testing.assert_array_equal(out["durations"], durations)
    assert len(fakes.rec.named("mem_alloc")) == 5
    assert len(fakes.rec.named("pagelocked_empty")) == 5
    eng.close()
    assert len(fakes.rec.named("mem_free")) == 5
    with pytest.raises(EngineError, match="closed"):
        eng.infer(_acoustic_feeds([1]))


def test_call_order_on_the_engines_own_stream(fakes: trt_fake.Fakes, worker: CudaWorker, tmp_path: Path) -> None:
    with _vocoder(tmp_path, worker) as eng:
        streams = [c.args[0] for c in fakes.rec.named("Stream")]
        assert len(streams) == 1
        stream = streams[0]
        start = fakes.rec.mark()
        z = _z(40)
        out = eng.infer({"z": z})
        np.testing.assert_array_equal(out["audio"], trt_fake.vocoder_outputs(z))
        names = [c.name for c in fakes.rec.calls[start:] if not c.name.startswith("event.query")]
        shape_at = names.index("set_input_shape")
        address_at = [i for i, n in enumerate(names) if n == "set_tensor_address"]
        htod_at = names.index("htod")
        exec_at = names.index("execute_async_v3")
        dtoh_at = names.index("dtoh")
        record_at = names.index("event.record")
        assert shape_at < min(address_at) and max(address_at) < htod_at < exec_at < dtoh_at < record_at
        calls = fakes.rec.calls[start:]
        assert fakes.rec.calls[start + [c.name for c in calls].index("execute_async_v3")].args == (stream,)
        for c in calls:
            if c.name in ("htod", "dtoh"):
                assert c.args[2] == stream
            if c.name == "event.record":
                assert c.args == (stream,)
        # Exactly the live bytes move: 40 frames in, 40 * 256 samples out.
        assert [c.args[1] for c in calls if c.name == "htod"] == [192 * 40 * 4]
        assert [c.args[1] for c in calls if c.name == "dtoh"] == [40 * 256 * 4]


def test_two_engines_overlap_on_two_streams(fakes: trt_fake.Fakes, worker: CudaWorker, tmp_path: Path) -> None:
    acoustic = _acoustic(tmp_path, worker)
    vocoder = _vocoder(tmp_path, worker)
    gate = threading.Event()
    worker.run_soon(gate.wait)  # hold the worker so both submissions are queued together
    start = fakes.rec.mark()
    fa = acoustic.submit(_acoustic_feeds([3, 4, 5]))
    fv = vocoder.submit({"z": _z(20)})
    gate.set()
    out_a, out_v = fa.result(timeout=10), fv.result(timeout=10)
    assert out_a["z"].shape == (1, 192, 6) and out_v["audio"].shape == (1, 20 * 256)
    calls = fakes.rec.calls[start:]
    execs = [(i, c.args[0]) for i, c in enumerate(calls) if c.name == "execute_async_v3"]
    assert len(execs) == 2 and execs[0][1] != execs[1][1], "each engine has its own stream"
    first_sync = next(i for i, c in enumerate(calls) if c.name in ("event.synchronize", "stream.synchronize"))
    assert execs[1][0] < first_sync, "the second engine was enqueued before the first was waited for"
    records = [i for i, c in enumerate(calls) if c.name == "event.record"]
    assert len(records) == 2 and records[1] < first_sync
    acoustic.close()
    vocoder.close()


def test_same_engine_waits_for_its_previous_launch(fakes: trt_fake.Fakes, worker: CudaWorker, tmp_path: Path) -> None:
    """Pinned buffers are reused, so a second launch on one engine first completes the first."""
    eng = _vocoder(tmp_path, worker)
    gate = threading.Event()
    worker.run_soon(gate.wait)
    z1, z2 = _z(10, 1), _z(12, 2)
    f1, f2 = eng.submit({"z": z1}), eng.submit({"z": z2})
    gate.set()
    np.testing.assert_array_equal(f1.result(timeout=10)["audio"], trt_fake.vocoder_outputs(z1))
    np.testing.assert_array_equal(f2.result(timeout=10)["audio"], trt_fake.vocoder_outputs(z2))
    eng.close()


def test_every_cuda_and_tensorrt_call_runs_on_the_worker_thread(
    fakes: trt_fake.Fakes, worker: CudaWorker, tmp_path: Path
) -> None:
    acoustic = _acoustic(tmp_path, worker)
    vocoder = _vocoder(tmp_path, worker)
    with ThreadPoolExecutor(max_workers=3) as pool:
        jobs = [pool.submit(vocoder.infer, {"z": _z(8 + i, i)}) for i in range(6)]
        jobs += [pool.submit(acoustic.infer, _acoustic_feeds([1, 2, i + 1])) for i in range(6)]
        for job in jobs:
            job.result(timeout=10)
    acoustic.close()
    vocoder.close()
    worker.shutdown()
    threads = {c.thread for c in fakes.rec.calls}
    assert threads == {worker._thread.ident}  # type: ignore[union-attr]
    names = [c.name for c in fakes.rec.calls]
    assert names[0] == "cuda.init" and names[-2:] == ["context.pop", "context.detach"]


def test_shape_outside_profile_is_refused(fakes: trt_fake.Fakes, worker: CudaWorker, tmp_path: Path) -> None:
    eng = _vocoder(tmp_path, worker, max_frames=100)
    start = fakes.rec.mark()
    with pytest.raises(EngineError, match=r"'z'.*\(1, 192, 101\).*min \(1, 192, 1\), max \(1, 192, 100\)"):
        eng.infer({"z": _z(101)})
    with pytest.raises(EngineError, match="dtype"):
        eng.infer({"z": _z(10).astype(np.float64)})
    assert all(c.name not in ("set_input_shape", "execute_async_v3") for c in fakes.rec.calls[start:])
    eng.close()


def test_int64_inputs_are_cast_for_a_tensorrt_86_engine(
    fakes86: trt_fake.Fakes, worker: CudaWorker, tmp_path: Path
) -> None:
    eng = _acoustic(tmp_path, worker, id_dtype="INT32")
    assert {s.name: s.dtype for s in eng.inputs} == {"input": "int64", "input_lengths": "int64", "scales": "float32"}
    assert [c.args[0] for c in fakes86.rec.named("mem_alloc")][:2] == [400 * 4, 4]  # int32 on the GPU
    start = fakes86.rec.mark()
    ids = [11, 12, 13, 14]
    out = eng.infer(_acoustic_feeds(ids))
    np.testing.assert_array_equal(out["z"], trt_fake.acoustic_outputs(np.array([ids]), 192)[0])
    htod = [c.args[1] for c in fakes86.rec.calls[start:] if c.name == "htod"]
    assert htod[:2] == [4 * 4, 4]
    with pytest.raises(EngineError, match="int32"):
        eng.infer(_acoustic_feeds([2**40]))
    with pytest.raises(EngineError, match="dtype int64"):
        eng.infer({**_acoustic_feeds(ids), "input": np.array([ids], dtype=np.int32)})
    eng.close()


def test_data_dependent_output_uses_an_output_allocator_and_grows(
    fakes: trt_fake.Fakes, worker: CudaWorker, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = trt_fake.write_engine(tmp_path / "a.engine", trt_fake.acoustic_spec(dds=True))
    eng = TensorRTEngine(path, worker=worker, dynamic_output_bytes=192 * 10 * 4)
    assert [c.args[0] for c in fakes.rec.named("set_output_allocator")] == ["z"]
    small, big = [1, 2, 3], list(range(1, 41))
    for ids in (small, big, small):
        with caplog.at_level(logging.WARNING, logger="jetvox.engines.tensorrt"):
            out = eng.infer(_acoustic_feeds(ids))
        np.testing.assert_array_equal(out["z"], trt_fake.acoustic_outputs(np.array([ids]), 192)[0])
    assert "growing its buffers" in caplog.text
    eng.close()


def test_garbage_engine_file_raises_with_tensorrts_reason(
    fakes: trt_fake.Fakes, worker: CudaWorker, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.engine"
    bad.write_bytes(b"not an engine")
    with pytest.raises(EngineError, match="could not deserialise bad.engine.*not compatible"):
        TensorRTEngine(bad, worker=worker)


def test_shutdown_releases_engines_left_open(fakes: trt_fake.Fakes, tmp_path: Path) -> None:
    w = CudaWorker()
    w.start()
    _vocoder(tmp_path, w)
    w.shutdown()
    assert len(fakes.rec.named("mem_free")) == len(fakes.rec.named("mem_alloc")) == 2
    with pytest.raises(EngineError, match="shut down"):
        w.run_soon(lambda: None)


# --------------------------------------------------------------------------- fallback


def _tiny_onnx(path: Path) -> Path:
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["z"], ["audio"])],
        "tiny",
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, [1, "n"])],
        [helper.make_tensor_value_info("audio", TensorProto.FLOAT, [1, "n"])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def test_missing_engine_falls_back_to_onnxruntime_and_says_why(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from jetvox.engines.loader import open_engine

    model = _tiny_onnx(tmp_path / "tiny.onnx")
    with caplog.at_level(logging.WARNING, logger="jetvox.engines.loader"):
        eng = open_engine(model, engine_path=tmp_path / "missing.engine", providers=["CPUExecutionProvider"])
    assert eng.backend == "onnxruntime"
    assert "missing.engine" in caplog.text and "not found" in caplog.text
    x = np.arange(4, dtype=np.float32)[None]
    np.testing.assert_array_equal(eng.infer({"z": x})["audio"], x)
    eng.close()


def test_no_tensorrt_falls_back(tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    from jetvox.engines.loader import open_engine

    monkeypatch.setitem(sys.modules, "tensorrt", None)  # import tensorrt -> ImportError
    model = _tiny_onnx(tmp_path / "tiny.onnx")
    engine_file = trt_fake.write_engine(tmp_path / "v.engine", trt_fake.vocoder_spec())
    with caplog.at_level(logging.WARNING, logger="jetvox.engines.loader"):
        eng = open_engine(model, engine_path=engine_file, providers=["CPUExecutionProvider"])
    assert eng.backend == "onnxruntime" and "v.engine unavailable" in caplog.text
    eng.close()


def test_undeserialisable_engine_falls_back_with_the_reason(
    fakes: trt_fake.Fakes, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from jetvox.engines.loader import open_engine

    model = _tiny_onnx(tmp_path / "tiny.onnx")
    bad = tmp_path / "old.engine"
    bad.write_bytes(b"engine from another TensorRT")
    with caplog.at_level(logging.WARNING, logger="jetvox.engines.loader"):
        eng = open_engine(model, engine_path=bad, providers=["CPUExecutionProvider"])
    assert eng.backend == "onnxruntime"
    assert "could not deserialise old.engine" in caplog.text and "not compatible" in caplog.text
    eng.close()


def test_loaded_engine_satisfies_open_engine(fakes: trt_fake.Fakes, tmp_path: Path) -> None:
    from jetvox.engines.loader import open_engine

    model = _tiny_onnx(tmp_path / "tiny.onnx")
    path = trt_fake.write_engine(tmp_path / "v.engine", trt_fake.vocoder_spec())
    with open_engine(model, engine_path=path, backend="tensorrt") as eng:
        assert eng.backend == "tensorrt"
        assert eng.infer({"z": _z(5)})["audio"].shape == (1, 5 * 256)


# --------------------------------------------------------------------------- building


def _platform(**changes: object) -> PlatformInfo:
    info = PlatformInfo(
        model="NVIDIA Jetson Orin Nano Developer Kit",
        is_jetson=True,
        l4t_version="36.3.0",
        jetpack_version="6.0",
        tensorrt_version="10.3.0",
        gpu_name="Orin",
        sm_version="8.7",
        fast_int8=True,
        fast_fp16=True,
        total_memory_bytes=8 << 30,
    )
    return dataclasses.replace(info, **changes)  # type: ignore[arg-type]


def _onnx_file(tmp_path: Path) -> Path:
    path = tmp_path / "models" / "vocoder.onnx"
    path.parent.mkdir()
    path.write_bytes(b"pretend onnx")
    return path


VOCODER_PROFILE = Profile.from_ranges("vocoder", profiles_for(Z, dim_ranges("vocoder", **SHAPES)))


@pytest.mark.parametrize(
    ("precision", "flags"), [("int8", ["FP16", "INT8"]), ("fp16", ["FP16"]), ("fp32", [])]
)
def test_build_engine_flags_pool_profile_and_timing_cache(
    fakes: trt_fake.Fakes, tmp_path: Path, precision: str, flags: list[str]
) -> None:
    onnx_path = _onnx_file(tmp_path)
    out = tmp_path / "engines" / "v.engine"
    cache = tmp_path / "engines" / "timing.cache"
    lines: list[str] = []
    built = build_engine(
        onnx_path, out, precision=precision, profile=VOCODER_PROFILE, workspace_bytes=1 << 30,
        timing_cache_path=cache, progress=lines.append,
    )
    assert built == out and out.read_bytes().startswith(trt_fake.MAGIC)
    rec = fakes.rec
    assert [c.args[0] for c in rec.named("config.set_flag")] == flags
    assert [c.args for c in rec.named("config.set_memory_pool_limit")] == [("WORKSPACE", 1 << 30)]
    assert [c.args for c in rec.named("profile.set_shape")] == [("z", (1, 192, 1), (1, 192, 64), (1, 192, 100))]
    assert len(rec.named("config.add_optimization_profile")) == 1
    # TensorRT 10 is always explicit batch (no flag); 8.6 needs the EXPLICIT_BATCH flag (1 << 0)
    assert [c.args[0] for c in rec.named("create_network")] == [0 if fakes.gpu.major >= 10 else 1]
    assert cache.read_bytes() == b"TIMING:0"
    assert [c.args[0] for c in rec.named("config.create_timing_cache")] == [0]
    assert any("parsing vocoder.onnx" in s for s in lines) and any("building v.engine" in s for s in lines)
    assert any(s.startswith("built v.engine") and " MB in " in s for s in lines)
    # A second build reads the saved timing cache.
    build_engine(onnx_path, out, precision=precision, profile=VOCODER_PROFILE, timing_cache_path=cache)
    assert [c.args[0] for c in rec.named("config.create_timing_cache")] == [0, len(b"TIMING:0")]
    assert sorted(p.name for p in out.parent.iterdir()) == ["timing.cache", "v.engine"]


def test_build_on_tensorrt_86_sets_explicit_batch(fakes86: trt_fake.Fakes, tmp_path: Path) -> None:
    onnx_path = _onnx_file(tmp_path)
    build_engine(onnx_path, tmp_path / "v.engine", precision="int8", profile=VOCODER_PROFILE)
    assert [c.args[0] for c in fakes86.rec.named("create_network")] == [1]
    assert [c.args[0] for c in fakes86.rec.named("config.set_flag")] == ["FP16", "INT8"]
    with pytest.raises(BuildError, match="TensorRT 10"):
        build_engine(onnx_path, tmp_path / "s.engine", precision="int8", profile=VOCODER_PROFILE, strongly_typed=True)


def test_strongly_typed_build_sets_no_precision_flags(fakes: trt_fake.Fakes, tmp_path: Path) -> None:
    if fakes.gpu.major < 10:
        with pytest.raises(BuildError, match="strongly typed networks need TensorRT 10, this is 8.6"):
            build_engine(_onnx_file(tmp_path), tmp_path / "v.engine", precision="int8", profile=VOCODER_PROFILE,
                         strongly_typed=True)
        return
    build_engine(_onnx_file(tmp_path), tmp_path / "v.engine", precision="int8", profile=VOCODER_PROFILE,
                 strongly_typed=True)
    assert [c.args[0] for c in fakes.rec.named("create_network")] == [1 << 1]
    assert fakes.rec.named("config.set_flag") == []


def test_failed_build_leaves_no_file_and_reports_tensorrts_errors(fakes: trt_fake.Fakes, tmp_path: Path) -> None:
    fakes.gpu.build_fails = True
    out_dir = tmp_path / "engines"
    out_dir.mkdir()
    with pytest.raises(BuildError, match="insufficient workspace"):
        build_engine(_onnx_file(tmp_path), out_dir / "v.engine", precision="fp16", profile=VOCODER_PROFILE,
                     timing_cache_path=out_dir / "timing.cache")
    assert list(out_dir.iterdir()) == []


def test_parse_failure_reports_every_parser_error(fakes: trt_fake.Fakes, tmp_path: Path) -> None:
    fakes.gpu.parse_ok = False
    with pytest.raises(BuildError, match="node 7: fake: unsupported operator RandomNormalLike"):
        build_engine(_onnx_file(tmp_path), tmp_path / "v.engine", precision="fp32", profile=VOCODER_PROFILE)
    assert not (tmp_path / "v.engine").exists()


def test_int8_without_qdq_warns(fakes: trt_fake.Fakes, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    fakes.gpu.network_has_qdq = False
    with caplog.at_level(logging.WARNING, logger="jetvox.provisioning.tensorrt.build"):
        build_engine(_onnx_file(tmp_path), tmp_path / "v.engine", precision="int8", profile=VOCODER_PROFILE)
    assert "no Q/DQ layers" in caplog.text


def test_cache_key_covers_what_the_engine_depends_on() -> None:
    base = engine_cache_key("abc", _platform(), "int8", VOCODER_PROFILE)
    assert base == engine_cache_key("abc", _platform(), "int8", VOCODER_PROFILE)
    other_profile = Profile.from_ranges("vocoder", profiles_for(Z, dim_ranges("vocoder", **{**SHAPES, "max_frames": 200})))
    variants = [
        engine_cache_key("abd", _platform(), "int8", VOCODER_PROFILE),
        engine_cache_key("abc", _platform(tensorrt_version="10.3.1"), "int8", VOCODER_PROFILE),
        engine_cache_key("abc", _platform(l4t_version="36.4.0"), "int8", VOCODER_PROFILE),
        engine_cache_key("abc", _platform(gpu_name="Orin AGX"), "int8", VOCODER_PROFILE),
        engine_cache_key("abc", _platform(sm_version="8.9"), "int8", VOCODER_PROFILE),
        engine_cache_key("abc", _platform(), "fp16", VOCODER_PROFILE),
        engine_cache_key("abc", _platform(), "int8", other_profile),
    ]
    assert len({base, *variants}) == len(variants) + 1
    with pytest.raises(BuildError, match="not installed"):
        engine_cache_key("abc", _platform(tensorrt_version=None), "int8", VOCODER_PROFILE)


def test_ensure_engine_skips_a_cached_engine_and_rebuilds_after_a_tensorrt_upgrade(
    fakes: trt_fake.Fakes, tmp_path: Path
) -> None:
    onnx_path = _onnx_file(tmp_path)
    out_dir = tmp_path / "engines"
    kw = dict(model="vocoder", precision="int8", profile=VOCODER_PROFILE)
    first = ensure_engine(onnx_path, out_dir, platform=_platform(), **kw)  # type: ignore[arg-type]
    assert len(fakes.rec.named("build_serialized_network")) == 1
    again = ensure_engine(onnx_path, out_dir, platform=_platform(), **kw)  # type: ignore[arg-type]
    assert again == first and len(fakes.rec.named("build_serialized_network")) == 1
    upgraded = ensure_engine(onnx_path, out_dir, platform=_platform(tensorrt_version="10.7.0"), **kw)  # type: ignore[arg-type]
    assert upgraded != first and len(fakes.rec.named("build_serialized_network")) == 2
    assert first.name.startswith("vocoder.int8.") and first.suffix == ".engine"
    assert (out_dir / "timing.10.3.0.cache").is_file() and (out_dir / "timing.10.7.0.cache").is_file()


# --------------------------------------------------------------------------- platform


def test_detect_platform_on_a_fake_jetson(fakes: trt_fake.Fakes, tmp_path: Path) -> None:
    (tmp_path / "proc" / "device-tree").mkdir(parents=True)
    (tmp_path / "etc").mkdir()
    (tmp_path / "proc" / "device-tree" / "model").write_bytes(b"NVIDIA Jetson Orin Nano Developer Kit\x00")
    (tmp_path / "etc" / "nv_tegra_release").write_text(
        "# R36 (release), REVISION: 3.0, GCID: 36191598, BOARD: generic, EABI: aarch64, DATE: Mon May  6 17:34:21 UTC 2024\n"
    )
    (tmp_path / "proc" / "meminfo").write_text("MemTotal:        7802212 kB\nMemFree:  1 kB\n")
    info = detect_platform(tmp_path)
    assert info == PlatformInfo(
        model="NVIDIA Jetson Orin Nano Developer Kit",
        is_jetson=True,
        l4t_version="36.3.0",
        jetpack_version=None,  # dpkg is only asked about the real root
        tensorrt_version=fakes.gpu.trt_version,
        gpu_name="Orin",
        sm_version="8.7",
        fast_int8=True,
        fast_fp16=True,
        total_memory_bytes=7802212 * 1024,
    )


def test_detect_platform_tolerates_absence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    monkeypatch.setitem(sys.modules, "pycuda", None)
    monkeypatch.setitem(sys.modules, "pycuda.driver", None)
    info = detect_platform(tmp_path)
    assert info == PlatformInfo(None, False, None, None, None, None, None, None, None, None)


def test_a_tensorrt_stub_package_counts_as_no_tensorrt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``pip install tensorrt-stubs`` makes ``import tensorrt`` succeed with an empty namespace package."""
    import types

    stub = types.ModuleType("tensorrt")
    stub.__path__ = []  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "tensorrt", stub)
    monkeypatch.setitem(sys.modules, "pycuda", None)
    assert detect_platform(tmp_path).tensorrt_version is None
    path = trt_fake.write_engine(tmp_path / "v.engine", trt_fake.vocoder_spec())
    with pytest.raises(ImportError, match="stub"):
        TensorRTEngine(path)


# --------------------------------------------------------------------------- verify-device


def test_verify_device_without_tensorrt_exits_nonzero_with_a_clear_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from jetvox.provisioning.tensorrt.verify_device import EXIT_NO_TENSORRT, main

    monkeypatch.setitem(sys.modules, "tensorrt", None)
    argv = ["--state-dir", str(tmp_path)]
    assert main(argv) == EXIT_NO_TENSORRT != 0
    err = capsys.readouterr().err
    assert "TensorRT is not usable here" in err and "Jetson" in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("version", ["8.5.2", "9.3.0", "11.0.0"])
def test_unsupported_tensorrt_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, version: str) -> None:
    """Issue 11, defect 7: only 8.6 (JetPack 6.0) and 10.x (JetPack 6.1/6.2) are supported; others say so."""
    f = trt_fake.make_fakes(version)
    f.install(monkeypatch)
    with pytest.raises(BuildError, match=f"TensorRT {version} is not supported: jetvox supports TensorRT 8.6"):
        build_engine(_onnx_file(tmp_path), tmp_path / "v.engine", precision="fp16", profile=VOCODER_PROFILE)
    assert not (tmp_path / "v.engine").exists()
    path = trt_fake.write_engine(tmp_path / "vocoder.engine", trt_fake.vocoder_spec())
    with pytest.raises(EngineError, match="is not supported"):
        TensorRTEngine(path)
