"""Where one utterance goes: speaker (sounddevice), MQTT PCM chunks, WAV files; speaker failures are contained."""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from jetvox.device.audio.sinks import AudioDeviceError, SpeakerSink, WavSink
from jetvox.device.config import AudioConfig

log = logging.getLogger(__name__)


class SpeakerUnavailable(AudioDeviceError):
    """The speaker is the only output of a message and cannot play: the message waits and is retried."""


def targets_of(output: str) -> frozenset[str]:
    """``speaker``, ``mqtt`` or ``both`` as a set of output names."""
    return frozenset(("speaker", "mqtt")) if output == "both" else frozenset((output,))


class Speaker:
    """The local sound device, opened per utterance; failures are logged at most once per ``retry_s``."""

    def __init__(self, cfg: AudioConfig) -> None:
        self._cfg = cfg
        self._last_report = -1e9
        self.last_error: Optional[str] = None
        """Why the device could not be opened or failed last, if it did."""

    def open(self, sample_rate: int) -> SpeakerSink:
        """An output stream on the configured device; AudioDeviceError if there is none right now."""
        try:
            sink = SpeakerSink(sample_rate, self._cfg.device, self._cfg.latency)
        except AudioDeviceError as exc:
            self.failed(str(exc))
            raise
        if self.last_error is not None:
            log.info("sound device is back")
            self.last_error = None
        return sink

    def failed(self, reason: str) -> None:
        """Record (and, rate-limited, report) a device failure."""
        self.last_error = reason
        now = time.monotonic()
        if now - self._last_report >= self._cfg.retry_s:
            self._last_report = now
            log.warning("%s; retrying every %.0f s", reason, self._cfg.retry_s)


@dataclass
class UtteranceResult:
    """What the outputs of one utterance did."""

    outputs: tuple[str, ...]
    """Outputs that received the whole utterance."""
    mids: list[int] = field(default_factory=list)
    """MQTT publishes to wait for before acknowledging the message."""
    speaker_error: Optional[str] = None
    """Why the speaker dropped out while another output carried on."""


class Utterance:
    """Fans the chunks of one message out to its outputs, as they arrive."""

    def __init__(
        self,
        msg_id: str,
        targets: frozenset[str],
        sample_rate: int,
        speaker: Speaker,
        publish: Callable[[str, bytes], int],
        audio_topic: str,
        audio_cfg: AudioConfig,
        speaker_volume: Optional[float] = None,
    ) -> None:
        """Open the outputs of one message.

        Args:
            msg_id: the message id (WAV file name).
            targets: ``speaker`` and/or ``mqtt``.
            sample_rate: of the chunks.
            speaker: the sound device.
            publish: QoS 1 publish returning the mid (the MQTT intake's).
            audio_topic: ``<prefix>/audio/<id>``.
            audio_cfg: speaker volume and the WAV directory.
            speaker_volume: the speaker gain set at run time (None: ``audio_cfg.volume``).

        Raises SpeakerUnavailable when the speaker is the only target and cannot be opened.
        """
        self._targets = targets
        self._speaker = speaker
        self._publish = publish
        self._topic = audio_topic
        self._volume = audio_cfg.volume if speaker_volume is None else speaker_volume
        self._result = UtteranceResult(outputs=())
        self._sink: Optional[SpeakerSink] = None
        self._wav: Optional[WavSink] = None
        self._wav_path: Optional[Path] = None
        self._wav_tmp: Optional[Path] = None
        self._wav_cfg = audio_cfg
        if "speaker" in targets:
            try:
                self._sink = speaker.open(sample_rate)
            except AudioDeviceError as exc:
                if "mqtt" not in targets:
                    raise SpeakerUnavailable(str(exc)) from None
                self._result.speaker_error = str(exc)
        if audio_cfg.wav_dir is not None:
            try:
                audio_cfg.wav_dir.mkdir(parents=True, exist_ok=True)
                self._wav_path = audio_cfg.wav_dir / f"{msg_id}.wav"
                self._wav_tmp = audio_cfg.wav_dir / f".{msg_id}.wav.tmp"
                self._wav = WavSink(self._wav_tmp, sample_rate)
            except OSError as exc:
                log.warning("cannot write WAV files to %s: %s", audio_cfg.wav_dir, exc)
                self._wav = None

    def write(self, audio: np.ndarray, pcm: bytes) -> None:
        """One chunk: ``audio`` float32 for the speaker and WAV, ``pcm`` s16le for MQTT."""
        if "mqtt" in self._targets:
            self._result.mids.append(self._publish(self._topic, pcm))
        if self._sink is not None:
            try:
                self._sink.write(audio * self._volume if self._volume != 1.0 else audio)
            except AudioDeviceError as exc:
                self._speaker.failed(str(exc))
                self._drop_speaker()
                if "mqtt" not in self._targets:
                    raise SpeakerUnavailable(str(exc)) from None
                self._result.speaker_error = str(exc)
        if self._wav is not None:
            self._wav.write(audio)

    def _drop_speaker(self) -> None:
        sink, self._sink = self._sink, None
        if sink is not None:
            try:
                sink.close()
            except Exception as exc:  # the device is already failing
                log.debug("closing the failed sound device: %s", exc)

    def close(self) -> UtteranceResult:
        """Finish (drain the speaker, complete the WAV); what each output did."""
        outputs = []
        if self._sink is not None:
            try:
                self._sink.close()
                outputs.append("speaker")
            except Exception as exc:
                self._speaker.failed(f"audio device failed while draining: {exc}")
                self._result.speaker_error = str(exc)
            self._sink = None
        if "mqtt" in self._targets:
            outputs.append("mqtt")
        if self._wav is not None and self._wav_path is not None and self._wav_tmp is not None:
            try:
                self._wav.close()
                os.replace(self._wav_tmp, self._wav_path)
                outputs.append("wav")
                _prune(self._wav_path.parent, self._wav_cfg.wav_keep)
            except OSError as exc:
                log.warning("cannot finish %s: %s", self._wav_path, exc)
            self._wav = None
        self._result.outputs = tuple(outputs)
        return self._result

    def abort(self) -> None:
        """Stop without completing (cut off, shutdown, retry): the speaker stops, no WAV is kept."""
        self._drop_speaker()
        if self._wav is not None and self._wav_tmp is not None:
            try:
                self._wav.close()
            except Exception as exc:
                log.debug("closing an aborted WAV file: %s", exc)
            self._wav_tmp.unlink(missing_ok=True)
            self._wav = None

    @property
    def mids(self) -> list[int]:
        return self._result.mids


def _prune(directory: Path, keep: int) -> None:
    """Delete the oldest WAV files beyond ``keep`` (0 keeps all)."""
    if keep <= 0:
        return
    files = sorted(directory.glob("*.wav"), key=lambda p: p.stat().st_mtime)
    for old in files[: max(0, len(files) - keep)]:
        old.unlink(missing_ok=True)
