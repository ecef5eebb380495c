"""Audio outputs for a stream of chunks: speaker (sounddevice), WAV file, raw s16le PCM."""

from __future__ import annotations

import io
import logging
import wave
from pathlib import Path
from typing import BinaryIO, Protocol

import numpy as np

from jetvox.device.audio.pcm import pcm16_bytes
from jetvox.engines.errors import JetvoxError

log = logging.getLogger(__name__)


class AudioDeviceError(JetvoxError, RuntimeError):
    """No usable sound output device."""


class Sink(Protocol):
    """Receives PCM chunks of one utterance."""

    def write(self, audio: np.ndarray) -> None:
        """Append float32 samples in [-1, 1]."""
        ...

    def close(self) -> None:
        """Finish the utterance (flush, drain)."""
        ...


def wav_bytes(pcm: bytes, sample_rate: int) -> bytes:
    """A whole mono 16-bit WAV file in memory around s16le ``pcm`` (Hermes playBytes)."""
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes(pcm)
    return buf.getvalue()


class WavSink:
    """Writes a mono 16-bit WAV file as chunks arrive (header fixed up on close)."""

    def __init__(self, path: Path, sample_rate: int) -> None:
        self._wav = wave.open(str(path), "wb")
        self._wav.setnchannels(1)
        self._wav.setsampwidth(2)
        self._wav.setframerate(sample_rate)

    def write(self, audio: np.ndarray) -> None:
        self._wav.writeframes(pcm16_bytes(audio))

    def close(self) -> None:
        self._wav.close()


class RawSink:
    """Streams s16le PCM to a binary stream (stdout for ``--raw``)."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream

    def write(self, audio: np.ndarray) -> None:
        self._stream.write(pcm16_bytes(audio))
        self._stream.flush()

    def close(self) -> None:
        self._stream.flush()


def resolve_device(device: str | int | None) -> int | str | None:
    """A sounddevice output device by index or name; AudioDeviceError if there is none."""
    import sounddevice as sd

    if isinstance(device, str) and device.strip().isdigit():
        device = int(device)
    try:
        sd.query_devices(device, kind="output")
    except (ValueError, sd.PortAudioError) as exc:
        what = f"output device {device!r}" if device is not None else "a default output device"
        raise AudioDeviceError(f"no audio: cannot open {what} ({exc})") from None
    return device


class SpeakerSink:
    """Plays chunks on a sounddevice output stream as they arrive."""

    def __init__(self, sample_rate: int, device: str | int | None = None, latency: str = "low") -> None:
        """Open the output device.

        Args:
            sample_rate: the voice's rate; PortAudio/ALSA resamples if the device needs to.
            device: sounddevice device index or name; None uses the default output.
            latency: ``low``, ``high`` or seconds as a string.
        """
        import sounddevice as sd

        dev = resolve_device(device)
        lat: str | float = latency if latency in ("low", "high") else float(latency)
        try:
            self._stream = sd.RawOutputStream(
                samplerate=sample_rate, channels=1, dtype="int16", device=dev, latency=lat
            )
            self._stream.start()
        except (sd.PortAudioError, ValueError) as exc:
            raise AudioDeviceError(f"no audio: cannot open output device {dev!r} ({exc})") from None

    def write(self, audio: np.ndarray) -> None:
        import sounddevice as sd

        try:
            self._stream.write(pcm16_bytes(audio))
        except sd.PortAudioError as exc:
            raise AudioDeviceError(f"audio device failed while playing: {exc}") from None

    def close(self) -> None:
        try:
            self._stream.stop()  # drains what is buffered
        finally:
            self._stream.close()

