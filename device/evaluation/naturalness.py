"""Offline naturalness: DNSMOS P.808 and OVRL through speechmos's ONNX models, at equal loudness and 16 kHz."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Sequence

import numpy as np

DNSMOS_RATE = 16000
TARGET_DBFS = -26.0
"""Active speech level every clip is brought to before scoring, so gain does not move the score."""
_LOCK = threading.Lock()  # speechmos keeps one model pair in a module global


@dataclass(frozen=True)
class Naturalness:
    """Predicted mean opinion scores (1 to 5)."""

    p808: float
    """DNSMOS P.808: the score trained on ITU-T P.808 listening tests."""
    ovrl: float
    """DNSMOS overall quality (signal and background together)."""

    def to_json(self) -> dict[str, float]:
        return {"p808": round(self.p808, 3), "ovrl": round(self.ovrl, 3)}


def equal_loudness(audio: np.ndarray, sample_rate: int, dbfs: float = TARGET_DBFS) -> np.ndarray:
    """``audio`` scaled so its active part (20 ms frames within 40 dB of the loudest) has RMS ``dbfs``, clipped."""
    x = np.asarray(audio, dtype=np.float64).reshape(-1)
    frame = max(1, sample_rate // 50)
    n = len(x) // frame
    if n == 0 or not np.any(x):
        return x.astype(np.float32)
    rms = np.sqrt(np.mean(x[: n * frame].reshape(n, frame) ** 2, axis=1))
    active = rms[rms >= rms.max() * 10 ** (-40 / 20)]
    level = float(np.sqrt(np.mean(active**2)))
    return np.clip(x * (10 ** (dbfs / 20) / level), -1.0, 1.0).astype(np.float32)


def naturalness(audio: np.ndarray, sample_rate: int) -> Naturalness:
    """DNSMOS P.808 and OVRL of one mono clip (any rate; resampled to 16 kHz with soxr)."""
    import soxr  # deferred, as for transcription
    from speechmos import dnsmos  # deferred: loads librosa and two ONNX models

    x = np.asarray(audio, dtype=np.float32).reshape(-1)
    if sample_rate != DNSMOS_RATE:
        x = soxr.resample(x, sample_rate, DNSMOS_RATE).astype(np.float32)
    x = equal_loudness(np.nan_to_num(x), DNSMOS_RATE)
    with _LOCK:
        scores = dnsmos.run(x, DNSMOS_RATE)
    return Naturalness(p808=float(scores["p808_mos"]), ovrl=float(scores["ovrl_mos"]))


def mean_naturalness(clips: Sequence[np.ndarray], sample_rate: int) -> Naturalness:
    """The mean of each score over ``clips`` (one per sentence)."""
    if not clips:
        raise ValueError("no clips to score")
    scores = [naturalness(c, sample_rate) for c in clips]
    return Naturalness(p808=float(np.mean([s.p808 for s in scores])), ovrl=float(np.mean([s.ovrl for s in scores])))
