"""INT8 provisioning: Q/DQ quantisation, mixed precision, the quality gate, the TensorRT hook, end to end."""

from __future__ import annotations

import dataclasses
import types
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from jetvox.device.voice.manifest import Manifest, ModelEntry, Precision, SourceInfo
from jetvox.engines.base import TensorSpec
from jetvox.engines.onnxrt import ort_session
from jetvox.provisioning.int8 import quantize as qz
from jetvox.provisioning.int8 import steps as int8
from jetvox.provisioning.int8.steps import GateFigures, Verdict, choose, judge, ladder, with_more_layers
from tests.voicefix import TEACHER

# --------------------------------------------------------------------------- the gate, with numbers


def _fig(wer_fp32: float, wer_int8: float, log_mel: float | None = 0.3, log_mel_max: float = 0.6,
         p808: tuple[float | None, float | None] = (3.9, 3.88)) -> GateFigures:
    return GateFigures(wer_fp32=wer_fp32, wer_int8=wer_int8, log_mel=log_mel, log_mel_max=log_mel_max,
                       p808_fp32=p808[0], p808_int8=p808[1])


def test_gate_passes_within_both_bounds() -> None:
    v = judge(_fig(0.20, 0.215), max_wer_rise=0.02)
    assert v.passed and v.reason.startswith("passed")
    assert "+0.015" in v.reason and "0.300" in v.reason


def test_gate_allows_exactly_the_limit_and_any_improvement() -> None:
    assert judge(_fig(0.20, 0.22)).passed
    assert judge(_fig(0.25, 0.10)).passed


def test_gate_fails_when_wer_rises_more_than_002() -> None:
    v = judge(_fig(0.20, 0.221))
    assert not v.passed and "WER rose too much" in v.reason and "+0.021" in v.reason


def test_gate_fails_on_log_mel_distance() -> None:
    v = judge(_fig(0.20, 0.20, log_mel=0.61, log_mel_max=0.6))
    assert not v.passed and "log-mel distance too large" in v.reason


def test_gate_fails_when_naturalness_falls_more_than_005() -> None:
    """Issue 10: WER cannot hear a duller vocoder; DNSMOS P.808 may fall by at most 0.05."""
    assert judge(_fig(0.20, 0.20, p808=(3.90, 3.85))).passed  # exactly the limit
    v = judge(_fig(0.20, 0.20, p808=(3.90, 3.84)))
    assert not v.passed and "P.808 fell too much" in v.reason and "3.900 -> 3.840" in v.reason
    v = judge(_fig(0.20, 0.20, p808=(3.90, None)))
    assert not v.passed and "no P.808" in v.reason


def test_gate_fails_when_the_log_mel_distance_could_not_be_measured() -> None:
    v = judge(_fig(0.2, 0.2, log_mel=None))
    assert not v.passed and "no log-mel distance" in v.reason and "not measured" in v.reason


def test_fallback_to_fewer_quantised_layers_when_wer_rises() -> None:
    attempts = [
        ("INT8 with 1 FP32 layer(s):", judge(_fig(0.247, 0.288))),  # +0.041: fails
        ("INT8 with 4 FP32 layer(s):", judge(_fig(0.247, 0.259))),  # +0.012: passes
        ("INT8 with 6 FP32 layer(s):", judge(_fig(0.247, 0.247))),
    ]
    precision, used, reason = choose(attempts)
    assert (precision, used) == ("int8", 1)
    assert "4 FP32 layer(s)" in reason and "after 1 failed attempt" in reason


def test_fallback_to_fp32_when_every_attempt_fails() -> None:
    attempts = [
        ("INT8 with 1 FP32 layer(s):", judge(_fig(0.20, 0.25))),
        ("INT8 with 5 FP32 layer(s):", judge(_fig(0.20, 0.23))),
    ]
    precision, used, reason = choose(attempts)
    assert (precision, used) == ("fp32", None)
    assert "FP32 kept" in reason and "+0.050" in reason and "+0.030" in reason
    assert choose([]) == ("fp32", None, "no INT8 model was tried")


def test_first_passing_attempt_wins() -> None:
    ok = Verdict(True, "passed")
    assert choose([("a", ok), ("b", ok)])[1] == 0


def test_ladder_takes_the_fewest_fp32_layers_per_fraction() -> None:
    curve = [1.0, 0.8, 0.6, 0.45, 0.3, 0.1]
    assert ladder(curve, 0.7, (1.0, 0.7, 0.5)) == [2, 3, 4]
    assert ladder(curve, 0.7, (1.0, 0.99)) == [2]  # duplicates dropped
    assert ladder(curve, 0.01, (1.0,)) == []  # nothing close enough: FP32


def test_a_failed_ladder_goes_on_one_fp32_layer_at_a_time() -> None:
    assert with_more_layers([0], layers=10, more=2) == [0, 1, 2]
    assert with_more_layers([2, 3, 4], layers=10, more=2) == [2, 3, 4, 5, 6]
    assert with_more_layers([4], layers=5, more=3) == [4, 5]  # never more layers than the model has
    assert with_more_layers([], layers=10, more=2) == []  # the held-out chunks found none close enough
    assert with_more_layers([0], layers=10, more=0) == [0]


def test_noise_equivalent_bound_shrinks_with_quieter_noise() -> None:
    t = np.arange(22050) / 22050
    clip = (0.3 * np.sin(2 * np.pi * 220 * t) * (t < 0.6)).astype(np.float32)  # speech, then a pause
    d = [int8.noise_equivalent_distance([clip], snr, 22050) for snr in (20, 40, 60)]
    assert d[0] > d[1] > d[2] > 0


def test_settings_from_config_and_its_environment_override(monkeypatch: pytest.MonkeyPatch) -> None:
    from jetvox.device import config

    monkeypatch.delenv(config.INT8_ENV, raising=False)
    assert int8.settings_for(config.load().provision.int8) is int8.FULL
    monkeypatch.setenv(config.INT8_ENV, "quick")
    assert int8.settings_for(config.load().provision.int8) is int8.QUICK
    monkeypatch.setenv(config.INT8_ENV, "off")
    assert int8.settings_for(config.load().provision.int8) is None
    assert config.load(provision__int8="full").provision.int8 == "full"  # an explicit setting wins
    monkeypatch.setenv(config.INT8_ENV, "fast")
    with pytest.raises(config.ConfigError, match="provision.int8: expected one of full, quick, off"):
        config.load()
    with pytest.raises(ValueError, match="full, quick or off"):
        int8.settings_for("fast")
    assert int8.FULL.max_wer_rise == 0.02 and int8.FULL.eval_sentences == int8.EVAL_SENTENCES


# --------------------------------------------------------------------------- Q/DQ on a small vocoder-shaped graph


def _conv(name: str, x: str, y: str, cin: int, cout: int, rng: np.random.Generator, op: str = "Conv") -> tuple:
    shape = (cin, cout, 4) if op == "ConvTranspose" else (cout, cin, 3)
    w = numpy_helper.from_array((rng.standard_normal(shape) * 0.3).astype(np.float32), f"{name}.w")
    b = numpy_helper.from_array((rng.standard_normal(cout) * 0.1).astype(np.float32), f"{name}.b")
    attrs = {"strides": [2], "pads": [1, 1]} if op == "ConvTranspose" else {"pads": [1, 1]}
    return helper.make_node(op, [x, w.name, b.name], [y], name=name, **attrs), [w, b]


def _tiny_vocoder(path: Path) -> Path:
    """z [1,8,T] -> conv_pre -> up (ConvTranspose) -> residual conv -> conv_post -> tanh -> audio [1, 2T]."""
    rng = np.random.default_rng(0)
    nodes, inits = [], []
    for node, ws in (
        _conv("/dec/conv_pre/Conv", "z", "c0", 8, 16, rng),
        _conv("/dec/ups.0/ConvTranspose", "a0", "u0", 16, 8, rng, "ConvTranspose"),
        _conv("/dec/res/Conv", "a1", "r0", 8, 8, rng),
        _conv("/dec/conv_post/Conv", "a2", "p0", 8, 1, rng),
    ):
        nodes.append(node)
        inits += ws
    nodes += [
        helper.make_node("LeakyRelu", ["c0"], ["a0"], name="/dec/LeakyRelu", alpha=0.1),
        helper.make_node("LeakyRelu", ["u0"], ["a1"], name="/dec/LeakyRelu_1", alpha=0.1),
        helper.make_node("Add", ["r0", "u0"], ["s0"], name="/dec/Add"),
        helper.make_node("LeakyRelu", ["s0"], ["a2"], name="/dec/LeakyRelu_2", alpha=0.1),
        helper.make_node("Tanh", ["p0"], ["t0"], name="/dec/Tanh"),
        helper.make_node("Reshape", ["t0", "shape"], ["audio"], name="jetvox/audio"),
    ]
    inits.append(numpy_helper.from_array(np.array([1, -1], dtype=np.int64), "shape"))
    order = [
        "/dec/conv_pre/Conv", "/dec/LeakyRelu", "/dec/ups.0/ConvTranspose", "/dec/LeakyRelu_1", "/dec/res/Conv",
        "/dec/Add", "/dec/LeakyRelu_2", "/dec/conv_post/Conv", "/dec/Tanh", "jetvox/audio",
    ]
    nodes.sort(key=lambda n: order.index(n.name))
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, [1, 8, "frames"])],
        [helper.make_tensor_value_info("audio", TensorProto.FLOAT, [1, "samples"])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


@pytest.fixture
def tiny(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """(tiny vocoder, its MinMax range cache)."""
    model = _tiny_vocoder(tmp_path / "tiny.onnx")
    rng = np.random.default_rng(1)
    windows = [rng.standard_normal((1, 8, n)).astype(np.float32) for n in (32, 64, 64, 48)]
    caches = qz.calibrate(model, windows, "MinMax", tmp_path, lambda _m: None)
    yield model, caches["MinMax"]


def _dq_of(graph: onnx.GraphProto, tensor: str) -> onnx.NodeProto | None:
    return next((n for n in graph.node if n.op_type == "DequantizeLinear" and n.output[0] == tensor), None)


def test_float_nodes_keeps_float_layers_and_their_neighbourhood() -> None:
    model = onnx.load(str(_tiny_vocoder(Path(__import__("tempfile").mkdtemp()) / "t.onnx")))
    all_int8 = qz.float_nodes(model, [])
    # ConvTranspose is always float; nothing after the last layer (tanh, output) is quantised;
    # an element-wise node between a float and an int8 layer stays float.
    assert set(all_int8) == {"/dec/ups.0/ConvTranspose", "/dec/LeakyRelu", "/dec/LeakyRelu_1", "/dec/Tanh", "jetvox/audio"}
    post_float = qz.float_nodes(model, ["/dec/conv_post/Conv"])
    assert {"/dec/conv_post/Conv", "/dec/Add", "/dec/LeakyRelu_2"} <= set(post_float)
    with pytest.raises(ValueError, match="not in the graph"):
        qz.float_nodes(model, ["/dec/nope"])


def test_quantised_vocoder_has_per_channel_qdq_and_excluded_layers_stay_float(
    tiny: tuple[Path, Path], tmp_path: Path
) -> None:
    model, cache = tiny
    out = tmp_path / "tiny.int8.onnx"
    qz.quantize(model, out, cache, "MinMax", ["/dec/conv_post/Conv"])
    q = onnx.load(str(out))
    ops = [n.op_type for n in q.graph.node]
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops
    inits = {i.name: i for i in q.graph.initializer}
    convs = {n.name: n for n in q.graph.node if n.op_type in ("Conv", "ConvTranspose")}
    for name in ("/dec/conv_pre/Conv", "/dec/res/Conv"):
        dq = _dq_of(q.graph, convs[name].input[1])
        assert dq is not None, f"{name} weight is not dequantised"
        axis = [a.i for a in dq.attribute if a.name == "axis"]
        assert axis == [0], f"{name}: weight scales not per output channel"
        scale = numpy_helper.to_array(inits[dq.input[1]])
        assert scale.shape == (inits[dq.input[0]].dims[0],) and (scale > 0).all()
        assert inits[dq.input[0]].data_type == TensorProto.INT8
        assert not numpy_helper.to_array(inits[dq.input[2]]).any()  # symmetric weights
        assert _dq_of(q.graph, convs[name].input[0]) is not None  # activations quantised too
    for name in ("/dec/conv_post/Conv", "/dec/ups.0/ConvTranspose"):  # excluded / always float
        weight = convs[name].input[1]
        assert weight in inits and inits[weight].data_type == TensorProto.FLOAT
        assert _dq_of(q.graph, convs[name].input[0]) is None, f"{name} input is 8-bit"
    assert _dq_of(q.graph, "audio") is None and all(n.op_type != "QuantizeLinear" or n.input[0] != "t0" for n in q.graph.node)
    summary = qz.qdq_summary(out)
    assert summary["per_channel"] is True
    assert summary["quantized_layers"] == ["/dec/conv_pre/Conv", "/dec/res/Conv"]
    assert summary["float_layers"] == ["/dec/ups.0/ConvTranspose", "/dec/conv_post/Conv"]
    # it runs, and stays close to the float model
    z = np.random.default_rng(5).standard_normal((1, 8, 40)).astype(np.float32)
    ref = ort_session(model).run(None, {"z": z})[0]
    got = ort_session(out).run(None, {"z": z})[0]
    assert got.shape == ref.shape == (1, 80)
    assert float(np.abs(got - ref).max()) < 0.1


def test_polyphase_upsampling_is_exact_and_quantisable(tiny: tuple[Path, Path], tmp_path: Path) -> None:
    model, _ = tiny
    rewritten_model, names = qz.polyphase_upsampling(onnx.load(str(model)))
    assert names == ["/dec/ups.0/ConvTranspose"]
    assert "ConvTranspose" not in [n.op_type for n in rewritten_model.graph.node]
    assert [n.op_type for n in rewritten_model.graph.node if n.name == names[0]] == ["Conv"]
    onnx.checker.check_model(rewritten_model)
    rng = np.random.default_rng(4)
    for frames in (1, 5, 64):
        z = rng.standard_normal((1, 8, frames)).astype(np.float32)
        ref = ort_session(model).run(None, {"z": z})[0]
        got = ort_session(rewritten_model.SerializeToString()).run(None, {"z": z})[0]
        assert got.shape == ref.shape
        np.testing.assert_allclose(got, ref, atol=1e-5)
    # preprocess applies it, and the upsampling layer then quantises like any Conv
    pre = tmp_path / "pre.onnx"
    assert qz.preprocess(model, pre) == names
    windows = [rng.standard_normal((1, 8, 32)).astype(np.float32) for _ in range(3)]
    cache = qz.calibrate(pre, windows, "MinMax", tmp_path, lambda _m: None)["MinMax"]
    out = tmp_path / "pre.int8.onnx"
    qz.quantize(pre, out, cache, "MinMax")
    assert "/dec/ups.0/ConvTranspose" in qz.qdq_summary(out)["quantized_layers"]


def test_symmetric_int8_activations_for_tensorrt(tiny: tuple[Path, Path], tmp_path: Path) -> None:
    model, cache = tiny
    out = tmp_path / "tiny.trt.onnx"
    qz.quantize(model, out, cache, "MinMax", [], activation="int8")
    q = onnx.load(str(out))
    inits = {i.name: i for i in q.graph.initializer}
    qs = [n for n in q.graph.node if n.op_type == "QuantizeLinear"]
    assert qs
    for n in qs:  # TensorRT takes only zero-point 0, signed INT8
        zp = inits[n.input[2]]
        assert zp.data_type == TensorProto.INT8 and not numpy_helper.to_array(zp).any()
    with pytest.raises(ValueError, match="uint8 or int8"):
        qz.quantize(model, out, cache, "MinMax", [], activation="fp8")


def test_percentile_variants_come_from_one_pass(tiny: tuple[Path, Path], tmp_path: Path) -> None:
    model, _ = tiny
    windows = [np.random.default_rng(2).standard_normal((1, 8, 32)).astype(np.float32) for _ in range(3)]
    caches = qz.calibrate(model, windows, "Percentile", tmp_path, lambda _m: None, (99.9, 99.0))
    assert set(caches) == {"Percentile-99.9", "Percentile-99"}
    assert all(p.is_file() for p in caches.values())
    with pytest.raises(ValueError, match="calibration method"):
        qz.calibrate(model, windows, "KL", tmp_path, lambda _m: None)


def test_sensitivity_ranks_every_conv_layer(tiny: tuple[Path, Path], tmp_path: Path) -> None:
    model, cache = tiny
    rng = np.random.default_rng(3)
    held = qz.Heldout.build(model, [rng.standard_normal((1, 8, 48)).astype(np.float32) for _ in range(2)], 22050)
    ranking = qz.sensitivity(model, cache, "MinMax", held, tmp_path, lambda _m: None)
    assert sorted(n for n, _ in ranking) == ["/dec/conv_post/Conv", "/dec/conv_pre/Conv", "/dec/res/Conv"]
    scores = [d for _, d in ranking]
    assert scores == sorted(scores, reverse=True) and all(d >= 0 for d in scores)


class _RecordingVocoder:
    """Stands in for a vocoder engine: audio = frame index repeated hop times."""

    def __init__(self, hop: int) -> None:
        self.hop = hop
        self.windows: list[tuple[int, int]] = []

    def infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        z = feeds["z"]
        a = int(z[0, 0, 0])
        self.windows.append((a, a + z.shape[2]))
        return {"audio": np.repeat(z[:, 0, :], self.hop, axis=1)}

    def run(self, _outputs: Any, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        return [self.infer(feeds)["audio"]]


@pytest.mark.parametrize("frames", [5, 16, 40, 47, 120, 333])
def test_calibration_windows_are_the_runtimes_chunks(frames: int) -> None:
    from jetvox.device.config import SynthesisConfig
    from jetvox.device.synthesis.synthesizer import Synthesizer

    cfg = SynthesisConfig()
    voc = _RecordingVocoder(hop=4)
    synth = Synthesizer(types.SimpleNamespace(hop_length=4, vocoder=voc), cfg)  # type: ignore[arg-type]
    try:
        z = np.broadcast_to(np.arange(frames, dtype=np.float32), (1, 3, frames)).copy()
        runtime = np.concatenate([piece for piece, _ in synth.vocode_chunks(z)])
    finally:
        synth.close()
    from jetvox.device.synthesis.chunks import Chunking

    chunking = Chunking(cfg.first_chunk_frames, cfg.chunk_frames, cfg.overlap_frames)
    assert [(a, b) for a, b, _, _ in chunking.windows(frames)] == voc.windows
    assert [w.shape[2] for w in qz.z_windows([z], chunking)] == [b - a for a, b in voc.windows]
    np.testing.assert_array_equal(qz.vocode_chunked(_RecordingVocoder(4), z, chunking), runtime)


# --------------------------------------------------------------------------- the TensorRT hook


def _platform(**kw: Any) -> Any:
    from jetvox.provisioning.tensorrt.platform import PlatformInfo

    base = dict(
        model="NVIDIA Jetson Orin Nano Developer Kit", is_jetson=True, l4t_version="36.3.0", jetpack_version="6.0",
        tensorrt_version="10.3.0", gpu_name="Orin", sm_version="8.7", fast_int8=True, fast_fp16=True,
        total_memory_bytes=8 << 30,
    )
    return PlatformInfo(**{**base, **kw})


def _entry(file: str, inputs: tuple[TensorSpec, ...] = (), **extra: Any) -> ModelEntry:
    return ModelEntry(file=file, sha256="0", inputs=inputs, outputs=(), quantization=extra)


_Z = (TensorSpec("z", "float32", (1, 192, "frames")),)
_IDS = (TensorSpec("input", "int64", (1, "phonemes")), TensorSpec("input_lengths", "int64", (1,)),
        TensorSpec("scales", "float32", (3,)))
_FRAMES = (TensorSpec("h", "float32", (1, 128, "frames")), TensorSpec("pos", "float32", (1, 1, "frames")))


def _stage_entries(entry: str, stem: str, qdq: int = 0) -> dict[str, ModelEntry]:
    return {
        f"{entry}_encoder": _entry(f"{stem}.encoder.onnx", _IDS, stage="encoder", of=entry, qdq_nodes=0),
        f"{entry}_regulator": _entry(f"{stem}.regulator.onnx", stage="regulator", of=entry, qdq_nodes=0),
        f"{entry}_decoder": _entry(f"{stem}.decoder.onnx", _FRAMES, stage="decoder", of=entry, qdq_nodes=qdq),
    }


def _manifest(tmp_path: Path, vocoder_precision: str = "int8", files: bool = True,
              acoustic_precision: str = "fp32") -> Manifest:
    models = {"acoustic": _entry("acoustic.onnx"), "vocoder": _entry("vocoder.onnx", _Z),
              **_stage_entries("acoustic", "acoustic")}
    if vocoder_precision == "int8":
        models["vocoder_int8"] = _entry("vocoder.int8.onnx", _Z)
    if acoustic_precision == "int8":  # only the flow (the decoder stage) holds Q/DQ nodes
        models |= {"acoustic_int8": _entry("acoustic.int8.onnx"), **_stage_entries("acoustic_int8", "acoustic.int8", 40)}
    if files:
        for entry in models.values():
            (tmp_path / entry.file).write_bytes(entry.file.encode())
    return Manifest(
        voice="v", source=SourceInfo("m", "0", "c", "0"), sample_rate=22050, hop_length=256, latent_channels=192,
        espeak_voice="en-us", phoneme_id_map={}, gain=1.0, models=models,
        precision=Precision(acoustic=acoustic_precision, vocoder=vocoder_precision),
    )


def test_tensorrt_hook_skips_without_tensorrt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from jetvox.device.config import Config
    from jetvox.provisioning.tensorrt import platform
    from jetvox.provisioning.tensorrt import step as engines_step

    monkeypatch.setattr(platform, "detect_platform", lambda *a, **k: _platform(tensorrt_version=None, fast_int8=None, fast_fp16=None, is_jetson=False))
    said: list[str] = []
    data = engines_step.tensorrt_steps(Config(state_dir=tmp_path), _manifest(tmp_path), tmp_path, said.append).apply(
        _manifest(tmp_path)
    )
    assert said == ["TensorRT not available (not installed): ONNX Runtime models only"]
    assert data.tensorrt["available"] is False and "not installed" in data.tensorrt["reason"]
    assert not any(m.trt for m in data.models.values())


def test_tensorrt_hook_records_engines_and_keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from jetvox.device.config import Config
    from jetvox.provisioning.steps import sha256_file
    from jetvox.provisioning.tensorrt import build as trt_build
    from jetvox.provisioning.tensorrt import platform
    from jetvox.provisioning.tensorrt import step as engines_step

    info = _platform()
    monkeypatch.setattr(platform, "detect_platform", lambda *a, **k: info)
    calls: list[dict[str, Any]] = []

    def fake_ensure_engine(onnx_path: Path, out_dir: Path, *, model: str, precision: str, profile: Any, platform: Any, **kw: Any) -> Path:
        key = trt_build.engine_cache_key(sha256_file(Path(onnx_path)), platform, precision, profile)
        path = Path(out_dir) / trt_build.engine_filename(model, precision, key)
        path.write_bytes(b"engine")
        calls.append({"onnx": Path(onnx_path).name, "model": model, "precision": precision, "profile": profile})
        return path

    monkeypatch.setattr(trt_build, "ensure_engine", fake_ensure_engine)
    before = _manifest(tmp_path)
    data = engines_step.tensorrt_steps(Config(state_dir=tmp_path), before, tmp_path, lambda _m: None).apply(before)
    assert [(c["onnx"], c["model"], c["precision"]) for c in calls] == [
        ("acoustic.encoder.onnx", "acoustic_encoder", "fp16"),  # the gate kept FP32: FP16 on a fast-FP16 GPU
        ("acoustic.decoder.onnx", "acoustic_decoder", "fp16"),  # (the regulator is ONNX Runtime's)
        ("vocoder.int8.onnx", "vocoder", "int8"),  # the gate chose INT8: built from the Q/DQ graph
    ]
    models = data.models
    for entry, role, precision in (("acoustic_encoder", "acoustic_encoder", "fp16"),
                                   ("acoustic_decoder", "acoustic_decoder", "fp16"), ("vocoder_int8", "vocoder", "int8")):
        trt = models[entry].trt
        assert trt is not None and trt.file.startswith(f"{role}.{precision}.") and trt.precision == precision
        assert (tmp_path / trt.file).is_file()
        assert trt.key in trt.file
        assert data.tensorrt["engines"][role]["key"] == trt.key
        assert models[entry].to_json()["trt_engine"] == trt.file  # the JSON keeps schema 1's flat keys
    assert models["vocoder"].trt is None and models["acoustic"].trt is None and models["acoustic_regulator"].trt is None
    assert data.tensorrt["available"] is True and data.tensorrt["platform"]["tensorrt_version"] == "10.3.0"
    cfg = Config()
    syn, eng = cfg.synthesis, cfg.engine
    encoder, decoder, vocoder = (c["profile"] for c in calls)
    assert encoder.max == {"input": (1, eng.max_phonemes), "input_lengths": (1,), "scales": (3,)}
    assert decoder.min["h"] == (1, 128, 1) and decoder.max == {"h": (1, 128, eng.max_frames), "pos": (1, 1, eng.max_frames)}
    assert vocoder.opt["z"] == (1, 192, syn.chunk_frames + 2 * syn.overlap_frames)


def test_engine_plan_falls_back_to_fp32_without_fast_fp16() -> None:
    from jetvox.provisioning.tensorrt.step import engine_plan

    data = _manifest(Path("."), vocoder_precision="fp32", files=False)
    assert engine_plan(data, fast_int8=True, fast_fp16=False) == {
        "acoustic_encoder": ("acoustic_encoder", "fp32"), "acoustic_decoder": ("acoustic_decoder", "fp32"),
        "vocoder": ("vocoder", "fp32")}
    data = _manifest(Path("."), vocoder_precision="int8", files=False)
    assert engine_plan(data, fast_int8=False, fast_fp16=True)["vocoder"] == ("vocoder", "fp16")


def test_engine_plan_builds_int8_only_where_a_stage_has_qdq() -> None:
    """Issue 11, defect 5: an INT8 acoustic model is quantised in its flow only; its encoder stage is FP16."""
    from jetvox.provisioning.tensorrt.step import engine_plan

    data = _manifest(Path("."), files=False, acoustic_precision="int8")
    assert engine_plan(data, fast_int8=True, fast_fp16=True) == {
        "acoustic_encoder": ("acoustic_int8_encoder", "fp16"), "acoustic_decoder": ("acoustic_int8_decoder", "int8"),
        "vocoder": ("vocoder_int8", "int8")}
    assert engine_plan(data, fast_int8=False, fast_fp16=True)["acoustic_decoder"] == ("acoustic_decoder", "fp16")


def test_an_acoustic_model_without_stages_gets_no_engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 11, defect 2: the whole acoustic model (data-dependent frame count) is never handed to TensorRT."""
    from jetvox.device.config import Config
    from jetvox.provisioning.tensorrt import build as trt_build
    from jetvox.provisioning.tensorrt import platform
    from jetvox.provisioning.tensorrt import step as engines_step

    monkeypatch.setattr(platform, "detect_platform", lambda *a, **k: _platform())
    built: list[str] = []

    def ensure_engine(onnx_path: Path, out_dir: Path, *, model: str, precision: str, **kw: Any) -> Path:
        built.append(model)
        path = Path(out_dir) / f"{model}.{precision}.engine"
        path.write_bytes(b"engine")
        return path

    monkeypatch.setattr(trt_build, "ensure_engine", ensure_engine)
    full = _manifest(tmp_path)
    whole = full.with_models(acoustic_encoder=None, acoustic_regulator=None, acoustic_decoder=None)
    said: list[str] = []
    data = engines_step.tensorrt_steps(Config(state_dir=tmp_path), whole, tmp_path, said.append).apply(whole)
    assert built == ["vocoder"]
    assert "static-shape stages" in data.tensorrt["engines"]["acoustic"]["error"]
    assert any("TensorRT acoustic: skipped" in line for line in said)


# --------------------------------------------------------------------------- end to end (real voice)

E2E_SETTINGS = dataclasses.replace(int8.QUICK, methods=("Percentile",), heldout_windows=6)
"""Small enough for a test (about a minute here); the real gate runs int8.FULL."""


@pytest.fixture(scope="module")
def int8_state(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Any]]:
    """A fresh state dir provisioned with the E2E settings: (state dir, first provision result)."""
    from jetvox.device import config
    from jetvox.provisioning.pipeline import provision

    state = tmp_path_factory.mktemp("int8-state")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(int8, "settings_for", lambda _level: E2E_SETTINGS)
        result = provision(config.load(state_dir=str(state), voice__name=TEACHER), progress=lambda _m: None)
        yield state, result


@pytest.mark.slow
def test_provisioning_produces_a_gated_int8_vocoder(int8_state: tuple[Path, Any]) -> None:
    state, result = int8_state
    m = result.manifest
    assert {"int8-calibration", "int8-vocoder"} <= set(result.ran)
    assert (result.directory / int8.CALIBRATION_FILE).is_file()
    section = m.int8["vocoder"]
    assert m.precision.vocoder == section["precision"] == "int8", section["reason"]
    entry = m.models["vocoder_int8"]
    path = result.directory / entry.file
    from jetvox.provisioning.steps import sha256_file

    assert entry.sha256 == sha256_file(path)
    assert entry.quantization["excluded_nodes"] == section["excluded_nodes"]
    assert set(entry.quantization["excluded_nodes"]) <= set(entry.quantization["float_layers"])
    summary = qz.qdq_summary(path)
    assert summary["per_channel"] and summary["quantized_layers"]
    assert set(summary["float_layers"]) == set(entry.quantization["float_layers"])
    assert section["wer_int8"] - section["wer_fp32"] <= E2E_SETTINGS.max_wer_rise
    assert 0 < section["log_mel_distance"] <= section["log_mel_max"]
    assert section["speed"]["int8_ms_per_audio_s"] > 0 and section["speed"]["speedup"] > 0
    assert [s["node"] for s in section["sensitivity"]][:1] == ["/dec/conv_post/Conv"]  # the audio-rate output layer hurts most
    assert m.precision.acoustic == "fp32" and "acoustic_int8" not in m.models
    assert m.tensorrt["available"] is False


@pytest.mark.slow
def test_second_provision_is_a_no_op(int8_state: tuple[Path, Any]) -> None:
    from jetvox.device import config
    from jetvox.provisioning.pipeline import provision

    state, first = int8_state
    said: list[str] = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(int8, "settings_for", lambda _level: E2E_SETTINGS)
        again = provision(config.load(state_dir=str(state), voice__name=TEACHER), progress=said.append)
    assert again.ran == ()
    assert {"int8-calibration: up to date", "int8-vocoder: up to date"} <= set(said)
    assert said[-1] == "voice already provisioned; nothing to do"
    assert again.manifest == first.manifest


@pytest.mark.slow
def test_int8_synthesizer_stays_close_to_fp32_on_the_same_z(int8_state: tuple[Path, Any]) -> None:
    """Bound: white noise 40 dB below the speech (the gate's log-mel criterion), measured on this audio."""
    from jetvox.device import config
    from jetvox.device.evaluation.quality import log_mel_distance
    from jetvox.device.synthesis.synthesizer import Synthesizer
    from jetvox.device.voice.loader import load_voice

    state, result = int8_state
    cfg = config.load(state_dir=str(state), voice__name=TEACHER)
    with load_voice(cfg, precision="fp32") as v32, load_voice(cfg, precision="int8") as v8:
        assert v8.vocoder.path.name == result.manifest.models["vocoder_int8"].file
        s32, s8 = Synthesizer(v32, cfg.synthesis), Synthesizer(v8, cfg.synthesis)
        try:
            ids = s32.sentences("The attic is 27.5 °C and the fan has run for 40 minutes.")[0]
            z = s32.acoustic(ids, s32.defaults)
            a32 = np.concatenate([p for p, _ in s32.vocode_chunks(z)])
            a8 = np.concatenate([p for p, _ in s8.vocode_chunks(z)])
        finally:
            s32.close()
            s8.close()
    assert a8.shape == a32.shape
    distance = log_mel_distance(a32, a8, v32.sample_rate)
    bound = int8.noise_equivalent_distance([a32], int8.NOISE_SNR_DB, v32.sample_rate)
    assert 0 < distance <= bound, f"INT8 log-mel distance {distance:.3f} above the 40 dB-noise bound {bound:.3f}"


def test_a_failed_engine_build_falls_back_to_onnx_runtime_for_that_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 11, defect 4: a TensorRT build error must not abort provisioning; the reason is recorded."""
    from jetvox.device.config import Config
    from jetvox.provisioning.tensorrt import build as trt_build
    from jetvox.provisioning.tensorrt import platform
    from jetvox.provisioning.tensorrt import step as engines_step

    monkeypatch.setattr(platform, "detect_platform", lambda *a, **k: _platform())

    def ensure_engine(onnx_path: Path, out_dir: Path, *, model: str, precision: str, **kw: Any) -> Path:
        if model == "vocoder":
            raise trt_build.BuildError("TensorRT could not parse vocoder.int8.onnx: unsupported op")
        path = Path(out_dir) / f"{model}.{precision}.engine"
        path.write_bytes(b"engine")
        return path

    monkeypatch.setattr(trt_build, "ensure_engine", ensure_engine)
    said: list[str] = []
    before = _manifest(tmp_path)
    data = engines_step.tensorrt_steps(Config(state_dir=tmp_path), before, tmp_path, said.append).apply(before)
    assert data.models["acoustic_decoder"].trt is not None and data.models["vocoder_int8"].trt is None
    assert "unsupported op" in data.tensorrt["engines"]["vocoder"]["error"]
    assert any("build failed, ONNX Runtime runs this model" in line for line in said)


def test_loader_opens_the_entry_that_has_this_devices_engine() -> None:
    """Issue 11, defect 8: INT8 chosen by the gate, but the GPU got an FP16 engine of the FP32 graph."""
    from jetvox.device.voice.loader import model_entries
    from jetvox.device.voice.manifest import TrtEngine

    m = _manifest(Path("."), files=False)
    assert model_entries(m, "auto") == {"acoustic": "acoustic", "vocoder": "vocoder_int8"}
    fp16 = m.with_models(vocoder=dataclasses.replace(m.models["vocoder"], trt=TrtEngine("v.fp16.engine", "fp16", "k")))
    assert model_entries(fp16, "auto") == {"acoustic": "acoustic", "vocoder": "vocoder"}
    assert model_entries(fp16, "auto", backend="onnxruntime")["vocoder"] == "vocoder_int8"
    assert model_entries(fp16, "int8")["vocoder"] == "vocoder_int8"  # forced: the user's choice stands
    assert model_entries(fp16, "fp32")["vocoder"] == "vocoder"
    with pytest.raises(ValueError, match="auto, fp32 or int8"):
        model_entries(m, "int4")
