"""`jetvox say`: speak text once to the speaker, a WAV file or raw PCM on stdout."""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from jetvox.device.audio.sinks import AudioDeviceError, RawSink, Sink, SpeakerSink, WavSink
from jetvox.device.config import Config
from jetvox.device.synthesis.synthesizer import SynthesisError, synthesizer_for
from jetvox.device.text import ssml
from jetvox.device.voice.loader import load_voice

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SayRequest:
    """What `jetvox say` was asked to do."""

    texts: list[str] | None
    """Texts to speak; None reads lines from stdin."""
    wav: Path | None = None
    """Write a WAV file here instead of playing."""
    raw: bool = False
    """Stream s16le PCM to stdout instead of playing."""
    length_scale: float | None = None
    """Speaking-rate override."""
    volume: float | None = None
    """Volume override."""
    ssml: bool = False
    """Read the texts as SSML (texts that start with ``<speak`` always are)."""


def _spans(text: str) -> list[ssml.Span]:
    try:
        return ssml.parse(text).spans
    except ssml.SsmlError as exc:
        raise SynthesisError(str(exc)) from None


def _lines() -> Iterator[str]:
    for line in sys.stdin:
        if line.strip():
            yield line


def say(cfg: Config, req: SayRequest) -> int:
    """Speak ``req``; returns the process exit code."""
    if req.texts is not None and not any(t.strip() for t in req.texts):
        raise SynthesisError("nothing to say: the text is empty (give TEXT or --stdin)")
    if req.wav and req.raw:
        raise SynthesisError("choose one of -o FILE and --raw")
    with load_voice(cfg) as voice:
        synth = synthesizer_for(voice, cfg)
        sink: Sink
        if req.wav:
            sink = WavSink(req.wav, voice.sample_rate)
        elif req.raw:
            sink = RawSink(sys.stdout.buffer)
        else:
            try:
                sink = SpeakerSink(voice.sample_rate, cfg.audio.device, cfg.audio.latency)
            except AudioDeviceError as exc:
                raise AudioDeviceError(f"{exc}; write a file instead with -o out.wav, or use --raw") from None
        params = synth.params(length_scale=req.length_scale, volume=req.volume)
        failures = 0
        try:
            for text in req.texts if req.texts is not None else _lines():
                try:
                    if req.ssml or ssml.is_ssml(text):
                        chunks = synth.synthesize_spans(_spans(text), params)
                    else:
                        chunks = synth.synthesize(text, params)
                    for chunk in chunks:
                        sink.write(chunk.audio)
                except SynthesisError as exc:
                    if req.texts is not None:
                        raise
                    failures += 1
                    print(f"jetvox: skipped line: {exc}", file=sys.stderr)
        finally:
            sink.close()
            synth.close()
    return 1 if failures else 0
