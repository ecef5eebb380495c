"""Compare a voice's device models with its ONNX Runtime FP32 reference, stage by stage, on given sentences."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Any, Callable, Sequence

import numpy as np

from jetvox.device.config import SynthesisConfig
from jetvox.device.evaluation.naturalness import mean_naturalness
from jetvox.device.evaluation.quality import log_mel_distance, transcribe, word_error_rate
from jetvox.device.synthesis.feeds import acoustic_feeds
from jetvox.device.synthesis.synthesizer import Synthesizer
from jetvox.device.voice.loader import Voice
from jetvox.engines.base import EngineError
from jetvox.engines.staged import StagedAcoustic
from jetvox.provisioning.int8.steps import MAX_WER_RISE, NOISE_SNR_DB, noise_equivalent_distance

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Limits:
    """How far device models may stray from the FP32 reference before they fail."""

    max_wer_rise: float = MAX_WER_RISE
    """Pooled word error rate of the whole chain over the reference's (the INT8 gate's bound)."""
    noise_snr_db: float = NOISE_SNR_DB
    """Log-mel bound of the decoder and vocoder: what white noise this far below the speech would cause."""
    max_changed_durations: float = 0.05
    """Fraction of phonemes whose predicted frame count may differ (a rounded duration can flip by one)."""
    max_frame_change: float = 0.01
    """Relative change of the total frame count."""
    max_p808_drop: float = 0.05
    """Mean DNSMOS P.808 of the whole chain below the reference's (the INT8 gate's bound for naturalness)."""


@dataclass(frozen=True)
class Comparison:
    """The figures of one comparison and what failed."""

    figures: dict[str, Any]
    """Durations, log-mel distances per part, WERs, the log-mel bound."""
    failures: tuple[str, ...]
    """One line per limit exceeded (empty: it passes)."""

    def to_json(self) -> dict[str, Any]:
        return {"figures": self.figures, "failures": list(self.failures), "passed": not self.failures}


def _stages(voice: Voice) -> StagedAcoustic:
    if not isinstance(voice.acoustic, StagedAcoustic):
        raise EngineError(f"voice {voice.name}: the acoustic model is not staged; re-run `jetvox provision`")
    return voice.acoustic


def _vocode(synth: Synthesizer, z: np.ndarray) -> np.ndarray:
    return np.concatenate([piece for piece, _ in synth.vocode_chunks(z)])


class _Tally:
    """Per-part audio and counts, sentence by sentence."""

    def __init__(self, reference: Voice, candidate: Voice, synthesis: SynthesisConfig) -> None:
        self.ref, self.cand = reference, candidate
        self.ref_synth, self.cand_synth = Synthesizer(reference, synthesis), Synthesizer(candidate, synthesis)
        self.ref_st, self.cand_st = _stages(reference), _stages(candidate)
        self.phonemes = self.changed = self.frames_ref = self.frames_cand = 0
        self.audio: dict[str, list[np.ndarray]] = {"ref": [], "dec": [], "voc": [], "chain": []}
        self.refs: list[str] = []
        self.hyps: dict[str, list[str]] = {"ref": [], "chain": []}

    def sentence(self, text: str) -> None:
        pieces = self.ref_synth.pieces(text)
        self.refs.append(" ".join(t for t, _ in pieces))
        parts: dict[str, list[np.ndarray]] = {"ref": [], "dec": [], "voc": [], "chain": []}
        for _, ids in pieces:
            for part, audio in self._piece(acoustic_feeds(ids)).items():
                parts[part].append(audio)
        joined = {k: np.concatenate(v) for k, v in parts.items()}
        for part in self.audio:
            self.audio[part].append(joined[part])
        sr = self.ref.sample_rate
        self.hyps["ref"].append(transcribe(_played(joined["ref"], self.ref.gain), sr))
        self.hyps["chain"].append(transcribe(_played(joined["chain"], self.cand.gain), sr))

    def _piece(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        board = self.ref_st.regulate(self.ref_st.encode(feeds))
        d_ref, d_cand = board["durations"], self.cand_st.encode(feeds)["durations"]
        self.phonemes += d_ref.size
        self.changed += int(np.count_nonzero(d_ref != d_cand))
        self.frames_ref += int(d_ref.sum())
        self.frames_cand += int(d_cand.sum())
        z_ref = self.ref_st.decode(board)
        return {
            "ref": _vocode(self.ref_synth, z_ref),
            "dec": _vocode(self.ref_synth, self.cand_st.decode(board)),
            "voc": _vocode(self.cand_synth, z_ref),
            "chain": _vocode(self.cand_synth, self.cand.acoustic.infer(feeds)["z"]),
        }

    def figures(self, limits: Limits) -> dict[str, Any]:
        sr = self.ref.sample_rate
        ref, dec, voc = self.audio["ref"], self.audio["dec"], self.audio["voc"]
        return {
            "sentences": len(self.refs),
            "phonemes": self.phonemes,
            "changed_durations": self.changed / max(1, self.phonemes),
            "frame_change": abs(self.frames_cand - self.frames_ref) / max(1, self.frames_ref),
            "decoder_log_mel": _mean_log_mel(ref, dec, sr),
            "vocoder_log_mel": _mean_log_mel(ref, voc, sr),
            "log_mel_bound": noise_equivalent_distance(ref, limits.noise_snr_db, sr),
            "decoder_max_abs": max(float(np.max(np.abs(a - b))) for a, b in zip(ref, dec)),
            "vocoder_max_abs": max(float(np.max(np.abs(a - b))) for a, b in zip(ref, voc)),
            "wer_reference": word_error_rate(self.refs, self.hyps["ref"]),
            "wer_chain": word_error_rate(self.refs, self.hyps["chain"]),
            "naturalness_reference": mean_naturalness(ref, sr).to_json(),
            "naturalness_chain": mean_naturalness(self.audio["chain"], sr).to_json(),
            "finite": bool(all(np.all(np.isfinite(a)) for a in dec + voc)),
            "limits": asdict(limits),
        }

    def close(self) -> None:
        self.ref_synth.close()
        self.cand_synth.close()


def compare(
    reference: Voice,
    candidate: Voice,
    sentences: Sequence[str],
    synthesis: SynthesisConfig,
    limits: Limits = Limits(),
    say: Callable[[str], None] = lambda line: None,
) -> Comparison:
    """Run ``sentences`` through both voices, part by part, without noise.

    The encoder is judged by its durations; the decoder by the audio the reference vocoder makes of its
    latents, given the reference's regulated frames (so a flipped duration does not misalign the rest);
    the vocoder by its audio of the reference's latents; the whole chain by its word error rate and its
    naturalness (DNSMOS P.808).

    Args:
        reference: the FP32 ONNX Runtime voice.
        candidate: the same voice on the device's models (TensorRT engines, or an FP16 simulation).
        sentences: text to speak (normalised and split as the synthesizer does).
        synthesis: chunking, as the daemon vocodes.
        limits: the bounds.
        say: progress callback.
    """
    tally = _Tally(reference, candidate, synthesis)
    try:
        for n, sentence in enumerate(sentences, 1):
            tally.sentence(sentence)
            if n % 5 == 0 or n == len(sentences):
                say(f"compared {n}/{len(sentences)} sentences")
    finally:
        tally.close()
    figures = tally.figures(limits)
    return Comparison(figures, tuple(_failures(figures, limits)))


def _played(audio: np.ndarray, gain: float) -> np.ndarray:
    return np.clip(audio * gain, -1.0, 1.0).astype(np.float32)


def _mean_log_mel(a: Sequence[np.ndarray], b: Sequence[np.ndarray], sample_rate: int) -> float:
    return float(np.mean([log_mel_distance(x, y, sample_rate) for x, y in zip(a, b)]))


def _failures(f: dict[str, Any], limits: Limits) -> list[str]:
    out = []
    if not f["finite"]:
        out.append("the device models produced inf or NaN")
    if f["changed_durations"] > limits.max_changed_durations:
        out.append(f"encoder: {f['changed_durations']:.1%} of phoneme durations changed "
                   f"(limit {limits.max_changed_durations:.0%})")
    if f["frame_change"] > limits.max_frame_change:
        out.append(f"encoder: total frames changed by {f['frame_change']:.2%} (limit {limits.max_frame_change:.0%})")
    for part in ("decoder", "vocoder"):
        if not f[f"{part}_log_mel"] <= f["log_mel_bound"]:
            out.append(f"{part}: log-mel distance {f[f'{part}_log_mel']:.4f} exceeds {f['log_mel_bound']:.4f} "
                       f"(white noise {limits.noise_snr_db:.0f} dB below the speech)")
    p808_ref, p808 = f["naturalness_reference"]["p808"], f["naturalness_chain"]["p808"]
    if p808 < p808_ref - limits.max_p808_drop:
        out.append(f"naturalness: DNSMOS P.808 {p808:.3f} against the reference's {p808_ref:.3f} "
                   f"(may fall by {limits.max_p808_drop})")
    if f["wer_chain"] > f["wer_reference"] + limits.max_wer_rise:
        out.append(f"word error rate {f['wer_chain']:.3f} against the reference's {f['wer_reference']:.3f} "
                   f"(may rise by {limits.max_wer_rise})")
    return out
