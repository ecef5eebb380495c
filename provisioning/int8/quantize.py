"""Static Q/DQ INT8 quantisation of the vocoder: calibration over z chunks, per-layer sensitivity, mixed precision."""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import onnx
from onnx import helper, numpy_helper

from jetvox.device.evaluation.quality import log_mel_distance
from jetvox.device.synthesis.chunks import Chunking
from jetvox.engines.onnxrt import ort_session
from jetvox.provisioning.int8.calibration import (
    latent,
    seed_noise,
    seeded_acoustic_session,
)

log = logging.getLogger(__name__)

QUANT_VERSION = 1
METHODS = ("MinMax", "Entropy", "Percentile")
ANCHOR_OP_TYPES = ("Conv", "ConvTranspose")
"""The layers the sensitivity pass ranks and may keep in FP32."""
FLOAT_OP_TYPES = ("ConvTranspose",)
"""Always kept in FP32: ONNX Runtime's CPU provider has no INT8 ConvTranspose kernel (a Q/DQ
ConvTranspose is dequantised and run in float, measured no faster), so quantising it would
only add error. ``preprocess`` rewrites the vocoder's upsampling ConvTransposes as Convs, so
only those it cannot rewrite remain."""
# Calibrator settings: ORT's Entropy default (128 bins for 128 quantised bins) can never clip,
# which makes it MinMax; 2048 bins give the KL search room. Percentile: 99.99 per side.
_CALIBRATOR_OPTIONS: dict[str, dict[str, object]] = {
    "MinMax": {},
    "Entropy": {"num_bins": 2048, "num_quantized_bins": 128},
    "Percentile": {"num_bins": 2048, "percentile": 99.99, "symmetric": False},
}
_CALIBRATION_BATCH = 4
"""Windows per calibrator pass: histogram calibrators hold every intermediate tensor of a pass."""


def z_windows(zs: Sequence[np.ndarray], chunking: Chunking, limit: int | None = None) -> list[np.ndarray]:
    """The vocoder inputs the runtime would feed for ``zs``, evenly thinned to at most ``limit``."""
    out = [
        np.ascontiguousarray(z[:, :, a:b]) for z in zs for a, b, _, _ in chunking.windows(z.shape[2])
    ]
    if limit is not None and len(out) > limit:
        keep = np.linspace(0, len(out) - 1, limit).round().astype(int)
        out = [out[i] for i in keep]
    return out


def vocode_chunked(session: Any, z: np.ndarray, chunking: Chunking) -> np.ndarray:
    """Audio of ``z`` vocoded chunk by chunk exactly as the runtime does (1-D float32)."""
    pieces = [piece for piece, _ in chunking.vocode(lambda window: session.run(None, {"z": window})[0], z)]
    return np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.float32)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence ONNX Runtime's quantisation tools, which print and log warnings (on the root logger) freely."""
    qlog = logging.getLogger()
    level = qlog.level
    qlog.setLevel(max(level, logging.ERROR))
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        qlog.setLevel(level)


def preprocess(src: Path, dst: Path) -> list[str]:
    """ONNX Runtime's pre-quantisation pass (shape inference, graph optimisation), then
    ``polyphase_upsampling``; returns the ConvTranspose nodes rewritten."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with _quiet():
        quant_pre_process(str(src), str(dst), skip_symbolic_shape=False)
    model, rewritten = polyphase_upsampling(onnx.load(str(dst)))
    if rewritten:
        onnx.save(model, str(dst))
    return rewritten


def _plain_upsampling(node: onnx.NodeProto, inits: dict[str, onnx.TensorProto]) -> tuple[np.ndarray, int, int] | None:
    """(weight, stride, pad) of a 1-D ConvTranspose whose output is exactly stride x input long, else None."""
    if node.op_type != "ConvTranspose" or node.input[1] not in inits:
        return None
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    w = numpy_helper.to_array(inits[node.input[1]])
    stride = list(attrs.get("strides", [1]))
    pads = list(attrs.get("pads", [0, 0]))
    plain = (
        w.ndim == 3
        and attrs.get("group", 1) == 1
        and list(attrs.get("dilations", [1])) == [1]
        and not any(attrs.get("output_padding", [0]))
        and "output_shape" not in attrs
        and attrs.get("auto_pad", b"NOTSET") in (b"NOTSET", "NOTSET")
        and len(stride) == 1
        and len(pads) == 2
        and pads[0] == pads[1]
    )
    if not plain or w.shape[2] - 2 * pads[0] != stride[0]:
        return None
    return w, stride[0], pads[0]


def _polyphase(
    node: onnx.NodeProto, inits: dict[str, onnx.TensorProto], w: np.ndarray, s: int, p: int
) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]] | None:
    """The Conv + Reshape-Transpose-Reshape nodes (and initializers) replacing one upsampling ConvTranspose."""
    k_len, c_in, c_out = w.shape[2], w.shape[0], w.shape[1]
    taps = [j for r in range(s) for j in range(-k_len, k_len + 1) if 0 <= j * s + r + p < k_len]
    j_min, j_max = min(taps), max(taps)
    if j_max < 0 or j_min > 0:
        return None
    size = j_max - j_min + 1
    v = np.zeros((c_out, s, c_in, size), dtype=w.dtype)
    for r in range(s):
        for u in range(size):
            k = (j_max - u) * s + r + p
            if 0 <= k < k_len:
                v[:, r, :, u] = w[:, :, k].T
    name, y = node.name, node.output[0]
    new_inits = [numpy_helper.from_array(v.reshape(c_out * s, c_in, size), f"{node.input[1]}/polyphase")]
    inputs = [node.input[0], new_inits[0].name]
    if len(node.input) > 2 and node.input[2]:
        bias = np.repeat(numpy_helper.to_array(inits[node.input[2]]), s)
        new_inits.append(numpy_helper.from_array(bias, f"{node.input[2]}/polyphase"))
        inputs.append(new_inits[-1].name)
    new_inits += [
        numpy_helper.from_array(np.array([0, c_out, s, -1], dtype=np.int64), f"{name}/phases_shape"),
        numpy_helper.from_array(np.array([0, c_out, -1], dtype=np.int64), f"{name}/output_shape"),
    ]
    nodes = [
        helper.make_node("Conv", inputs, [f"{y}/phases"], name=name, kernel_shape=[size], pads=[j_max, -j_min]),
        helper.make_node("Reshape", [f"{y}/phases", f"{name}/phases_shape"], [f"{y}/phases4"], name=f"{name}/split"),
        helper.make_node("Transpose", [f"{y}/phases4"], [f"{y}/interleaved"], name=f"{name}/interleave", perm=[0, 1, 3, 2]),
        helper.make_node("Reshape", [f"{y}/interleaved", f"{name}/output_shape"], [y], name=f"{name}/merge"),
    ]
    return nodes, new_inits


def polyphase_upsampling(model: onnx.ModelProto) -> tuple[onnx.ModelProto, list[str]]:
    """Rewrite each 1-D upsampling ConvTranspose (stride s, output length s*T) as a Conv with s
    phases of output channels, interleaved by Reshape-Transpose-Reshape (in place).

    The result is exact (same sums, re-ordered); the Conv has an INT8 kernel in ONNX Runtime
    where ConvTranspose has none. ``y[o, m*s + r] = sum_j x[m - j] W[:, o, j*s + r + p]``:
    phase r of output channel o becomes Conv output channel ``o*s + r`` with taps j.
    Returns the model and the names of the nodes rewritten (the Conv keeps the name).
    """
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    nodes: list[onnx.NodeProto] = []
    rewritten: list[str] = []
    for node in graph.node:
        plain = _plain_upsampling(node, inits)
        replacement = _polyphase(node, inits, *plain) if plain is not None else None
        if replacement is None:
            nodes.append(node)
            continue
        nodes += replacement[0]
        graph.initializer.extend(replacement[1])
        rewritten.append(node.name)
    if rewritten:
        del graph.node[:]
        graph.node.extend(nodes)
        used = {i for n in graph.node for i in n.input}
        kept = [i for i in graph.initializer if i.name in used]
        del graph.initializer[:]
        graph.initializer.extend(kept)
    return model, rewritten


class _WindowReader:
    """A CalibrationDataReader over a list of z windows."""

    def __init__(self, windows: Sequence[np.ndarray]) -> None:
        self._it = iter(windows)

    def get_next(self) -> dict[str, np.ndarray] | None:
        z = next(self._it, None)
        return None if z is None else {"z": z}


def calibrate(
    model: Path,
    windows: Sequence[np.ndarray],
    method: str,
    work: Path,
    say: Callable[[str], None],
    percentiles: Sequence[float] = (),
) -> dict[str, Path]:
    """Collect activation ranges of ``model`` over ``windows``; {variant: ONNX Runtime range cache}.

    One pass per method: the Percentile method's histograms give every percentile in
    ``percentiles`` (variants ``Percentile-99.9`` ...), the others give one variant each.

    Args:
        model: the pre-processed FP32 vocoder.
        windows: z windows shaped like the runtime's chunks.
        method: one of METHODS.
        work: directory for the cache files (``quantize(cache_path=...)`` reads them).
        say: progress callback.
        percentiles: for ``Percentile``: the percentiles to compute (default: ORT's 99.99).
    """
    from onnxruntime.quantization import CalibrationMethod
    from onnxruntime.quantization.calibrate import create_calibrator, save_tensors_data

    if method not in METHODS:
        raise ValueError(f"calibration method must be one of {METHODS}, got {method!r}")
    if not windows:
        raise ValueError("calibration needs at least one z window, got none")
    with tempfile.TemporaryDirectory(prefix="calib-", dir=work) as tmp, _quiet():
        calibrator = create_calibrator(
            model,
            [],
            augmented_model_path=str(Path(tmp) / "augmented.onnx"),
            calibrate_method=getattr(CalibrationMethod, method),
            extra_options=dict(_CALIBRATOR_OPTIONS[method]),
        )
        # One pass may only hold windows of one length (histograms stack them into one array).
        by_length: dict[int, list[np.ndarray]] = {}
        for w in windows:
            by_length.setdefault(w.shape[2], []).append(w)
        batches = [g[n : n + _CALIBRATION_BATCH] for g in by_length.values() for n in range(0, len(g), _CALIBRATION_BATCH)]
        step = max(1, len(batches) // 4)
        done = 0
        for n, batch in enumerate(batches, 1):
            calibrator.collect_data(_WindowReader(batch))
            done += len(batch)
            if n % step == 0 or n == len(batches):
                say(f"calibrate {method} {done}/{len(windows)}")
        out: dict[str, Path] = {}
        if method == "Percentile":
            for pct in percentiles or (float(_CALIBRATOR_OPTIONS[method]["percentile"]),):  # type: ignore[arg-type]
                calibrator.collector.percentile = pct
                out[f"Percentile-{pct:g}"] = work / f"ranges-percentile-{pct:g}.json"
                save_tensors_data(calibrator.compute_data(), out[f"Percentile-{pct:g}"])
        else:
            out[method] = work / f"ranges-{method.lower()}.json"
            save_tensors_data(calibrator.compute_data(), out[method])
        return out


def float_nodes(model: onnx.ModelProto, excluded: Sequence[str]) -> list[str]:
    """Every node to keep in FP32 when the layers ``excluded`` are.

    Layers (Conv, ConvTranspose) stay float when excluded or of FLOAT_OP_TYPES. An
    element-wise node between layers (activation, residual add) is quantised when a
    quantised Conv lies both before and after it (through element-wise nodes only): so a
    chain of int8 layers stays int8 end to end, and nothing before the first or after the
    last quantised layer (the audio output) is ever quantised. Measured on the Piper
    vocoder: the same log-mel distance as also floating every element-wise node next to a
    float layer, and faster.
    """
    nodes = list(model.graph.node)
    names = {n.name for n in nodes}
    unknown = sorted(set(excluded) - names)
    if unknown:
        raise ValueError(f"nodes to exclude are not in the graph: {unknown[:3]}")
    producer = {o: n for n in nodes for o in n.output}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for n in nodes:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    float_layers = {n.name for n in nodes if n.op_type in FLOAT_OP_TYPES} | set(excluded)

    def reaches_int8_layer(node: onnx.NodeProto, upstream: bool) -> bool:
        """Whether a quantised layer is reachable from ``node`` through element-wise nodes."""
        seen = {node.name}
        todo = [node]
        while todo:
            cur = todo.pop()
            if upstream:
                nxt = [producer[i] for i in cur.input if i in producer]
            else:
                nxt = [c for o in cur.output for c in consumers.get(o, [])]
            for n in nxt:
                if n.name in seen:
                    continue
                seen.add(n.name)
                if n.op_type not in ANCHOR_OP_TYPES:
                    todo.append(n)
                elif n.name not in float_layers:
                    return True
        return False

    out = []
    for n in nodes:
        if n.op_type in ANCHOR_OP_TYPES:
            if n.name in float_layers:
                out.append(n.name)
        elif not (reaches_int8_layer(n, True) and reaches_int8_layer(n, False)):
            out.append(n.name)
    return out


def layers(model: onnx.ModelProto) -> list[str]:
    """Names of the Conv layers the sensitivity pass ranks, in graph order."""
    return [n.name for n in model.graph.node if n.op_type in ANCHOR_OP_TYPES and n.op_type not in FLOAT_OP_TYPES]


def quantize(
    model: Path,
    out: Path,
    cache_path: Path,
    method: str,
    excluded: Sequence[str] = (),
    activation: str = "uint8",
) -> list[str]:
    """Write a Q/DQ INT8 model (per-channel symmetric INT8 weights); returns the nodes left in FP32.

    Args:
        model: the pre-processed FP32 vocoder.
        out: where the quantised model goes.
        cache_path: ranges from ``calibrate`` (same ``method``).
        method: the calibration method that produced ``cache_path``.
        excluded: Conv layers to keep in FP32 (their neighbourhood follows, see ``float_nodes``).
        activation: ``uint8`` (asymmetric: fastest on x86 ONNX Runtime) or ``int8`` (symmetric,
            zero point 0: what TensorRT requires).
    """
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    if activation not in ("uint8", "int8"):
        raise ValueError(f"activation must be uint8 or int8, got {activation!r}")
    source = onnx.load(str(model))
    keep = float_nodes(source, excluded)
    extra: dict[str, object] = {"WeightSymmetric": True}
    if activation == "int8":
        extra["ActivationSymmetric"] = True
    with _quiet():
        quantize_static(
            str(model),
            str(out),
            None,
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            reduce_range=activation == "uint8" and saturating_u8s8_cpu(),
            activation_type=QuantType.QUInt8 if activation == "uint8" else QuantType.QInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=getattr(CalibrationMethod, method),
            nodes_to_exclude=keep,
            calibration_cache_path=str(cache_path),
            extra_options=extra,
        )
    log.debug("quantised %s: %d of %d nodes left in FP32", out.name, len(keep), len(source.graph.node))
    return keep


def saturating_u8s8_cpu(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """Whether ONNX Runtime's uint8 x int8 kernels can saturate here: x86 with AVX2 but no VNNI.

    Without VNNI, MLAS multiplies u8 by s8 with ``vpmaddubsw``, whose int16 pair sums saturate
    for large weights; ONNX Runtime's documented remedy is 7-bit weights (``reduce_range``).
    Measured on an AVX2-only EPYC: the tiny test vocoder's error 0.24 -> 0.10 with it.
    """
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        return False
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return "avx2" in flags and not ({"avx512_vnni", "avx_vnni"} & set(flags))


@dataclass(frozen=True)
class Heldout:
    """Held-out z windows and the FP32 vocoder's audio for them: the sensitivity pass's yardstick."""

    windows: tuple[np.ndarray, ...]
    """Chunk-shaped z windows never used for calibration."""
    reference: tuple[np.ndarray, ...]
    """FP32 audio per window."""
    sample_rate: int
    """Audio sample rate."""

    @classmethod
    def build(cls, fp32_model: Path, windows: Sequence[np.ndarray], sample_rate: int) -> "Heldout":
        """Run the FP32 model once over ``windows`` for the reference audio."""
        session = ort_session(fp32_model)
        ref = tuple(session.run(None, {"z": w})[0].reshape(-1) for w in windows)
        return cls(tuple(windows), ref, sample_rate)

    def distance(self, model: Path) -> float:
        """Mean log-mel distance of ``model``'s audio to FP32 over the windows."""
        session = ort_session(model)
        return float(
            np.mean(
                [
                    log_mel_distance(r, session.run(None, {"z": w})[0].reshape(-1), self.sample_rate)
                    for w, r in zip(self.windows, self.reference)
                ]
            )
        )


def sensitivity(
    model: Path,
    cache_path: Path,
    method: str,
    heldout: Heldout,
    work: Path,
    say: Callable[[str], None],
    activation: str = "uint8",
) -> list[tuple[str, float]]:
    """Each Conv layer's harm: held-out log-mel distance with only that layer quantised, worst first."""
    graph = onnx.load(str(model))
    names = layers(graph)
    scores = []
    for n, name in enumerate(names, 1):
        others = [x for x in names if x != name]
        path = work / "sensitivity.onnx"
        quantize(model, path, cache_path, method, others, activation)
        scores.append((name, heldout.distance(path)))
        if n % 4 == 0 or n == len(names):
            say(f"sensitivity {n}/{len(names)}")
    return sorted(scores, key=lambda s: -s[1])


def qdq_summary(model: Path | onnx.ModelProto) -> dict[str, Any]:
    """What a Q/DQ model quantises: per-channel weight layers, float layers, Q and DQ node counts."""
    graph = (onnx.load(str(model)) if isinstance(model, Path) else model).graph
    inits = {i.name for i in graph.initializer}
    producer = {o: n for n in graph.node for o in n.output}
    quantised, floating = [], []
    per_channel = True
    for n in graph.node:
        if n.op_type not in ANCHOR_OP_TYPES:
            continue
        w = producer.get(n.input[1])
        if w is not None and w.op_type == "DequantizeLinear" and w.input[0] in inits:
            quantised.append(n.name)
            axis = next((a.i for a in w.attribute if a.name == "axis"), None)
            scale = next((i for i in graph.initializer if i.name == w.input[1]), None)
            if axis is None or scale is None or len(scale.dims) != 1:
                per_channel = False
        else:
            floating.append(n.name)
    return {
        "quantized_layers": quantised,
        "float_layers": floating,
        "per_channel": per_channel and bool(quantised),
        "quantize_nodes": sum(n.op_type == "QuantizeLinear" for n in graph.node),
        "dequantize_nodes": sum(n.op_type == "DequantizeLinear" for n in graph.node),
    }


def _alternating(count: int, rounds: int) -> Iterator[int]:
    """Model indices round by round, every other round reversed, so load drift hits all models alike."""
    for r in range(rounds):
        yield from (reversed(range(count)) if r % 2 else range(count))


def time_vocoders(
    models: Sequence[Path],
    zs: Sequence[np.ndarray],
    chunking: Chunking,
    sample_rate: int,
    rounds: int = 3,
) -> list[dict[str, float]]:
    """Vocoder time per second of audio for each model, on this CPU, through the runtime's chunking.

    Rounds alternate the models so a load change on a shared machine hits them alike;
    each figure is the median over rounds. Wall time uses ONNX Runtime's default threads;
    CPU time (all threads) is reported beside it as the load-independent cost.
    """
    sessions = [ort_session(m) for m in models]
    for s in sessions:  # warm-up: first runs allocate and pick kernels
        vocode_chunked(s, zs[0], chunking)
    audio_s = 1.0
    wall: list[list[float]] = [[] for _ in sessions]
    cpu: list[list[float]] = [[] for _ in sessions]
    for k in _alternating(len(sessions), rounds):
        w0, c0 = time.perf_counter(), time.process_time()
        samples = sum(vocode_chunked(sessions[k], z, chunking).shape[0] for z in zs)
        wall[k].append(time.perf_counter() - w0)
        cpu[k].append(time.process_time() - c0)
        audio_s = samples / sample_rate
    return [
        {
            "ms_per_audio_s": 1000.0 * float(np.median(w)) / audio_s,
            "cpu_ms_per_audio_s": 1000.0 * float(np.median(c)) / audio_s,
            "audio_s": audio_s,
        }
        for w, c in zip(wall, cpu)
    ]


ACOUSTIC_PARTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("all Conv and MatMul layers", ("",)),
    ("encoder and flow", ("/enc_p/", "/flow/")),
    ("flow", ("/flow/",)),
)
"""Acoustic-model parts to quantise (node-name prefixes of Piper's VITS export), most first: the
gate tries them in this order. Quantising the text encoder or the duration predictor moves
phoneme durations; the flow alone does not."""


def acoustic_layers(model: Path, prefixes: Sequence[str]) -> list[str]:
    """Conv and MatMul nodes of the acoustic model whose names start with one of ``prefixes``."""
    graph = onnx.load(str(model), load_external_data=False).graph
    return [n.name for n in graph.node if n.op_type in ("Conv", "MatMul") and n.name.startswith(tuple(prefixes))]


def preprocess_acoustic(src: Path, dst: Path) -> None:
    """``preprocess`` for the acoustic model (symbolic shape inference cannot follow its data-dependent lengths)."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with _quiet():
        quant_pre_process(str(src), str(dst), skip_symbolic_shape=True)


def quantize_acoustic(
    model: Path,
    out: Path,
    feeds: Sequence[dict[str, np.ndarray]],
    layers: Sequence[str],
    cache_path: Path,
    activation: str = "uint8",
) -> None:
    """Q/DQ INT8 of the acoustic model's Conv and MatMul ``layers``, MinMax-calibrated on ``feeds``.

    Everything else (embedding lookups, masks, int64 shape arithmetic, element-wise maths)
    stays float: it is cheap, and index tensors cannot be quantised. The ranges are
    cached in ``cache_path`` on the first call and reused by later ones.

    Args:
        model: the pre-processed FP32 acoustic model (``preprocess_acoustic``).
        out: where the quantised model goes.
        feeds: acoustic-model inputs for calibration (unused once the cache exists).
        layers: node names to quantise (``acoustic_layers``).
        cache_path: calibration range cache.
        activation: ``uint8`` or ``int8`` (symmetric, for TensorRT), as for ``quantize``.
    """
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    if not layers:
        raise ValueError("no acoustic layers to quantise")
    extra: dict[str, object] = {"WeightSymmetric": True}
    if activation == "int8":
        extra["ActivationSymmetric"] = True
    # Calibrate with seeded noise (reproducible ranges), then ship the model unseeded like the FP32 one.
    seeded = out.with_name(out.stem + ".seeded.onnx")
    onnx.save(seed_noise(onnx.load(str(model))), str(seeded))
    with _quiet():
        quantize_static(
            str(seeded),
            str(out),
            None if cache_path.is_file() else _FeedReader(feeds),
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=["Conv", "MatMul"],
            nodes_to_quantize=list(layers),
            per_channel=True,
            activation_type=QuantType.QUInt8 if activation == "uint8" else QuantType.QInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
            calibration_cache_path=str(cache_path),
            extra_options=extra,
        )
    onnx.save(seed_noise(onnx.load(str(out)), None), str(out))
    seeded.unlink()


class _FeedReader:
    """A CalibrationDataReader over prepared feeds."""

    def __init__(self, feeds: Sequence[dict[str, np.ndarray]]) -> None:
        self._it = iter(feeds)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._it, None)


def time_acoustic(
    models: Sequence[Path], pieces: Sequence[Sequence[int]], scales: Sequence[float], rounds: int = 3
) -> list[float]:
    """Milliseconds per sentence for each acoustic model (seeded noise, alternating rounds, median)."""
    sessions = [seeded_acoustic_session(m) for m in models]
    for s in sessions:
        latent(s, pieces[0], scales)
    times: list[list[float]] = [[] for _ in sessions]
    for k in _alternating(len(sessions), rounds):
        t0 = time.perf_counter()
        for ids in pieces:
            latent(sessions[k], ids, scales)
        times[k].append((time.perf_counter() - t0) / len(pieces))
    return [1000.0 * float(np.median(t)) for t in times]
