"""INT8 provisioning steps: calibration corpus, quantised vocoder (and acoustic model where it pays), quality gate."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from jetvox.device.config import Config
from jetvox.device.evaluation.naturalness import mean_naturalness
from jetvox.device.evaluation.quality import (
    log_mel_distance,
    transcribe,
    word_error_rate,
)
from jetvox.device.evaluation.sentences import EVAL_SENTENCES, check_disjoint
from jetvox.device.storage import atomic_path
from jetvox.device.synthesis.chunks import Chunking
from jetvox.device.synthesis.feeds import acoustic_feeds
from jetvox.device.text import FRONTEND_VERSION
from jetvox.device.text.normalize import prepare
from jetvox.device.text.phonemes import Phonemizer
from jetvox.device.voice.manifest import Manifest, ModelEntry, Precision
from jetvox.engines.onnxrt import ort_session
from jetvox.provisioning.int8 import calibration as cal
from jetvox.provisioning.int8 import quantize as qz
from jetvox.provisioning.steps import ProvisionError, StepRunner, sha256_file
from jetvox.provisioning.tensorrt.platform import detect_platform

log = logging.getLogger(__name__)

INT8_VERSION = 2
"""2: the gate also requires naturalness (DNSMOS P.808) to fall by at most MAX_P808_DROP."""
CALIBRATION_FILE = "calibration.npz"
VOCODER_INT8 = "vocoder.int8.onnx"
ACOUSTIC_INT8 = "acoustic.int8.onnx"
MAX_WER_RISE = 0.02
"""The issue's bound: the pooled WER on EVAL_SENTENCES may rise by at most this much."""
MAX_P808_DROP = 0.05
"""Naturalness: the mean DNSMOS P.808 on EVAL_SENTENCES may fall by at most this much (WER cannot hear it)."""
NOISE_SNR_DB = 40.0
"""Log-mel bound: no more spectral change than white noise this far below the speech adds."""
MIN_ACOUSTIC_SPEEDUP = 1.2
"""Below this measured speed-up an INT8 acoustic model is not worth its quality risk."""


@dataclass(frozen=True)
class Int8Settings:
    """How much work the INT8 steps do (all of it goes into the step keys)."""

    calibration_sentences: int = cal.DEFAULT_SIZE
    """Generated calibration sentences (the corpus)."""
    calibration_seed: int = cal.DEFAULT_SEED
    """Seed of the template generator."""
    calibration_windows: int = 96
    """Chunk-shaped z windows the vocoder is calibrated on (evenly drawn from the corpus)."""
    heldout_every: int = 8
    """Every n-th calibration sentence is held out for the sensitivity pass."""
    heldout_windows: int = 16
    """Held-out windows scored in the sensitivity pass."""
    methods: tuple[str, ...] = qz.METHODS
    """Calibration methods tried; the best on held-out chunks is kept."""
    percentiles: tuple[float, ...] = (99.99, 99.9, 99.5)
    """Percentile variants computed from the Percentile method's one histogram pass."""
    eval_sentences: tuple[str, ...] = EVAL_SENTENCES
    """The gate's sentences (never calibrated on)."""
    max_wer_rise: float = MAX_WER_RISE
    """Largest pooled WER rise a quantised model may cause."""
    noise_snr_db: float = NOISE_SNR_DB
    """Log-mel bound, as the SNR of the white noise that would cause the same distance."""
    ladder: tuple[float, ...] = (1.1, 1.0, 0.7, 0.5)
    """Gate attempts: fewest FP32 layers whose held-out distance is within these fractions of the
    held-out bound. The held-out chunks only predict the gate, so the first try is a little looser."""
    more_layers: int = 2
    """When every ladder attempt fails, up to this many more, each with the next most sensitive layer in FP32:
    the gate's WER moves a word at a time, so a model one layer nearer FP32 is tried before INT8 is given up."""
    timing_sentences: int = 8
    """Eval sentences timed for the speed-up figures."""
    timing_rounds: int = 3
    """Alternating timing rounds (the median is kept)."""
    acoustic: bool = True
    """Also try an INT8 acoustic model."""
    acoustic_calibration: int = 48
    """Calibration pieces for the acoustic model."""


FULL = Int8Settings()
QUICK = Int8Settings(
    calibration_sentences=24,
    calibration_windows=24,
    heldout_every=4,
    heldout_windows=6,
    methods=("MinMax", "Percentile"),
    percentiles=(99.9,),
    eval_sentences=EVAL_SENTENCES[:6],
    max_wer_rise=0.1,
    timing_sentences=3,
    timing_rounds=1,
    acoustic=False,
)
"""For tests: minutes less, and a gate too small to be precise (6 sentences: one word is ~0.017 WER)."""


def settings_for(level: str) -> Int8Settings | None:
    """The settings ``provision.int8`` names (``full``, ``quick`` or ``off``); None means skip INT8."""
    if level == "full":
        return FULL
    if level == "quick":
        return QUICK
    if level == "off":
        return None
    raise ValueError(f"provision.int8 must be full, quick or off, got {level!r}")


# --------------------------------------------------------------------------- the gate


@dataclass(frozen=True)
class GateFigures:
    """What the gate measured for one quantised model against its FP32 reference."""

    wer_fp32: float
    """Pooled WER of the FP32 model's audio."""
    wer_int8: float
    """Pooled WER of the quantised model's audio."""
    log_mel: float | None
    """Mean log-mel distance to the FP32 audio (None: could not be measured, which fails)."""
    log_mel_max: float
    """The largest log-mel distance allowed."""
    p808_fp32: float | None = None
    """Mean DNSMOS P.808 of the FP32 model's audio (None: not measured, which fails)."""
    p808_int8: float | None = None
    """Mean DNSMOS P.808 of the quantised model's audio."""


@dataclass(frozen=True)
class Verdict:
    """The gate's decision on one model."""

    passed: bool
    """Whether the model may be used."""
    reason: str
    """Why, with the figures."""


def judge(fig: GateFigures, max_wer_rise: float = MAX_WER_RISE, max_p808_drop: float = MAX_P808_DROP) -> Verdict:
    """Pass when the WER rises by at most ``max_wer_rise``, the log-mel distance is measured and within its bound,
    and the mean P.808 is measured and falls by at most ``max_p808_drop``.

    Args:
        fig: the measured figures.
        max_wer_rise: the largest allowed rise of the pooled WER.
        max_p808_drop: the largest allowed fall of the mean DNSMOS P.808.
    """
    rise = fig.wer_int8 - fig.wer_fp32
    wer_ok = rise <= max_wer_rise + 1e-9
    mel_ok = fig.log_mel is not None and fig.log_mel <= fig.log_mel_max
    wer_txt = f"WER {fig.wer_fp32:.3f} -> {fig.wer_int8:.3f} ({rise:+.3f}, limit +{max_wer_rise:.3f})"
    mel_txt = (
        "log-mel distance not measured"
        if fig.log_mel is None
        else f"log-mel distance {fig.log_mel:.3f} (limit {fig.log_mel_max:.3f})"
    )
    mel_problem = "log-mel distance too large" if fig.log_mel is not None else "no log-mel distance"
    problems = ([] if wer_ok else ["WER rose too much"]) + ([] if mel_ok else [mel_problem])
    if fig.p808_fp32 is None or fig.p808_int8 is None:
        p808_txt = "P.808 not measured"
        problems.append("no P.808")
    else:
        drop = fig.p808_fp32 - fig.p808_int8
        p808_txt = f"P.808 {fig.p808_fp32:.3f} -> {fig.p808_int8:.3f} ({-drop:+.3f}, limit -{max_p808_drop:.3f})"
        if drop > max_p808_drop + 1e-9:
            problems.append("P.808 fell too much")
    verdict = "passed" if not problems else "failed: " + " and ".join(problems)
    return Verdict(passed=not problems, reason=f"{verdict}; {wer_txt}; {mel_txt}; {p808_txt}")


def choose(attempts: Sequence[tuple[str, Verdict]]) -> tuple[str, int | None, str]:
    """(precision, index of the attempt used or None, reason) from the gate's attempts, in order."""
    for n, (label, verdict) in enumerate(attempts):
        if verdict.passed:
            earlier = f" after {n} failed attempt(s)" if n else ""
            return "int8", n, f"{label} {verdict.reason}{earlier}"
    if not attempts:
        return "fp32", None, "no INT8 model was tried"
    tried = "; ".join(f"{label} {v.reason}" for label, v in attempts)
    return "fp32", None, f"every INT8 attempt failed the gate, FP32 kept ({tried})"


def ladder(curve: Sequence[float], bound: float, fractions: Sequence[float]) -> list[int]:
    """Gate attempts: for each fraction, the fewest FP32 layers k with curve[k] <= fraction * bound.

    ``curve[k]`` is the held-out log-mel distance with the k most sensitive layers in FP32.
    Duplicates are dropped; order follows ``fractions`` (looser first).
    """
    out: list[int] = []
    for f in fractions:
        k = next((k for k, d in enumerate(curve) if d <= f * bound), None)
        if k is not None and k not in out:
            out.append(k)
    return out


def with_more_layers(attempts: Sequence[int], layers: int, more: int) -> list[int]:
    """``attempts`` followed by up to ``more`` attempts with one more FP32 layer each (at most ``layers``).

    No attempt at all (the held-out chunks found no INT8 model close enough) stays none.
    """
    if not attempts:
        return []
    last = max(attempts)
    return [*attempts, *range(last + 1, min(layers, last + more) + 1)]


def noise_equivalent_distance(audio: Sequence[np.ndarray], snr_db: float, sample_rate: int, seed: int = 0) -> float:
    """Mean log-mel distance that white noise ``snr_db`` below each clip's level would cause."""
    rng = np.random.default_rng(seed)
    out = []
    for clip in audio:
        power = float(np.mean(np.square(clip, dtype=np.float64)))
        noise = rng.standard_normal(clip.shape) * np.sqrt(power / 10 ** (snr_db / 10))
        out.append(log_mel_distance(clip, (clip + noise).astype(np.float32), sample_rate))
    return float(np.mean(out))


# --------------------------------------------------------------------------- evaluation audio


@dataclass(frozen=True)
class EvalSet:
    """The gate's sentences as the device would speak them."""

    refs: tuple[str, ...]
    """Normalised text per sentence (the WER references)."""
    ids: tuple[tuple[tuple[int, ...], ...], ...]
    """Phoneme ids per piece per sentence."""
    z: tuple[tuple[np.ndarray, ...], ...]
    """FP32 acoustic latent frames per piece per sentence (seeded noise)."""


def build_eval(
    sentences: Sequence[str], acoustic: Path, phonemizer: Any, scales: Sequence[float], max_chars: int
) -> EvalSet:
    """Normalise, phonemise and run the FP32 acoustic model (seeded) on the gate's sentences."""
    session = cal.seeded_acoustic_session(acoustic)
    refs, ids, zs = [], [], []
    for sentence in sentences:
        pieces = [p for p in prepare(sentence, max_chars) if phonemizer.sentence_ids(p)]
        refs.append(" ".join(pieces))
        piece_ids = tuple(tuple(phonemizer.sentence_ids(p)) for p in pieces)
        ids.append(piece_ids)
        zs.append(tuple(cal.latent(session, i, scales) for i in piece_ids))
    return EvalSet(tuple(refs), tuple(ids), tuple(zs))


def render(session: Any, zs: Sequence[Sequence[np.ndarray]], chunking: Chunking, gain: float) -> list[np.ndarray]:
    """Audio per sentence as the runtime plays it: chunked vocoding, the voice's gain, clipped."""
    return [
        np.clip(np.concatenate([qz.vocode_chunked(session, z, chunking) for z in pieces]) * gain, -1.0, 1.0)
        for pieces in zs
    ]


def transcripts(audio: Sequence[np.ndarray], sample_rate: int, say: Callable[[str], None], label: str) -> list[str]:
    """pocketsphinx transcripts, with progress."""
    out = []
    for n, clip in enumerate(audio, 1):
        out.append(transcribe(clip, sample_rate))
        if n % 8 == 0 or n == len(audio):
            say(f"gate {label}: transcribed {n}/{len(audio)}")
    return out


def mean_log_mel(a: Sequence[np.ndarray], b: Sequence[np.ndarray], sample_rate: int) -> float:
    return float(np.mean([log_mel_distance(x, y, sample_rate) for x, y in zip(a, b)]))


# --------------------------------------------------------------------------- the steps


@dataclass
class _Context:
    """What the INT8 steps share."""

    cfg: Config
    """The configuration (chunking, sentence limit, synthesis defaults)."""
    out_dir: Path
    """The voice's directory."""
    manifest: Manifest
    """The voice so far (split and verified, FP32)."""
    settings: Int8Settings
    """How much work to do."""
    say: Callable[[str], None]
    """Progress callback."""
    activation: str
    """Activation type of the quantised models (``uint8`` or ``int8``)."""
    chunking: Chunking = dataclasses.field(init=False)
    """The runtime's vocoder chunking, from ``cfg.synthesis``."""

    def __post_init__(self) -> None:
        self.chunking = Chunking.of(self.cfg.synthesis)

    @property
    def sample_rate(self) -> int:
        return self.manifest.sample_rate

    @property
    def gain(self) -> float:
        return self.manifest.gain

    @property
    def scales(self) -> tuple[float, float, float]:
        """The voice's default noise_scale, length_scale, noise_w (what the runtime uses)."""
        inf = self.manifest.inference
        s = self.cfg.synthesis
        return (
            float(inf.get("noise_scale", s.noise_scale)),
            float(inf.get("length_scale", s.length_scale)),
            float(inf.get("noise_w", s.noise_w)),
        )

    def model(self, role: str) -> Path:
        return self.out_dir / self.manifest.model(role).file

    def phonemizer(self) -> Phonemizer:
        return Phonemizer(self.manifest.espeak_voice, self.manifest.phoneme_id_map)


@dataclass(frozen=True)
class Int8Result:
    """What the INT8 steps decided: the precision per model, the INT8 entries that passed, the report."""

    precision: Precision
    """FP32 or INT8 per model, as the gate chose."""
    models: dict[str, ModelEntry]
    """``vocoder_int8`` / ``acoustic_int8`` for the models that passed."""
    report: dict[str, Any]
    """Figures and reasons (the manifest's ``int8`` section)."""

    def apply(self, manifest: Manifest) -> Manifest:
        """The manifest with these models, precisions and report."""
        return dataclasses.replace(manifest.with_models(**self.models), precision=self.precision, int8=self.report)


def _step_keys(ctx: _Context) -> tuple[dict[str, Any], dict[str, Any]]:
    """Cache keys of the calibration step and of the quantisation steps: inputs, settings, versions."""
    m, s = ctx.manifest, ctx.settings
    phoneme_map = hashlib.sha256(json.dumps(m.phoneme_id_map, sort_keys=True).encode()).hexdigest()
    calibration = {
        "acoustic": m.model("acoustic").sha256,
        "corpus": cal.CORPUS_VERSION,
        "frontend": FRONTEND_VERSION,
        "count": s.calibration_sentences,
        "seed": s.calibration_seed,
        "noise_seed": cal.NOISE_SEED,
        "scales": ctx.scales,
        "max_chars": ctx.cfg.synthesis.max_sentence_chars,
        "espeak_voice": m.espeak_voice,
        "phoneme_id_map": phoneme_map,
        "versions": dict(m.versions),
    }
    quantisation = {
        "int8": INT8_VERSION,
        "quantize": qz.QUANT_VERSION,
        "frontend": FRONTEND_VERSION,
        "settings": dataclasses.asdict(s),
        "acoustic": m.model("acoustic").sha256,
        "vocoder": m.model("vocoder").sha256,
        "chunking": dataclasses.astuple(ctx.chunking),
        "gain": m.gain,
        "scales": ctx.scales,
        "activation": ctx.activation,
        "reduce_range": ctx.activation == "uint8" and qz.saturating_u8s8_cpu(),
        "versions": dict(m.versions),
    }
    return calibration, quantisation


def int8_steps(
    cfg: Config, manifest: Manifest, out_dir: Path, runner: StepRunner, say: Callable[[str], None]
) -> Int8Result:
    """Provisioning step: calibration corpus, INT8 vocoder (and acoustic) behind the quality gate.

    Args:
        cfg: the configuration (``provision.int8``, chunking and synthesis defaults).
        manifest: the voice, split and verified in FP32.
        out_dir: the voice's directory.
        runner: the step runner (caching).
        say: progress callback.
    """
    settings = settings_for(cfg.provision.int8)
    if settings is None:
        say("INT8: skipped (provision.int8 is off); FP32 models only")
        return Int8Result(Precision(), {}, {"skipped": "provision.int8=off"})
    # TensorRT takes only symmetric INT8 (zero point 0); on ONNX Runtime x86 asymmetric uint8
    # activations measured faster (VNNI u8s8 kernels) and more accurate.
    activation = "int8" if detect_platform(probe_gpu=False).tensorrt_version else "uint8"
    ctx = _Context(cfg, out_dir, manifest, settings, say, activation)
    calibration_key, key = _step_keys(ctx)
    calib_path = out_dir / CALIBRATION_FILE
    corpus = runner.run("int8-calibration", calibration_key, [calib_path], lambda: _calibration_step(ctx, calib_path))
    key = {**key, "calibration": corpus["outputs"]}
    vocoder_out = out_dir / VOCODER_INT8
    voc = runner.run("int8-vocoder", key, [vocoder_out], lambda: _vocoder_step(ctx, calib_path, vocoder_out))["info"]
    report: dict[str, Any] = {"activation": activation, "calibration_sentences": settings.calibration_sentences,
                              "vocoder": voc}
    models: dict[str, ModelEntry] = {}
    if voc["precision"] == "int8":
        models["vocoder_int8"] = _int8_entry(
            manifest.model("vocoder"), vocoder_out, excluded_nodes=voc["excluded_nodes"],
            float_layers=voc["float_layers"], calibration=voc["calibration"]["chosen"], activation=activation,
        )
    ac: dict[str, Any] = {"precision": "fp32", "reason": "not tried (settings.acoustic is off)"}
    if settings.acoustic:
        acoustic_out = out_dir / ACOUSTIC_INT8
        ac = runner.run("int8-acoustic", key, [acoustic_out], lambda: _acoustic_step(ctx, calib_path, acoustic_out))[
            "info"
        ]
        if ac["precision"] == "int8":
            models["acoustic_int8"] = _int8_entry(
                manifest.model("acoustic"), acoustic_out, quantized_part=ac["part"], activation=activation
            )
    report["acoustic"] = ac
    return Int8Result(Precision(acoustic=ac["precision"], vocoder=voc["precision"]), models, report)


def _int8_entry(fp32: ModelEntry, path: Path, **quantization: Any) -> ModelEntry:
    """Manifest entry of an INT8 model: the FP32 model's tensors, the file, its hash and how it was quantised."""
    return ModelEntry(path.name, sha256_file(path), fp32.inputs, fp32.outputs, quantization=quantization)


def _calibration_step(ctx: _Context, path: Path) -> dict[str, Any]:
    sentences = cal.generate_sentences(ctx.settings.calibration_sentences, ctx.settings.calibration_seed)
    check_disjoint(sentences)
    ctx.say(f"calibration corpus: {len(sentences)} sentences (seed {ctx.settings.calibration_seed})")
    cset = cal.build_calibration_set(
        sentences, ctx.model("acoustic"), ctx.phonemizer(), ctx.scales, ctx.cfg.synthesis.max_sentence_chars, ctx.say
    )
    with atomic_path(path) as tmp:
        cset.save(tmp)
    frames = sum(z.shape[2] for z in cset.z)
    return {"sentences": len(sentences), "pieces": len(cset.z), "frames": frames}


@dataclass
class _VocoderGate:
    """What the gate on the evaluation sentences found for the vocoder."""

    wer_fp32: float
    """Pooled WER of the FP32 vocoder."""
    bound: float
    """Log-mel bound (white noise ``noise_snr_db`` below the speech)."""
    figures: list[dict[str, Any]]
    """One record per attempt."""
    precision: str
    """``int8`` or ``fp32``."""
    used: int | None
    """Index of the attempt that passed, else None."""
    reason: str
    """Why."""
    k_used: int
    """FP32 layers in the model written."""


def _choose_calibration(
    ctx: _Context, pre: Path, windows: list[np.ndarray], held: qz.Heldout, work: Path
) -> tuple[str, str, Path, dict[str, float]]:
    """Calibrate with every method; (variant, method, cache) with the least held-out distance, and all distances."""
    caches: dict[str, tuple[str, Path]] = {}
    for method in ctx.settings.methods:
        pcts = ctx.settings.percentiles if method == "Percentile" else ()
        for variant, path in qz.calibrate(pre, windows, method, work, ctx.say, pcts).items():
            caches[variant] = (method, path)
    distances: dict[str, float] = {}
    for variant, (method, path) in caches.items():
        qz.quantize(pre, work / "trial.onnx", path, method, (), ctx.activation)
        distances[variant] = held.distance(work / "trial.onnx")
        ctx.say(f"calibration {variant}: held-out log-mel distance {distances[variant]:.3f} (all layers INT8)")
    chosen = min(distances, key=distances.__getitem__)
    return chosen, caches[chosen][0], caches[chosen][1], distances


def _fp32_layer_curve(
    ctx: _Context, pre: Path, cache: Path, method: str, ranking: list[tuple[str, float]], held: qz.Heldout,
    held_bound: float, work: Path,
) -> list[float]:
    """Held-out distance with the k worst layers in FP32, k = 0, 1, ... until well inside the bound."""
    curve: list[float] = []
    floor = min(ctx.settings.ladder) * held_bound
    for k in range(len(ranking) + 1):
        qz.quantize(pre, work / "trial.onnx", cache, method, [n for n, _ in ranking[:k]], ctx.activation)
        curve.append(held.distance(work / "trial.onnx"))
        ctx.say(f"mixed precision: {k} layer(s) in FP32, held-out log-mel distance {curve[-1]:.3f}")
        if curve[-1] <= floor:
            break
    return curve


def _gate_vocoder(
    ctx: _Context, pre: Path, cache: Path, method: str, ranking: list[tuple[str, float]], attempts_k: list[int],
    ev: EvalSet, work: Path,
) -> _VocoderGate:
    """The gate on the evaluation sentences (same z for both vocoders), fewest FP32 layers first."""
    s, say = ctx.settings, ctx.say
    ref_audio = render(ort_session(ctx.model("vocoder")), ev.z, ctx.chunking, ctx.gain)
    wer_fp32 = word_error_rate(ev.refs, transcripts(ref_audio, ctx.sample_rate, say, "fp32"))
    p808_fp32 = mean_naturalness(ref_audio, ctx.sample_rate).p808
    bound = noise_equivalent_distance(ref_audio, s.noise_snr_db, ctx.sample_rate)
    attempts: list[tuple[str, Verdict]] = []
    figures: list[dict[str, Any]] = []
    for k in attempts_k:
        excluded = [n for n, _ in ranking[:k]]
        model = work / f"attempt{k}.onnx"
        qz.quantize(pre, model, cache, method, excluded, ctx.activation)
        audio = render(ort_session(model), ev.z, ctx.chunking, ctx.gain)
        fig = GateFigures(
            wer_fp32=wer_fp32,
            wer_int8=word_error_rate(ev.refs, transcripts(audio, ctx.sample_rate, say, f"{k} FP32 layers")),
            log_mel=mean_log_mel(ref_audio, audio, ctx.sample_rate),
            log_mel_max=bound,
            p808_fp32=p808_fp32,
            p808_int8=mean_naturalness(audio, ctx.sample_rate).p808,
        )
        verdict = judge(fig, s.max_wer_rise)
        attempts.append((f"INT8 with {k} FP32 layer(s):", verdict))
        figures.append({"fp32_layers": k, "excluded_nodes": excluded, **dataclasses.asdict(fig), "passed": verdict.passed})
        say(f"gate, {k} layer(s) in FP32: {verdict.reason}")
        if verdict.passed:
            break
    precision, used, reason = choose(attempts)
    k_used = attempts_k[used] if used is not None else (attempts_k[-1] if attempts_k else len(ranking))
    return _VocoderGate(wer_fp32, bound, figures, precision, used, reason, k_used)


def _speed_figures(fp32_t: dict[str, float], int8_t: dict[str, float]) -> dict[str, Any]:
    return {
        "fp32_ms_per_audio_s": fp32_t["ms_per_audio_s"],
        "int8_ms_per_audio_s": int8_t["ms_per_audio_s"],
        "speedup": fp32_t["ms_per_audio_s"] / int8_t["ms_per_audio_s"],
        "fp32_cpu_ms_per_audio_s": fp32_t["cpu_ms_per_audio_s"],
        "int8_cpu_ms_per_audio_s": int8_t["cpu_ms_per_audio_s"],
        "cpu_speedup": fp32_t["cpu_ms_per_audio_s"] / int8_t["cpu_ms_per_audio_s"],
        "audio_s": fp32_t["audio_s"],
        "threads": "onnxruntime default",
        "cpu_count": os.cpu_count(),
    }


def _vocoder_step(ctx: _Context, calib_path: Path, out: Path) -> dict[str, Any]:
    """Calibrate, rank layers by sensitivity, gate the fewest-FP32-layers model, write it, time it; the report."""
    s, say = ctx.settings, ctx.say
    started = time.monotonic()
    cset = cal.CalibrationSet.load(calib_path)
    calib_z, held_z = cset.split(s.heldout_every)
    windows = qz.z_windows(calib_z, ctx.chunking, s.calibration_windows)
    held_windows = qz.z_windows(held_z, ctx.chunking, s.heldout_windows)
    if not held_windows:
        raise ProvisionError(f"no held-out calibration sentences (every {s.heldout_every}th of {len(cset.sentences)})")
    with tempfile.TemporaryDirectory(prefix="jetvox-int8-", dir=ctx.out_dir) as tmp_dir:
        work = Path(tmp_dir)
        pre = work / "vocoder.pre.onnx"
        polyphase = qz.preprocess(ctx.model("vocoder"), pre)
        held = qz.Heldout.build(pre, held_windows, ctx.sample_rate)
        held_bound = noise_equivalent_distance(held.reference, s.noise_snr_db, ctx.sample_rate)
        chosen, method, cache, methods = _choose_calibration(ctx, pre, windows, held, work)
        ranking = qz.sensitivity(pre, cache, method, held, work, say, ctx.activation)  # worst layer first
        curve = _fp32_layer_curve(ctx, pre, cache, method, ranking, held, held_bound, work)
        say(f"gate: {len(s.eval_sentences)} evaluation sentences")
        ev = build_eval(
            s.eval_sentences, ctx.model("acoustic"), ctx.phonemizer(), ctx.scales, ctx.cfg.synthesis.max_sentence_chars
        )
        attempts_k = with_more_layers(ladder(curve, held_bound, s.ladder), len(ranking), s.more_layers)
        gate = _gate_vocoder(ctx, pre, cache, method, ranking, attempts_k, ev, work)
        final = work / f"attempt{gate.k_used}.onnx"
        if not final.is_file():  # nothing was tried: keep the most conservative quantised model on disk
            qz.quantize(pre, final, cache, method, [n for n, _ in ranking[: gate.k_used]], ctx.activation)
        with atomic_path(out) as tmp:
            shutil.copyfile(final, tmp)
        summary = qz.qdq_summary(out)
        timed = [p for zs in ev.z[: s.timing_sentences] for p in zs]  # speed on this CPU, runtime chunking
        fp32_t, int8_t = qz.time_vocoders([ctx.model("vocoder"), out], timed, ctx.chunking, ctx.sample_rate, s.timing_rounds)
    chosen_fig = gate.figures[gate.used] if gate.used is not None else (gate.figures[-1] if gate.figures else {})
    info: dict[str, Any] = {
        "precision": gate.precision,
        "reason": gate.reason,
        "wer_fp32": gate.wer_fp32,
        "wer_int8": chosen_fig.get("wer_int8"),
        "log_mel_distance": chosen_fig.get("log_mel"),
        "log_mel_max": gate.bound,
        "log_mel_bound": f"white noise {s.noise_snr_db:.0f} dB below the speech",
        "max_wer_rise": s.max_wer_rise,
        "eval_sentences": len(ev.refs),
        "excluded_nodes": [n for n, _ in ranking[: gate.k_used]],
        "float_layers": summary["float_layers"],
        "quantized_layers": len(list(summary["quantized_layers"])),
        "polyphase_upsampling": polyphase,
        "per_channel": summary["per_channel"],
        "calibration": {"chosen": chosen, "heldout_log_mel": methods, "windows": len(windows)},
        "sensitivity": [{"node": n, "log_mel": d} for n, d in ranking],
        "heldout_curve": curve,
        "heldout_log_mel_max": held_bound,
        "attempts": gate.figures,
        "speed": _speed_figures(fp32_t, int8_t),
        "seconds": time.monotonic() - started,
    }
    _announce_vocoder(ctx, info)
    return info


def _announce_vocoder(ctx: _Context, info: dict[str, Any]) -> None:
    sp = info["speed"]
    log.info("INT8 vocoder: %s (%s)", info["precision"], info["reason"])
    ctx.say(
        f"INT8 vocoder: {info['precision']} ({info['reason']}); {sp['fp32_ms_per_audio_s']:.1f} -> "
        f"{sp['int8_ms_per_audio_s']:.1f} ms per audio second ({sp['speedup']:.2f}x)"
    )


@dataclass
class _AcousticGate:
    """The acoustic model's FP32 reference on the gate sentences, shared by every part tried."""

    ev: EvalSet
    """The gate's sentences, ids and FP32 latents."""
    vocoder: Any
    """An ONNX Runtime session of the FP32 vocoder."""
    ref_pieces: list[np.ndarray]
    """FP32 audio per piece (a sentence may be several)."""
    ref_audio: list[np.ndarray]
    """FP32 audio per sentence."""
    bound: float
    """Log-mel bound."""
    wer_fp32: float | None = None
    """Pooled WER of the FP32 audio, measured when first needed."""
    p808_fp32: float | None = None
    """Mean DNSMOS P.808 of the FP32 audio, measured when first needed."""


def _acoustic_verdict(ctx: _Context, gate: _AcousticGate, candidate: Path, part: str, record: dict[str, Any]) -> Verdict:
    """Gate one quantised acoustic model: durations must mostly stay, then WER and log-mel as for the vocoder."""
    ev = gate.ev
    session = cal.seeded_acoustic_session(candidate)
    pieces8 = render(gate.vocoder, [(cal.latent(session, i, ctx.scales),) for sent in ev.ids for i in sent],
                     ctx.chunking, ctx.gain)
    # A frame-by-frame spectral distance needs equal lengths: quantised durations that
    # moved in most pieces leave the log-mel criterion unmeasurable, which fails the gate.
    same = [(a, b) for a, b in zip(gate.ref_pieces, pieces8) if a.shape == b.shape]
    record["same_length_pieces"] = f"{len(same)}/{len(gate.ref_pieces)}"
    if 2 * len(same) < len(gate.ref_pieces):
        return Verdict(
            False,
            f"failed: durations changed in {len(gate.ref_pieces) - len(same)} of {len(gate.ref_pieces)} pieces, "
            "so the log-mel distance cannot be measured",
        )
    if gate.wer_fp32 is None or gate.p808_fp32 is None:
        gate.wer_fp32 = word_error_rate(ev.refs, transcripts(gate.ref_audio, ctx.sample_rate, ctx.say, "acoustic fp32"))
        gate.p808_fp32 = mean_naturalness(gate.ref_audio, ctx.sample_rate).p808
    audio = _join(pieces8, [len(sent) for sent in ev.z])
    fig = GateFigures(
        wer_fp32=gate.wer_fp32,
        wer_int8=word_error_rate(ev.refs, transcripts(audio, ctx.sample_rate, ctx.say, f"acoustic {part}")),
        log_mel=mean_log_mel([a for a, _ in same], [b for _, b in same], ctx.sample_rate),
        log_mel_max=gate.bound,
        p808_fp32=gate.p808_fp32,
        p808_int8=mean_naturalness(audio, ctx.sample_rate).p808,
    )
    record.update(dataclasses.asdict(fig))
    return judge(fig, ctx.settings.max_wer_rise)


def _acoustic_reference(ctx: _Context) -> _AcousticGate:
    s = ctx.settings
    ev = build_eval(
        s.eval_sentences, ctx.model("acoustic"), ctx.phonemizer(), ctx.scales, ctx.cfg.synthesis.max_sentence_chars
    )
    vocoder = ort_session(ctx.model("vocoder"))
    # Per piece (a sentence may be several), then joined per sentence for the WER.
    ref_pieces = render(vocoder, [(z,) for sent in ev.z for z in sent], ctx.chunking, ctx.gain)
    ref_audio = _join(ref_pieces, [len(sent) for sent in ev.z])
    bound = noise_equivalent_distance(ref_audio, s.noise_snr_db, ctx.sample_rate)
    return _AcousticGate(ev, vocoder, ref_pieces, ref_audio, bound)


def _acoustic_step(ctx: _Context, calib_path: Path, out: Path) -> dict[str, Any]:
    """Quantise parts of the acoustic model, most first; keep the first that pays and passes the gate."""
    s, say = ctx.settings, ctx.say
    started = time.monotonic()
    cset = cal.CalibrationSet.load(calib_path)
    pick = np.linspace(0, len(cset.ids) - 1, min(s.acoustic_calibration, len(cset.ids))).round().astype(int)
    feeds = [acoustic_feeds(cset.ids[i], ctx.scales) for i in pick]
    gate = _acoustic_reference(ctx)
    timed = [i for sent in gate.ev.ids for i in sent][: max(1, s.timing_sentences)]
    attempts: list[tuple[str, Verdict]] = []
    tried: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="jetvox-int8-", dir=ctx.out_dir) as tmp_dir:
        work = Path(tmp_dir)
        pre = work / "acoustic.pre.onnx"
        qz.preprocess_acoustic(ctx.model("acoustic"), pre)
        say(f"quantise acoustic model: calibration on {len(feeds)} sentences")
        for part, prefixes in qz.ACOUSTIC_PARTS:
            layers = qz.acoustic_layers(pre, prefixes)
            if not layers:
                continue
            candidate = work / f"acoustic-{len(tried)}.onnx"
            qz.quantize_acoustic(pre, candidate, feeds, layers, work / "acoustic-ranges.json", ctx.activation)
            fp32_ms, int8_ms = qz.time_acoustic([ctx.model("acoustic"), candidate], timed, ctx.scales, s.timing_rounds)
            record: dict[str, Any] = {"part": part, "layers": len(layers), "fp32_ms_per_sentence": fp32_ms,
                                      "int8_ms_per_sentence": int8_ms, "speedup": fp32_ms / int8_ms}
            tried.append(record)
            shutil.copyfile(candidate, work / "last.onnx")
            label = f"INT8 acoustic ({part}):"
            if fp32_ms / int8_ms < MIN_ACOUSTIC_SPEEDUP:  # fewer INT8 layers would pay even less
                attempts.append((label, Verdict(False, f"failed: does not pay, {fp32_ms / int8_ms:.2f}x < {MIN_ACOUSTIC_SPEEDUP}x")))
                break
            verdict = _acoustic_verdict(ctx, gate, candidate, part, record)
            record["passed"] = verdict.passed
            attempts.append((label, verdict))
            say(f"gate, acoustic {part} in INT8: {verdict.reason} ({fp32_ms:.0f} -> {int8_ms:.0f} ms per sentence)")
            if verdict.passed:
                shutil.copyfile(candidate, work / "chosen.onnx")
                break
        precision, used, reason = choose(attempts)
        final = work / ("chosen.onnx" if used is not None else "last.onnx")
        if not final.is_file():  # no Conv/MatMul layer to quantise: the step's output is the FP32 model
            final = ctx.model("acoustic")
        with atomic_path(out) as tmp:
            shutil.copyfile(final, tmp)
    log.info("INT8 acoustic: %s (%s)", precision, reason)
    say(f"INT8 acoustic: {precision} ({reason})")
    return _acoustic_info(ctx, gate, tried, used, precision, reason, out, time.monotonic() - started)


def _acoustic_info(
    ctx: _Context, gate: _AcousticGate, tried: list[dict[str, Any]], used: int | None, precision: str, reason: str,
    out: Path, seconds: float,
) -> dict[str, Any]:
    chosen = tried[used] if used is not None else (tried[-1] if tried else {})
    return {
        "precision": precision,
        "reason": reason,
        "part": chosen.get("part") if used is not None else None,
        "speedup": chosen.get("speedup"),
        "fp32_ms_per_sentence": chosen.get("fp32_ms_per_sentence"),
        "int8_ms_per_sentence": chosen.get("int8_ms_per_sentence"),
        "wer_fp32": gate.wer_fp32,
        "wer_int8": chosen.get("wer_int8") if used is not None else None,
        "log_mel_distance": chosen.get("log_mel") if used is not None else None,
        "log_mel_max": gate.bound,
        "attempts": tried,
        "fp32_mb": ctx.model("acoustic").stat().st_size / 1e6,
        "int8_mb": out.stat().st_size / 1e6,
        "eval_sentences": len(gate.ev.refs),
        "seconds": seconds,
    }


def _join(pieces: Sequence[np.ndarray], counts: Sequence[int]) -> list[np.ndarray]:
    """Concatenate consecutive pieces into sentences of ``counts`` pieces each."""
    out, n = [], 0
    for c in counts:
        out.append(np.concatenate(pieces[n : n + c]))
        n += c
    return out

