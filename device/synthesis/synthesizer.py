"""Streaming synthesis: text to sentences to latent frames to PCM chunks, yielded as they are vocoded."""

from __future__ import annotations

import itertools
import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Callable, Iterator, Sequence

import numpy as np

from jetvox.device.audio.pcm import pcm16_bytes
from jetvox.device.config import Config, SynthesisConfig
from jetvox.device.synthesis.chunks import Chunking
from jetvox.device.synthesis.feeds import acoustic_feeds
from jetvox.device.text.inline import InlinePhonemes
from jetvox.device.text.lexicon import LexiconFile
from jetvox.device.text.normalize import prepare
from jetvox.device.text.ssml import Span
from jetvox.device.voice.loader import Voice
from jetvox.engines.errors import JetvoxError

log = logging.getLogger(__name__)


class SynthesisError(JetvoxError, ValueError):
    """The text cannot be spoken (empty, nothing speakable, too long)."""


@dataclass(frozen=True)
class AudioChunk:
    """A piece of the utterance, ready to play."""

    audio: np.ndarray
    """float32 mono samples in [-1, 1]."""
    sample_rate: int
    """Samples per second."""
    sentence: int
    """Index of the sentence this chunk belongs to."""
    index: int
    """Index of the chunk within the utterance."""
    last: bool
    """True for the final chunk of the utterance."""

    def pcm16(self) -> bytes:
        """Signed 16-bit little-endian PCM."""
        return pcm16_bytes(self.audio)

    @property
    def seconds(self) -> float:
        return len(self.audio) / self.sample_rate


@dataclass(frozen=True)
class Params:
    """Per-request synthesis parameters (defaults from the config)."""

    length_scale: float
    """Speaking rate: above 1 is slower."""
    noise_scale: float
    """Generator noise."""
    noise_w: float
    """Duration noise."""
    volume: float
    """Gain on top of the voice's calibrated gain."""
    sentence_silence_s: float = 0.2
    """Silence after each sentence but the last."""


def synthesizer_for(voice: Voice, cfg: Config) -> Synthesizer:
    """The synthesizer the appliance runs: sentences bounded by the engines' profile (``engine.max_phonemes``)."""
    return Synthesizer(voice, cfg.synthesis, max_ids=cfg.engine.max_phonemes)


class Synthesizer:
    """Turns text into a stream of AudioChunks with one voice; safe to use from one thread at a time."""

    def __init__(self, voice: Voice, cfg: SynthesisConfig, max_ids: int | None = None) -> None:
        """Wrap a loaded voice.

        Args:
            voice: the provisioned voice with its engines.
            cfg: chunking and default synthesis parameters.
            max_ids: most phoneme ids per acoustic call (``engine.max_phonemes``, the TensorRT profile's
                maximum; see ``synthesizer_for``); None allows what ``max_sentence_chars`` can produce.
        """
        self.voice = voice
        self.cfg = cfg
        self.max_ids = max_ids or 4 * cfg.max_sentence_chars + 16
        self.defaults = Params(cfg.length_scale, cfg.noise_scale, cfg.noise_w, cfg.volume, cfg.sentence_silence_s)
        self.chunking = Chunking.of(cfg)
        self.lexicon = LexiconFile(cfg.lexicon)
        """The pronunciation lexicon, following its file."""
        # The acoustic model of sentence N+1 runs on this thread while sentence N is vocoded.
        self._ahead = ThreadPoolExecutor(max_workers=1, thread_name_prefix="jetvox-acoustic")
        self._lock = threading.Lock()

    def params(self, **overrides: float | None) -> Params:
        """Defaults with the given non-None overrides."""
        return replace(self.defaults, **{k: v for k, v in overrides.items() if v is not None})

    def sentences(self, text: str) -> list[list[int]]:
        """Validate and normalise ``text``; phoneme ids per speakable sentence."""
        return [ids for _, ids in self.pieces(text)]

    def pieces(self, text: str) -> list[tuple[str, list[int]]]:
        """Validate and normalise ``text``; (sentence text, phoneme ids) per speakable sentence.

        A sentence whose ids exceed ``max_ids`` (the acoustic engine's profile) is split at word
        boundaries until every piece fits, so no engine is ever fed more than it was built for.
        """
        out = list(self._pieces(text))
        if not out:
            raise SynthesisError(f"nothing speakable in the text: {text[:60]!r}")
        return out

    def _pieces(self, text: str) -> Iterator[tuple[str, list[int]]]:
        """``pieces``, phonemised one sentence at a time as they are taken (validation happens first)."""
        if not isinstance(text, str) or not text.strip():
            raise SynthesisError("nothing to say: the text is empty")
        if len(text) > self.cfg.max_text_chars:
            raise SynthesisError(
                f"text is {len(text)} characters; the limit is {self.cfg.max_text_chars} (synthesis.max_text_chars)"
            )
        protected, inline = self.check_inline(self.lexicon.current().apply(text))
        sentences = prepare(protected, self.cfg.max_sentence_chars)
        return (piece for sentence in sentences for piece in self._fit(sentence, inline))

    def check_inline(self, text: str) -> tuple[str, InlinePhonemes]:
        """``text`` with its ``[[ phonemes ]]`` set aside; SynthesisError naming symbols the voice lacks."""
        protected, inline = InlinePhonemes.protect(text)
        unknown = inline.unknown(set(self.voice.phonemizer.id_map))
        if unknown:
            raise SynthesisError(f"[[ phonemes ]]: the voice has no symbol {', '.join(map(repr, unknown[:10]))}; "
                                 "write espeak-ng IPA as `espeak-ng -q -x --ipa` prints it")
        return protected, inline

    def _fit(self, sentence: str, inline: InlinePhonemes | None = None) -> list[tuple[str, list[int]]]:
        ids = self.voice.phonemizer.sentence_ids(sentence, inline)
        if len(ids) <= self.max_ids:
            return [(sentence, ids)] if ids else []
        words = sentence.split()
        if len(words) < 2:  # one "word" longer than the profile: nothing to split at
            log.warning("a word of %d phoneme ids truncated to %d", len(ids), self.max_ids)
            return [(sentence, ids[: self.max_ids - 1] + ids[-1:])]
        half = len(words) // 2
        return self._fit(" ".join(words[:half]), inline) + self._fit(" ".join(words[half:]), inline)

    def voice_max_ids(self) -> int:
        """Most phoneme ids one acoustic call takes."""
        return self.max_ids

    def acoustic(self, ids: Sequence[int], params: Params) -> np.ndarray:
        """Latent frames z [1, C, T] for one sentence's phoneme ids."""
        feeds = acoustic_feeds(ids, (params.noise_scale, params.length_scale, params.noise_w))
        return self.voice.acoustic.infer(feeds)["z"]

    def vocode_chunks(self, z: np.ndarray, first_frames: int | None = None) -> Iterator[tuple[np.ndarray, bool]]:
        """Vocode ``z`` in overlapping chunks, each with whether it is the last.

        Concatenated, the chunks equal the unchunked output.
        """
        return self.chunking.vocode(
            lambda window: self.voice.vocoder.infer({"z": window})["audio"][0], z, self.voice.hop_length, first_frames
        )

    def vocode_full(self, z: np.ndarray) -> np.ndarray:
        """Vocode all of ``z`` in one call (reference for the chunked path)."""
        return self.voice.vocoder.infer({"z": z})["audio"][0]

    def synthesize(self, text: str, params: Params | None = None) -> Iterator[AudioChunk]:
        """Speak ``text``: yields chunks as soon as each is vocoded.

        Only the first speakable sentence is phonemised before the first chunk; the others follow while
        earlier ones are vocoded, so a long text starts as soon as a short one. Raises SynthesisError
        before yielding anything when the text cannot be spoken.
        """
        pieces = self._pieces(text)
        first = next(pieces, None)
        if first is None:
            raise SynthesisError(f"nothing speakable in the text: {text[:60]!r}")
        return self._stream(itertools.chain([first[1]], (ids for _, ids in pieces)), params or self.defaults)

    def _stream(self, sentences: Iterator[list[int]], params: Params) -> Iterator[AudioChunk]:
        with self._lock:
            sr = self.voice.sample_rate
            gain = self.voice.gain * params.volume
            silence = np.zeros(int(round(params.sentence_silence_s * sr)), dtype=np.float32)
            pending: Future[np.ndarray] = self._ahead.submit(self.acoustic, next(sentences), params)
            upcoming = next(sentences, None)
            index = s = 0
            while True:
                z = pending.result()
                if upcoming is not None:  # its acoustic model runs while this sentence is vocoded
                    pending = self._ahead.submit(self.acoustic, upcoming, params)
                last_sentence = upcoming is None
                for piece, is_last_piece in self.vocode_chunks(z):
                    audio = np.clip(piece * gain, -1.0, 1.0).astype(np.float32)
                    final = is_last_piece and last_sentence
                    if is_last_piece and not final:
                        audio = np.concatenate([audio, silence])
                    yield AudioChunk(audio=audio, sample_rate=sr, sentence=s, index=index, last=final)
                    index += 1
                if last_sentence:
                    return
                upcoming = next(sentences, None)  # phonemised while the acoustic model of the one before runs
                s += 1

    def synthesize_spans(self, spans: Sequence[Span], params: Params | None = None,
                         voices: Callable[[str], "Synthesizer"] | None = None) -> Iterator[AudioChunk]:
        """Speak SSML spans: each in its rate, volume and voice, each pause an exact silence after it.

        Args:
            spans: from ``ssml.parse``.
            params: the message's parameters; a span's rate divides the length scale, its dB scale the volume.
            voices: the synthesizer of another voice a span names (None: such spans use this voice).

        Raises SynthesisError before yielding anything when no span can be spoken.
        """
        base = params or self.defaults
        plans: list[tuple[Synthesizer, Params, Span]] = []
        for span in spans:
            synth = voices(span.style.voice) if (voices is not None and span.style.voice) else self
            if synth.voice.sample_rate != self.voice.sample_rate:
                raise SynthesisError(f"voice {synth.voice.name} speaks at {synth.voice.sample_rate} Hz, the "
                                     f"message's at {self.voice.sample_rate} Hz: one message keeps one rate")
            synth.check_inline(span.text)  # every span's [[ phonemes ]] before the first chunk, not mid-stream
            plans.append((synth, replace(base, length_scale=base.length_scale / span.style.rate,
                                         volume=base.volume * 10 ** (span.style.volume_db / 20)), span))
        started: dict[int, Iterator[AudioChunk]] = {}
        for i, (synth, span_params, span) in enumerate(plans):  # the first speakable span starts now: errors first
            if span.text:
                try:
                    started[i] = synth.synthesize(span.text, span_params)
                    break
                except SynthesisError:
                    continue  # nothing speakable in this span (punctuation only, say)
            if span.pause_s:
                break
        if not started and not any(span.pause_s for span in spans):
            raise SynthesisError("nothing speakable in the SSML")
        return _relabel(self._spans(plans, started), self.voice.sample_rate)

    def _spans(self, plans: list[tuple["Synthesizer", Params, Span]],
               started: dict[int, Iterator[AudioChunk]]) -> Iterator[tuple[np.ndarray, bool]]:
        """(audio, whether it ends the message) per piece, each yielded as soon as it exists."""
        sr = self.voice.sample_rate
        for i, (synth, params, span) in enumerate(plans):
            final_span = i == len(plans) - 1
            chunks = started.get(i)
            if chunks is None and span.text:
                try:
                    chunks = synth.synthesize(span.text, params)
                except SynthesisError:
                    chunks = None  # nothing speakable in this span
            for chunk in chunks or ():
                yield chunk.audio, final_span and chunk.last and not span.pause_s
            if span.pause_s > 0:
                yield np.zeros(int(round(span.pause_s * sr)), dtype=np.float32), final_span

    def close(self) -> None:
        self._ahead.shutdown(wait=True, cancel_futures=True)


def _relabel(pieces: Iterator[tuple[np.ndarray, bool]], sample_rate: int) -> Iterator[AudioChunk]:
    """Audio pieces as one stream of chunks, indices in order (no look-ahead: each goes out at once)."""
    for index, (piece, last) in enumerate(pieces):
        yield AudioChunk(audio=piece, sample_rate=sample_rate, sentence=0, index=index, last=last)

