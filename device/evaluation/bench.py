"""`jetvox bench`: first-audio latency and real-time factor of jetvox beside piper-tts, in one run."""

from __future__ import annotations

import html
import json
import logging
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Iterator

import numpy as np

from jetvox.device.config import Config
from jetvox.device.evaluation.naturalness import naturalness
from jetvox.device.evaluation.quality import transcribe, word_error_rate
from jetvox.device.evaluation.sentences import EVAL_SENTENCES
from jetvox.device.synthesis.synthesizer import synthesizer_for
from jetvox.device.text import ssml
from jetvox.device.text.normalize import normalize
from jetvox.device.voice import manifest as mf
from jetvox.device.voice.loader import load_voice
from jetvox.device.voice.sources import (
    VoiceError,
    VoiceSource,
    resolve_voice,
    shipped_voices,
)
from jetvox.engines.errors import JetvoxError

log = logging.getLogger(__name__)


class BenchError(JetvoxError, ValueError):
    """The benchmark cannot run as asked (an unknown or unavailable system)."""

# A system turns text into a stream of float32 audio chunks (model already loaded).
Stream = Callable[[str], Iterator[np.ndarray]]


@dataclass(frozen=True)
class BenchOptions:
    """What `jetvox bench` was asked for."""

    json: bool = False
    """Print JSON instead of a table."""
    wer: bool = False
    """Transcribe every output with pocketsphinx and report the pooled word error rate."""
    quality: bool = False
    """Score every output's naturalness (DNSMOS P.808 and OVRL, equal loudness) and report the means."""
    repeat: int = 1
    """Runs per sentence and system; the median is kept."""
    limit: int | None = None
    """Only the first N sentences."""
    systems: tuple[str, ...] = ()
    """Systems to run; empty runs every available one."""


@dataclass
class Row:
    """One system on one sentence."""

    first_audio_ms: float
    """Text in (model loaded) to the first PCM chunk."""
    rtf: float
    """Synthesis time over audio duration (below 1 is faster than real time)."""
    audio_s: float
    """Seconds of audio produced."""
    transcript: str = ""
    """pocketsphinx transcript (with --wer)."""
    p808: float | None = None
    """DNSMOS P.808 (with --quality)."""
    ovrl: float | None = None
    """DNSMOS OVRL (with --quality)."""


@dataclass
class SystemResult:
    """All sentences for one system."""

    name: str
    """System name."""
    rows: list[Row] = field(default_factory=list)
    """Per sentence, in order."""
    wer: float | None = None
    """Pooled word error rate (with --wer)."""
    p808: float | None = None
    """Mean DNSMOS P.808 over the sentences (with --quality)."""
    ovrl: float | None = None
    """Mean DNSMOS OVRL (with --quality)."""

    def median(self, attr: str) -> float:
        return float(statistics.median(getattr(r, attr) for r in self.rows))


class _Closer:
    """Keeps what has to be closed after the run."""

    def __init__(self) -> None:
        self.items: list[Callable[[], None]] = []

    def close(self) -> None:
        for fn in reversed(self.items):
            fn()


SSML_TEMPLATE = '<speak><s><prosody rate="100%" volume="+0dB">{}</prosody></s><break time="0ms"/></speak>'
"""How ``jetvox-ssml`` sends each sentence: the same words, through the SSML parser and span synthesis."""


def _jetvox_system(cfg: Config, closer: _Closer, precision: str, voice_name: str | None = None,
                   as_ssml: bool = False) -> Stream:
    voice = load_voice(cfg, precision=precision, voice_name=voice_name)
    synth = synthesizer_for(voice, cfg)
    closer.items += [voice.close, synth.close]

    def stream(text: str) -> Iterator[np.ndarray]:
        if as_ssml:
            chunks = synth.synthesize_spans(ssml.parse(SSML_TEMPLATE.format(html.escape(text))).spans)
        else:
            chunks = synth.synthesize(text)
        for chunk in chunks:
            yield chunk.audio

    return stream


def _piper_system(source: VoiceSource) -> Stream:
    """piper-tts on a Piper voice (a voice with its own ``.onnx`` file)."""
    from piper import PiperVoice, SynthesisConfig

    if source.model is None:
        raise VoiceError(f"piper-tts needs a whole Piper model; voice {source.name} is shipped split")
    voice = PiperVoice.load(source.model, source.config_path)
    syn = SynthesisConfig()

    def stream(text: str) -> Iterator[np.ndarray]:
        for chunk in voice.synthesize(text, syn):
            yield chunk.audio_float_array

    return stream


def available_systems(
    cfg: Config, closer: _Closer, wanted: tuple[str, ...], manifest: mf.Manifest
) -> dict[str, Stream]:
    """Load every system that can run here (or only ``wanted``) for the provisioned voice ``manifest``.

    ``jetvox-fp32`` and ``jetvox-int8`` run the configured voice; its companion, when provisioned in the same
    state dir, runs beside them under its own name at the precision its gate chose: the teacher
    ``en_US-joe-medium`` beside the student ``joe-fast``, or the other way round.
    """
    systems: dict[str, Stream] = {}
    source = resolve_voice(cfg.voice.name, cfg.voice.model, cfg.voice.config)
    teacher = source.config.get("jetvox", {}).get("teacher")  # set when the configured voice is a student

    def want(name: str) -> bool:
        return not wanted or name in wanted

    if want("jetvox-fp32"):
        systems["jetvox-fp32"] = _jetvox_system(cfg, closer, "fp32")
    if want("jetvox-int8") and "vocoder_int8" in manifest.models:
        systems["jetvox-int8"] = _jetvox_system(cfg, closer, "int8")
    students = shipped_voices()
    companion = teacher or (students[0] if students else None)
    if (companion and companion != cfg.voice.name and want(companion)
            and (mf.voice_dir(cfg.state_dir, companion) / mf.MANIFEST_NAME).is_file()):
        systems[companion] = _jetvox_system(cfg, closer, "auto", voice_name=companion)
    if wanted and want("jetvox-ssml"):  # on request: jetvox-fp32 with each sentence sent as SSML
        systems["jetvox-ssml"] = _jetvox_system(cfg, closer, "fp32", as_ssml=True)
    if want("piper-tts"):
        systems["piper-tts"] = _piper_system(resolve_voice(teacher) if teacher else source)
    unknown = set(wanted) - set(systems)
    if unknown:
        raise BenchError(f"unknown or unavailable systems {sorted(unknown)}; available: {sorted(systems)}")
    return systems


def measure(stream: Stream, text: str, sample_rate: int) -> tuple[Row, np.ndarray]:
    """Time one synthesis: first chunk latency, RTF; returns the audio too."""
    t0 = time.perf_counter()
    first = None
    pieces = []
    for audio in stream(text):
        if first is None:
            first = time.perf_counter() - t0
        pieces.append(audio)
    total = time.perf_counter() - t0
    audio = np.concatenate(pieces) if pieces else np.zeros(0, np.float32)
    seconds = len(audio) / sample_rate
    return Row(first_audio_ms=1000 * (first or total), rtf=total / max(seconds, 1e-9), audio_s=seconds), audio


def run_bench(cfg: Config, opts: BenchOptions) -> int:
    """Run the benchmark and print the table (or JSON); returns the exit code."""
    sentences = list(EVAL_SENTENCES[: opts.limit] if opts.limit else EVAL_SENTENCES)
    closer = _Closer()
    try:
        manifest = mf.read_manifest(mf.voice_dir(cfg.state_dir, cfg.voice.name))
        systems = available_systems(cfg, closer, opts.systems, manifest)
        sr = manifest.sample_rate
        results = {name: SystemResult(name) for name in systems}
        for name, stream in systems.items():  # warm-up: first runs allocate
            measure(stream, "Warm up.", sr)
        for n, text in enumerate(sentences, 1):
            print(f"[bench] {n}/{len(sentences)}", file=sys.stderr, flush=True, end="\r")
            for name, stream in systems.items():  # interleaved, so drift hits all alike
                runs = [measure(stream, text, sr) for _ in range(max(1, opts.repeat))]
                rows = sorted(runs, key=lambda r: r[0].first_audio_ms)
                row, audio = rows[len(rows) // 2]
                if opts.wer:
                    row.transcript = transcribe(audio, sr)
                if opts.quality:
                    score = naturalness(audio, sr)
                    row.p808, row.ovrl = score.p808, score.ovrl
                results[name].rows.append(row)
        print(file=sys.stderr)
        if opts.wer:
            refs = [normalize(s) for s in sentences]
            for res in results.values():
                res.wer = word_error_rate(refs, [r.transcript for r in res.rows])
        if opts.quality:
            for res in results.values():
                res.p808 = statistics.fmean(r.p808 for r in res.rows if r.p808 is not None)
                res.ovrl = statistics.fmean(r.ovrl for r in res.rows if r.ovrl is not None)
    finally:
        closer.close()
    if opts.json:
        print(json.dumps(_as_json(results, sentences), indent=2))
    else:
        _print_table(results, sentences)
    return 0


def _as_json(results: dict[str, SystemResult], sentences: list[str]) -> dict:
    out: dict = {"sentences": sentences, "systems": {}}
    for name, res in results.items():
        out["systems"][name] = {
            "median_first_audio_ms": res.median("first_audio_ms"),
            "median_rtf": res.median("rtf"),
            "wer": res.wer,
            "p808": res.p808,
            "ovrl": res.ovrl,
            "rows": [asdict(r) for r in res.rows],
        }
    return out


def _print_table(results: dict[str, SystemResult], sentences: list[str]) -> None:
    names = list(results)
    head = f"{'#':>2} {'audio s':>7} " + " ".join(f"{n + ' first ms':>20} {'RTF':>6}" for n in names)
    print(head)
    for i, _ in enumerate(sentences):
        cells = " ".join(
            f"{results[n].rows[i].first_audio_ms:>20.1f} {results[n].rows[i].rtf:>6.3f}" for n in names
        )
        print(f"{i + 1:>2} {results[names[0]].rows[i].audio_s:>7.2f} {cells}")
    print()
    print(f"{'system':<14} {'median first audio ms':>22} {'median RTF':>11} {'WER':>6} {'P.808':>6} {'OVRL':>6}")
    for n in names:
        res = results[n]
        wer, p808, ovrl = (f"{v:.3f}" if v is not None else "-" for v in (res.wer, res.p808, res.ovrl))
        print(f"{n:<14} {res.median('first_audio_ms'):>22.1f} {res.median('rtf'):>11.3f} {wer:>6} {p808:>6} {ovrl:>6}")
    if "piper-tts" in results:
        base = results["piper-tts"]
        for n in names:
            if n != "piper-tts":
                ratio = results[n].median("first_audio_ms") / base.median("first_audio_ms")
                rtf_ratio = results[n].median("rtf") / base.median("rtf")
                print(f"{n} / piper-tts: first audio x{ratio:.2f}, RTF x{rtf_ratio:.2f}")
