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

from device.config import Config
from provisioning import calibration as cal
from provisioning import quantize as qz
from provisioning.corpus import EVAL_SENTENCES, check_disjoint
from provisioning.steps import StepRunner, atomic_path, sha256_file
from provisioning.voices import VoiceSource

log = logging.getLogger(__name__)

INT8_VERSION = 1
CALIBRATION_FILE = "calibration.npz"
VOCODER_INT8 = "vocoder.int8.onnx"
ACOUSTIC_INT8 = "acoustic.int8.onnx"
MAX_WER_RISE = 0.02
"""The issue's bound: the pooled WER on EVAL_SENTENCES may rise by at most this much."""
NOISE_SNR_DB = 40.0
"""Log-mel bound: no more spectral change than white noise this far below the speech adds."""
MIN_ACOUSTIC_SPEEDUP = 1.2
"""Below this measured speed-up an INT8 acoustic model is not worth its quality risk."""
ENV = "JETVOX_INT8"
"""``full`` (default), ``quick`` (small corpus and gate, for tests) or ``off``."""


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


def settings_from_env() -> Int8Settings | None:
    """The settings ``$JETVOX_INT8`` asks for; None means skip INT8."""
    value = os.environ.get(ENV, "full").strip().lower()
    if value in ("", "full"):
        return FULL
    if value == "quick":
        return QUICK
    if value == "off":
        return None
    raise ValueError(f"{ENV} must be full, quick or off, got {value!r}")


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


@dataclass(frozen=True)
class Verdict:
    """The gate's decision on one model."""

    passed: bool
    """Whether the model may be used."""
    reason: str
    """Why, with the figures."""


def judge(fig: GateFigures, max_wer_rise: float = MAX_WER_RISE) -> Verdict:
    """Pass when the WER rises by at most ``max_wer_rise`` and the log-mel distance is measured and within its bound.

    Args:
        fig: the measured figures.
        max_wer_rise: the largest allowed rise of the pooled WER.
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
    verdict = "passed" if not problems else "failed: " + " and ".join(problems)
    return Verdict(passed=not problems, reason=f"{verdict}; {wer_txt}; {mel_txt}")


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


def noise_equivalent_distance(audio: Sequence[np.ndarray], snr_db: float, sample_rate: int, seed: int = 0) -> float:
    """Mean log-mel distance that white noise ``snr_db`` below each clip's level would cause."""
    from provisioning.quality import log_mel_distance

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
    from device.normalize import prepare

    session = cal.seeded_acoustic_session(acoustic)
    refs, ids, zs = [], [], []
    for sentence in sentences:
        pieces = [p for p in prepare(sentence, max_chars) if phonemizer.sentence_ids(p)]
        refs.append(" ".join(pieces))
        piece_ids = tuple(tuple(phonemizer.sentence_ids(p)) for p in pieces)
        ids.append(piece_ids)
        zs.append(tuple(cal.latent(session, i, scales) for i in piece_ids))
    return EvalSet(tuple(refs), tuple(ids), tuple(zs))


def render(session: Any, zs: Sequence[Sequence[np.ndarray]], chunking: qz.Chunking, gain: float) -> list[np.ndarray]:
    """Audio per sentence as the runtime plays it: chunked vocoding, the voice's gain, clipped."""
    return [
        np.clip(np.concatenate([qz.vocode_chunked(session, z, chunking) for z in pieces]) * gain, -1.0, 1.0)
        for pieces in zs
    ]


def transcripts(audio: Sequence[np.ndarray], sample_rate: int, say: Callable[[str], None], label: str) -> list[str]:
    """pocketsphinx transcripts, with progress."""
    from provisioning.quality import transcribe

    out = []
    for n, clip in enumerate(audio, 1):
        out.append(transcribe(clip, sample_rate))
        if n % 8 == 0 or n == len(audio):
            say(f"gate {label}: transcribed {n}/{len(audio)}")
    return out


def mean_log_mel(a: Sequence[np.ndarray], b: Sequence[np.ndarray], sample_rate: int) -> float:
    from provisioning.quality import log_mel_distance

    return float(np.mean([log_mel_distance(x, y, sample_rate) for x, y in zip(a, b)]))


# --------------------------------------------------------------------------- the steps


@dataclass
class _Context:
    """What the INT8 steps share."""

    cfg: Config
    """The configuration (chunking, sentence limit, synthesis defaults)."""
    source: VoiceSource
    """The voice being provisioned."""
    out_dir: Path
    """The voice's directory."""
    data: dict[str, Any]
    """The manifest being built."""
    settings: Int8Settings
    """How much work to do."""
    say: Callable[[str], None]
    """Progress callback."""
    activation: str
    """Activation type of the quantised models (``uint8`` or ``int8``)."""
    chunking: qz.Chunking = dataclasses.field(init=False)
    """The runtime's vocoder chunking, from ``cfg.synthesis``."""

    def __post_init__(self) -> None:
        s = self.cfg.synthesis
        self.chunking = qz.Chunking(s.first_chunk_frames, s.chunk_frames, s.overlap_frames)

    @property
    def sample_rate(self) -> int:
        return int(self.data["sample_rate"])

    @property
    def scales(self) -> tuple[float, float, float]:
        """The voice's default noise_scale, length_scale, noise_w (what the runtime uses)."""
        inf = self.data.get("inference", {})
        s = self.cfg.synthesis
        return (
            float(inf.get("noise_scale", s.noise_scale)),
            float(inf.get("length_scale", s.length_scale)),
            float(inf.get("noise_w", s.noise_w)),
        )

    def model(self, role: str) -> Path:
        return self.out_dir / self.data["models"][role]["file"]

    def phonemizer(self) -> Any:
        from device.phonemes import Phonemizer

        return Phonemizer(self.data["espeak_voice"], self.data["phoneme_id_map"])


def _file_sha(module: Any) -> str:
    return sha256_file(Path(module.__file__))


def _settings_dict(s: Int8Settings) -> dict[str, Any]:
    return dataclasses.asdict(s)


def int8_steps(
    cfg: Config,
    source: VoiceSource,
    out_dir: Path,
    runner: StepRunner,
    data: dict[str, Any],
    say: Callable[[str], None],
) -> None:
    """Provisioning hook: calibration corpus, INT8 vocoder (and acoustic) behind the quality gate.

    Records ``data["precision"]``, ``data["int8"]`` (figures and reasons) and, for a model
    that passed, ``data["models"]["vocoder_int8"]`` / ``["acoustic_int8"]``.

    Args:
        cfg: the configuration (chunking and synthesis defaults).
        source: the voice being provisioned.
        out_dir: the voice's directory.
        runner: the step runner (caching).
        data: the manifest being built; updated in place.
        say: progress callback.
    """
    settings = settings_from_env()
    if settings is None:
        say(f"INT8: skipped ({ENV}=off); FP32 models only")
        data["int8"] = {"skipped": f"{ENV}=off"}
        return
    from provisioning.platform import detect_platform

    platform = detect_platform(probe_gpu=False)
    # TensorRT takes only symmetric INT8 (zero point 0); on ONNX Runtime x86 asymmetric uint8
    # activations measured faster (VNNI u8s8 kernels) and more accurate.
    activation = "int8" if platform.tensorrt_version else "uint8"
    ctx = _Context(cfg, source, out_dir, data, settings, say, activation)
    from device import normalize, phonemes
    from provisioning import quality

    vers = data.get("versions", {})
    calib_path = out_dir / CALIBRATION_FILE
    corpus = runner.run(
        "int8-calibration",
        {
            "acoustic": data["models"]["acoustic"]["sha256"],
            "corpus": cal.CORPUS_VERSION,
            "count": settings.calibration_sentences,
            "seed": settings.calibration_seed,
            "noise_seed": cal.NOISE_SEED,
            "scales": ctx.scales,
            "max_chars": cfg.synthesis.max_sentence_chars,
            "espeak_voice": data["espeak_voice"],
            "phoneme_id_map": hashlib.sha256(json.dumps(data["phoneme_id_map"], sort_keys=True).encode()).hexdigest(),
            "code": [_file_sha(m) for m in (cal, normalize, phonemes)],
            "versions": vers,
        },
        [calib_path],
        lambda: _calibration_step(ctx, calib_path),
    )
    vocoder_out = out_dir / VOCODER_INT8
    common = {
        "int8": INT8_VERSION,
        "quantize": qz.QUANT_VERSION,
        "settings": _settings_dict(settings),
        "calibration": corpus["outputs"],
        "acoustic": data["models"]["acoustic"]["sha256"],
        "chunking": dataclasses.astuple(ctx.chunking),
        "gain": data["gain"],
        "scales": ctx.scales,
        "activation": activation,
        "code": [sha256_file(Path(__file__))] + [_file_sha(m) for m in (qz, quality, normalize)],
        "versions": vers,
        "vocoder": data["models"]["vocoder"]["sha256"],
    }
    voc = runner.run(
        "int8-vocoder",
        common,
        [vocoder_out],
        lambda: _vocoder_step(ctx, calib_path, vocoder_out),
    )["info"]
    section: dict[str, Any] = {"activation": activation, "calibration_sentences": settings.calibration_sentences}
    section["vocoder"] = voc
    data["precision"]["vocoder"] = voc["precision"]
    if voc["precision"] == "int8":
        data["models"]["vocoder_int8"] = _int8_entry(
            data,
            "vocoder",
            vocoder_out,
            excluded_nodes=voc["excluded_nodes"],
            float_layers=voc["float_layers"],
            calibration=voc["calibration"]["chosen"],
            activation=activation,
        )
    if settings.acoustic:
        acoustic_out = out_dir / ACOUSTIC_INT8
        ac = runner.run(
            "int8-acoustic",
            common,
            [acoustic_out],
            lambda: _acoustic_step(ctx, calib_path, acoustic_out),
        )["info"]
        section["acoustic"] = ac
        data["precision"]["acoustic"] = ac["precision"]
        if ac["precision"] == "int8":
            data["models"]["acoustic_int8"] = _int8_entry(
                data, "acoustic", acoustic_out, quantized_part=ac["part"], activation=activation
            )
    else:
        section["acoustic"] = {"precision": "fp32", "reason": "not tried (settings.acoustic is off)"}
    data["int8"] = section


def _int8_entry(data: dict[str, Any], role: str, path: Path, **extra: Any) -> dict[str, Any]:
    """Manifest entry of an INT8 model: the FP32 model's tensors, the file, its hash and ``extra``."""
    tensors = {k: v for k, v in data["models"][role].items() if k in ("inputs", "outputs")}
    return {**tensors, "file": path.name, "sha256": sha256_file(path), **extra}


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


def _vocoder_step(ctx: _Context, calib_path: Path, out: Path) -> dict[str, Any]:
    s, say = ctx.settings, ctx.say
    started = time.monotonic()
    cset = cal.CalibrationSet.load(calib_path)
    calib_z, held_z = cset.split(s.heldout_every)
    windows = qz.z_windows(calib_z, ctx.chunking, s.calibration_windows)
    held_windows = qz.z_windows(held_z, ctx.chunking, s.heldout_windows)
    if not held_windows:
        raise RuntimeError(f"no held-out calibration sentences (every {s.heldout_every}th of {len(cset.sentences)})")
    with tempfile.TemporaryDirectory(prefix="jetvox-int8-", dir=ctx.out_dir) as tmp_dir:
        work = Path(tmp_dir)
        pre = work / "vocoder.pre.onnx"
        polyphase = qz.preprocess(ctx.model("vocoder"), pre)
        held = qz.Heldout.build(pre, held_windows, ctx.sample_rate)
        held_bound = noise_equivalent_distance(held.reference, s.noise_snr_db, ctx.sample_rate)

        # 1. calibration methods: keep the one with the least held-out distance, all layers INT8
        caches: dict[str, tuple[str, Path]] = {}
        for method in s.methods:
            pcts = s.percentiles if method == "Percentile" else ()
            for variant, path in qz.calibrate(pre, windows, method, work, say, pcts).items():
                caches[variant] = (method, path)
        methods: dict[str, float] = {}
        for variant, (method, path) in caches.items():
            qz.quantize(pre, work / "trial.onnx", path, method, (), ctx.activation)
            methods[variant] = held.distance(work / "trial.onnx")
            say(f"calibration {variant}: held-out log-mel distance {methods[variant]:.3f} (all layers INT8)")
        chosen = min(methods, key=methods.__getitem__)
        method, cache = caches[chosen]

        # 2. sensitivity: each layer alone in INT8, worst first
        ranking = qz.sensitivity(pre, cache, method, held, work, say, ctx.activation)
        # 3. distance with the k worst layers in FP32, until well inside the bound
        curve: list[float] = []
        floor = min(s.ladder) * held_bound
        for k in range(len(ranking) + 1):
            qz.quantize(pre, work / "trial.onnx", cache, method, [n for n, _ in ranking[:k]], ctx.activation)
            curve.append(held.distance(work / "trial.onnx"))
            say(f"mixed precision: {k} layer(s) in FP32, held-out log-mel distance {curve[-1]:.3f}")
            if curve[-1] <= floor:
                break
        attempts_k = ladder(curve, held_bound, s.ladder)

        # 4. the gate on the evaluation sentences (same z for both vocoders)
        say(f"gate: {len(s.eval_sentences)} evaluation sentences")
        ev = build_eval(
            s.eval_sentences, ctx.model("acoustic"), ctx.phonemizer(), ctx.scales, ctx.cfg.synthesis.max_sentence_chars
        )
        gain = float(ctx.data["gain"])
        ref_audio = render(qz.cpu_session(ctx.model("vocoder")), ev.z, ctx.chunking, gain)
        from provisioning.quality import word_error_rate

        wer_fp32 = word_error_rate(ev.refs, transcripts(ref_audio, ctx.sample_rate, say, "fp32"))
        bound = noise_equivalent_distance(ref_audio, s.noise_snr_db, ctx.sample_rate)
        attempts: list[tuple[str, Verdict]] = []
        figures: list[dict[str, Any]] = []
        for k in attempts_k:
            excluded = [n for n, _ in ranking[:k]]
            model = work / f"attempt{k}.onnx"
            qz.quantize(pre, model, cache, method, excluded, ctx.activation)
            audio = render(qz.cpu_session(model), ev.z, ctx.chunking, gain)
            fig = GateFigures(
                wer_fp32=wer_fp32,
                wer_int8=word_error_rate(ev.refs, transcripts(audio, ctx.sample_rate, say, f"{k} FP32 layers")),
                log_mel=mean_log_mel(ref_audio, audio, ctx.sample_rate),
                log_mel_max=bound,
            )
            verdict = judge(fig, s.max_wer_rise)
            attempts.append((f"INT8 with {k} FP32 layer(s):", verdict))
            figures.append({"fp32_layers": k, "excluded_nodes": excluded, **dataclasses.asdict(fig), "passed": verdict.passed})
            say(f"gate, {k} layer(s) in FP32: {verdict.reason}")
            if verdict.passed:
                break
        precision, used, reason = choose(attempts)
        k_used = attempts_k[used] if used is not None else (attempts_k[-1] if attempts_k else len(ranking))
        final = work / f"attempt{k_used}.onnx"
        if not final.is_file():  # nothing was tried: keep the most conservative quantised model on disk
            qz.quantize(pre, final, cache, method, [n for n, _ in ranking[:k_used]], ctx.activation)
        with atomic_path(out) as tmp:
            shutil.copyfile(final, tmp)
        summary = qz.qdq_summary(out)

        # 5. speed on this CPU, through the runtime's chunking
        timed = [p for zs in ev.z[: s.timing_sentences] for p in zs]
        fp32_t, int8_t = qz.time_vocoders(
            [ctx.model("vocoder"), out], timed, ctx.chunking, ctx.sample_rate, s.timing_rounds
        )
    chosen_fig = figures[used] if used is not None else (figures[-1] if figures else {})
    info: dict[str, Any] = {
        "precision": precision,
        "reason": reason,
        "wer_fp32": wer_fp32,
        "wer_int8": chosen_fig.get("wer_int8"),
        "log_mel_distance": chosen_fig.get("log_mel"),
        "log_mel_max": bound,
        "log_mel_bound": f"white noise {s.noise_snr_db:.0f} dB below the speech",
        "max_wer_rise": s.max_wer_rise,
        "eval_sentences": len(ev.refs),
        "excluded_nodes": [n for n, _ in ranking[:k_used]],
        "float_layers": summary["float_layers"],
        "quantized_layers": len(list(summary["quantized_layers"])),
        "polyphase_upsampling": polyphase,
        "per_channel": summary["per_channel"],
        "calibration": {"chosen": chosen, "heldout_log_mel": methods, "windows": len(windows)},
        "sensitivity": [{"node": n, "log_mel": d} for n, d in ranking],
        "heldout_curve": curve,
        "heldout_log_mel_max": held_bound,
        "attempts": figures,
        "speed": {
            "fp32_ms_per_audio_s": fp32_t["ms_per_audio_s"],
            "int8_ms_per_audio_s": int8_t["ms_per_audio_s"],
            "speedup": fp32_t["ms_per_audio_s"] / int8_t["ms_per_audio_s"],
            "fp32_cpu_ms_per_audio_s": fp32_t["cpu_ms_per_audio_s"],
            "int8_cpu_ms_per_audio_s": int8_t["cpu_ms_per_audio_s"],
            "cpu_speedup": fp32_t["cpu_ms_per_audio_s"] / int8_t["cpu_ms_per_audio_s"],
            "audio_s": fp32_t["audio_s"],
            "threads": "onnxruntime default",
            "cpu_count": os.cpu_count(),
        },
        "seconds": time.monotonic() - started,
    }
    sp = info["speed"]
    log.info("INT8 vocoder: %s (%s)", precision, reason)
    say(
        f"INT8 vocoder: {precision} ({reason}); {sp['fp32_ms_per_audio_s']:.1f} -> {sp['int8_ms_per_audio_s']:.1f} "
        f"ms per audio second ({sp['speedup']:.2f}x)"
    )
    return info


def _acoustic_step(ctx: _Context, calib_path: Path, out: Path) -> dict[str, Any]:
    """Quantise parts of the acoustic model, most first; keep the first that pays and passes the gate."""
    from provisioning.quality import word_error_rate

    s, say = ctx.settings, ctx.say
    started = time.monotonic()
    cset = cal.CalibrationSet.load(calib_path)
    pick = np.linspace(0, len(cset.ids) - 1, min(s.acoustic_calibration, len(cset.ids))).round().astype(int)
    feeds = [_acoustic_feeds(cset.ids[i], ctx.scales) for i in pick]
    ev = build_eval(
        s.eval_sentences, ctx.model("acoustic"), ctx.phonemizer(), ctx.scales, ctx.cfg.synthesis.max_sentence_chars
    )
    gain = float(ctx.data["gain"])
    vocoder = qz.cpu_session(ctx.model("vocoder"))
    counts = [len(sent) for sent in ev.z]
    # Per piece (a sentence may be several), then joined per sentence for the WER.
    ref_pieces = render(vocoder, [(z,) for sent in ev.z for z in sent], ctx.chunking, gain)
    ref_audio = _join(ref_pieces, counts)
    bound = noise_equivalent_distance(ref_audio, s.noise_snr_db, ctx.sample_rate)
    timed = [i for sent in ev.ids for i in sent][: max(1, s.timing_sentences)]
    wer_fp32: float | None = None
    attempts: list[tuple[str, Verdict]] = []
    tried: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="jetvox-int8-", dir=ctx.out_dir) as tmp_dir:
        work = Path(tmp_dir)
        pre = work / "acoustic.pre.onnx"
        qz.preprocess_acoustic(ctx.model("acoustic"), pre)
        cache = work / "acoustic-ranges.json"
        say(f"quantise acoustic model: calibration on {len(feeds)} sentences")
        for part, prefixes in qz.ACOUSTIC_PARTS:
            layers = qz.acoustic_layers(pre, prefixes)
            if not layers:
                continue
            candidate = work / f"acoustic-{len(tried)}.onnx"
            qz.quantize_acoustic(pre, candidate, feeds, layers, cache, ctx.activation)
            fp32_ms, int8_ms = qz.time_acoustic([ctx.model("acoustic"), candidate], timed, ctx.scales, s.timing_rounds)
            record: dict[str, Any] = {
                "part": part,
                "layers": len(layers),
                "fp32_ms_per_sentence": fp32_ms,
                "int8_ms_per_sentence": int8_ms,
                "speedup": fp32_ms / int8_ms,
            }
            tried.append(record)
            shutil.copyfile(candidate, work / "last.onnx")
            label = f"INT8 acoustic ({part}):"
            if fp32_ms / int8_ms < MIN_ACOUSTIC_SPEEDUP:  # fewer INT8 layers would pay even less
                attempts.append((label, Verdict(False, f"failed: does not pay, {fp32_ms / int8_ms:.2f}x < {MIN_ACOUSTIC_SPEEDUP}x")))
                break
            session = cal.seeded_acoustic_session(candidate)
            pieces8 = render(vocoder, [(cal.latent(session, i, ctx.scales),) for sent in ev.ids for i in sent], ctx.chunking, gain)
            # A frame-by-frame spectral distance needs equal lengths: quantised durations that
            # moved in most pieces leave the log-mel criterion unmeasurable, which fails the gate.
            same = [(a, b) for a, b in zip(ref_pieces, pieces8) if a.shape == b.shape]
            record["same_length_pieces"] = f"{len(same)}/{len(ref_pieces)}"
            if 2 * len(same) < len(ref_pieces):
                verdict = Verdict(
                    False,
                    f"failed: durations changed in {len(ref_pieces) - len(same)} of {len(ref_pieces)} pieces, "
                    "so the log-mel distance cannot be measured",
                )
            else:
                if wer_fp32 is None:
                    wer_fp32 = word_error_rate(ev.refs, transcripts(ref_audio, ctx.sample_rate, say, "acoustic fp32"))
                audio = _join(pieces8, counts)
                fig = GateFigures(
                    wer_fp32=wer_fp32,
                    wer_int8=word_error_rate(ev.refs, transcripts(audio, ctx.sample_rate, say, f"acoustic {part}")),
                    log_mel=mean_log_mel([a for a, _ in same], [b for _, b in same], ctx.sample_rate),
                    log_mel_max=bound,
                )
                verdict = judge(fig, s.max_wer_rise)
                record.update(dataclasses.asdict(fig))
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
    chosen = tried[used] if used is not None else (tried[-1] if tried else {})
    info = {
        "precision": precision,
        "reason": reason,
        "part": chosen.get("part") if used is not None else None,
        "speedup": chosen.get("speedup"),
        "fp32_ms_per_sentence": chosen.get("fp32_ms_per_sentence"),
        "int8_ms_per_sentence": chosen.get("int8_ms_per_sentence"),
        "wer_fp32": wer_fp32,
        "wer_int8": chosen.get("wer_int8") if used is not None else None,
        "log_mel_distance": chosen.get("log_mel") if used is not None else None,
        "log_mel_max": bound,
        "attempts": tried,
        "fp32_mb": ctx.model("acoustic").stat().st_size / 1e6,
        "int8_mb": out.stat().st_size / 1e6,
        "eval_sentences": len(ev.refs),
        "seconds": time.monotonic() - started,
    }
    log.info("INT8 acoustic: %s (%s)", precision, reason)
    say(f"INT8 acoustic: {precision} ({reason})")
    return info


def _join(pieces: Sequence[np.ndarray], counts: Sequence[int]) -> list[np.ndarray]:
    """Concatenate consecutive pieces into sentences of ``counts`` pieces each."""
    out, n = [], 0
    for c in counts:
        out.append(np.concatenate(pieces[n : n + c]))
        n += c
    return out


def _acoustic_feeds(ids: Sequence[int], scales: Sequence[float]) -> dict[str, np.ndarray]:
    arr = np.asarray([ids], dtype=np.int64)
    return {
        "input": arr,
        "input_lengths": np.array([arr.shape[1]], dtype=np.int64),
        "scales": np.asarray(scales, dtype=np.float32),
    }
