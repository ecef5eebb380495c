"""Speech quality metrics shared by the tests and the INT8/distillation quality gates."""

from __future__ import annotations

import functools
import io
import logging
import re
import threading
import unicodedata
from typing import TYPE_CHECKING, Sequence

import jiwer
import numpy as np
import numpy.typing as npt

from jetvox.device.audio.pcm import to_pcm16

if TYPE_CHECKING:
    from pocketsphinx import Decoder

logger = logging.getLogger(__name__)

ASR_SAMPLE_RATE = 16000
N_MELS = 80
N_FFT = 1024
HOP_LENGTH = 256
LOG_FLOOR = 1e-5

_NON_WORD = re.compile(r"[^\w']+|_+")
_DOTTED_INITIALISM = re.compile(r"\b(?:[^\W\d_]\.){2,}")
# One pocketsphinx decoder per process; it is not thread-safe, so calls are serialised.
_DECODER_LOCK = threading.Lock()


# ---------------------------------------------------------------------------
# Audio helpers
# ---------------------------------------------------------------------------


def _as_float_mono(audio: np.ndarray) -> np.ndarray:
    """Return 1-D float32 audio in [-1, 1]; int16 input is rescaled."""
    array = np.asarray(audio)
    if array.ndim == 2 and 1 in array.shape:
        array = array.reshape(-1)
    if array.ndim != 1:
        raise ValueError(f"expected mono audio (1-D), got shape {array.shape}")
    if np.issubdtype(array.dtype, np.unsignedinteger):
        raise ValueError(f"unsigned audio ({array.dtype}) is not supported; use float or int16")
    if np.issubdtype(array.dtype, np.integer):
        return (array.astype(np.float32) / np.float32(np.iinfo(array.dtype).max + 1)).astype(np.float32)
    if not np.issubdtype(array.dtype, np.floating):
        raise ValueError(f"expected float or integer audio, got dtype {array.dtype}")
    return array.astype(np.float32, copy=False)


def _check_rate(sample_rate: int) -> None:
    """Reject non-positive sample rates."""
    if int(sample_rate) != sample_rate or sample_rate <= 0:
        raise ValueError(f"sample_rate must be a positive integer, got {sample_rate!r}")


def _to_pcm16(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """Resample to 16 kHz (soxr, high quality) and convert to little-endian int16."""
    samples = _as_float_mono(audio)
    if sample_rate != ASR_SAMPLE_RATE and samples.size:
        import soxr  # deferred: only transcription needs it

        samples = soxr.resample(samples, sample_rate, ASR_SAMPLE_RATE).astype(np.float32, copy=False)
    return to_pcm16(np.nan_to_num(samples, nan=0.0, posinf=1.0, neginf=-1.0))


def _has_speech(pcm: np.ndarray) -> bool:
    """Whether pocketsphinx's voice-activity segmenter finds any speech in 16 kHz PCM."""
    from pocketsphinx import Segmenter  # deferred: heavy native module

    segments = Segmenter(sample_rate=ASR_SAMPLE_RATE).segment(io.BytesIO(pcm.tobytes()))
    return next(iter(segments), None) is not None


@functools.lru_cache(maxsize=1)
def _decoder() -> Decoder:
    """The process-wide decoder with pocketsphinx's bundled US-English model (call under lock)."""
    from pocketsphinx import Decoder

    logger.info("loading pocketsphinx default US-English model")
    # Batch CMN normalises each utterance on its own; transcribe also resets the feature state before each one.
    return Decoder(loglevel="ERROR", cmn="batch", samprate=ASR_SAMPLE_RATE)


# ---------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------


def transcribe(audio: np.ndarray, sample_rate: int) -> str:
    """Transcribe English speech offline with pocketsphinx's default model.

    Audio is resampled to 16 kHz with soxr. Audio in which pocketsphinx's voice
    activity detector finds no speech transcribes to "" (the decoder would
    otherwise hallucinate a word for digital silence).

    Args:
        audio: Mono samples: float in [-1, 1] (e.g. Piper's ``audio_float_array``)
            or int16.
        sample_rate: Sample rate of ``audio`` in Hz (e.g. 22050).

    Returns:
        Lower-case words separated by single spaces; "" when nothing was heard.
    """
    _check_rate(sample_rate)
    pcm = _to_pcm16(audio, int(sample_rate))
    if pcm.size == 0 or not _has_speech(pcm):
        logger.debug("no speech in %s samples", pcm.size)
        return ""
    with _DECODER_LOCK:
        decoder = _decoder()
        # Without this the decoder's feature extraction keeps state from the previous utterance, and the same
        # audio could transcribe differently depending on what came before it (found when two identical clips,
        # one after the other, gave different words).
        decoder.reinit_feat()
        decoder.start_utt()
        decoder.process_raw(pcm.tobytes(), full_utt=True)
        decoder.end_utt()
        hypothesis = decoder.hyp()
    text = hypothesis.hypstr if hypothesis is not None else ""
    logger.debug("transcribed %s samples as %r", pcm.size, text)
    return " ".join(text.split())


def normalise_words(text: str) -> list[str]:
    """Split text into lower-case words without punctuation.

    Hyphens and other punctuation separate words ("twenty-one" -> "twenty",
    "one"); apostrophes inside words are kept ("o'clock"). Digits are left as
    they are, so references should spell numbers as words. Dotted initialisms
    are joined ("p.m." -> "pm"), as pocketsphinx's dictionary spells both.

    Args:
        text: Any text, e.g. a reference sentence or an ASR transcript.

    Returns:
        The words, in order.
    """
    folded = unicodedata.normalize("NFKC", text).lower()
    folded = _DOTTED_INITIALISM.sub(lambda m: m.group(0).replace(".", "") + " ", folded)
    words = (word.strip("'") for word in _NON_WORD.split(folded))
    return [word for word in words if word]


def word_error_rate(refs: Sequence[str], hyps: Sequence[str]) -> float:
    """Pooled word error rate: all edits over all reference words (via jiwer).

    Args:
        refs: Reference sentences.
        hyps: Hypothesis sentences, one per reference.

    Returns:
        (substitutions + deletions + insertions) / total reference words; can
        exceed 1.0 when there are many insertions.

    Raises:
        ValueError: If the lengths differ or the references hold no words.
        TypeError: If a single string is passed instead of a sequence.
    """
    if isinstance(refs, str) or isinstance(hyps, str):
        raise TypeError("refs and hyps must be sequences of sentences, not a single string")
    if len(refs) != len(hyps):
        raise ValueError(f"got {len(refs)} references but {len(hyps)} hypotheses")
    ref_texts = [" ".join(normalise_words(ref)) for ref in refs]
    hyp_texts = [" ".join(normalise_words(hyp)) for hyp in hyps]
    if not any(ref_texts):
        raise ValueError("word error rate is undefined: the references contain no words")
    return float(jiwer.wer(reference=ref_texts, hypothesis=hyp_texts))


def log_mel_distance(a: np.ndarray, b: np.ndarray, sample_rate: int) -> float:
    """Mean absolute difference between the log-mel spectrograms of two clips.

    Uses 80 Slaney-scale mels (area-normalised, as librosa and VITS do),
    n_fft 1024, hop 256, a periodic Hann window and centred frames over the
    magnitude spectrum, with log(max(mel, 1e-5)). The longer clip is trimmed to
    the length of the shorter one first, so the measure is symmetric.

    Args:
        a: Mono audio, float in [-1, 1] or int16.
        b: Mono audio at the same sample rate.
        sample_rate: Sample rate of both clips in Hz.

    Returns:
        The distance in natural-log units; 0.0 for identical clips.

    Raises:
        ValueError: If either clip is empty or not mono, or the rate is invalid.
    """
    _check_rate(sample_rate)
    first, second = _as_float_mono(a), _as_float_mono(b)
    length = min(first.size, second.size)
    if length == 0:
        raise ValueError("log_mel_distance needs two non-empty clips")
    mel_a = _log_mel(first[:length], int(sample_rate))
    mel_b = _log_mel(second[:length], int(sample_rate))
    return float(np.mean(np.abs(mel_a - mel_b)))


# ---------------------------------------------------------------------------
# Log-mel spectrogram (numpy only)
# ---------------------------------------------------------------------------


def _hz_to_mel(hz: npt.ArrayLike) -> np.ndarray:
    """Slaney mel scale: linear below 1 kHz, logarithmic above."""
    hz = np.asarray(hz, dtype=np.float64)
    linear = hz / (200.0 / 3.0)
    logarithmic = 15.0 + np.log(np.maximum(hz, 1e-10) / 1000.0) / (np.log(6.4) / 27.0)
    return np.where(hz >= 1000.0, logarithmic, linear)


def _mel_to_hz(mel: npt.ArrayLike) -> np.ndarray:
    """Inverse of :func:`_hz_to_mel`."""
    mel = np.asarray(mel, dtype=np.float64)
    linear = mel * (200.0 / 3.0)
    logarithmic = 1000.0 * np.exp((np.log(6.4) / 27.0) * (mel - 15.0))
    return np.where(mel >= 15.0, logarithmic, linear)


@functools.lru_cache(maxsize=8)
def _mel_filterbank(sample_rate: int) -> np.ndarray:
    """Triangular, area-normalised mel filters, shape (N_MELS, N_FFT // 2 + 1), read-only."""
    fft_freqs = np.linspace(0.0, sample_rate / 2.0, N_FFT // 2 + 1)
    mel_points = np.linspace(_hz_to_mel(0.0), _hz_to_mel(sample_rate / 2.0), N_MELS + 2)
    edges = _mel_to_hz(mel_points)
    widths = np.diff(edges)
    ramps = edges[:, None] - fft_freqs[None, :]
    rising = -ramps[:-2] / widths[:-1, None]
    falling = ramps[2:] / widths[1:, None]
    filters = np.maximum(0.0, np.minimum(rising, falling))
    filters *= (2.0 / (edges[2:] - edges[:-2]))[:, None]
    filters.setflags(write=False)
    return filters


@functools.lru_cache(maxsize=1)
def _hann_window() -> np.ndarray:
    """Periodic Hann window of N_FFT samples, read-only."""
    window = np.hanning(N_FFT + 1)[:-1]
    window.setflags(write=False)
    return window


def _log_mel(samples: np.ndarray, sample_rate: int) -> np.ndarray:
    """Log-mel spectrogram, shape (N_MELS, frames)."""
    pad = N_FFT // 2
    samples = samples.astype(np.float64)
    if samples.size > pad:
        padded = np.pad(samples, pad, mode="reflect")
    else:
        padded = np.pad(samples, pad, mode="constant")
    if padded.size < N_FFT:
        padded = np.pad(padded, (0, N_FFT - padded.size))
    frames = np.lib.stride_tricks.sliding_window_view(padded, N_FFT)[::HOP_LENGTH]
    magnitude = np.abs(np.fft.rfft(frames * _hann_window(), axis=1))
    mel = _mel_filterbank(sample_rate) @ magnitude.T
    return np.log(np.maximum(mel, LOG_FLOOR))
