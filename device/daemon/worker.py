"""The one synthesis thread: takes jobs by priority, speaks them to their outputs, pings the watchdog."""

from __future__ import annotations

import itertools
import logging
import threading
import time
from typing import Iterator, Optional

import numpy as np

from jetvox.device.audio.outputs import (
    Speaker,
    SpeakerUnavailable,
    Utterance,
    targets_of,
)
from jetvox.device.audio.pcm import from_pcm16, pcm16_bytes
from jetvox.device.audio.sinks import wav_bytes
from jetvox.device.config import Config
from jetvox.device.daemon.announce import Announcements
from jetvox.device.daemon.cache import AudioCache, CachedAudio, cache_key
from jetvox.device.daemon.controls import Controls
from jetvox.device.daemon.jobs import JobBook
from jetvox.device.daemon.messages import Status, Topics
from jetvox.device.daemon.notify import Notifier
from jetvox.device.daemon.voices import LoadedVoice, VoicePool
from jetvox.device.daemon.work_queue import Job, WorkQueue
from jetvox.device.synthesis.synthesizer import AudioChunk, Params, SynthesisError, Synthesizer
from jetvox.device.text import ssml

log = logging.getLogger(__name__)


class _CutOff(Exception):
    """The job was cancelled by an alert while it was spoken."""


class _Stopping(Exception):
    """The daemon is stopping: leave the job unacknowledged."""


class SynthesisWorker(threading.Thread):
    """Runs every inference of the daemon, so a TensorRT backend sees exactly one thread.

    The watchdog is pinged from here only: while waiting for work (the wait is shorter than half the
    watchdog timeout), between chunks, and while waiting for a sound device or the broker. A hung
    synthesis therefore stops the pings and systemd restarts the daemon.
    """

    def __init__(
        self,
        cfg: Config,
        synth: Synthesizer,
        queue: WorkQueue,
        book: JobBook,
        topics: Topics,
        notifier: Notifier,
        cache: Optional[AudioCache],
        stop: threading.Event,
        announcements: Optional[Announcements] = None,
        controls: Optional[Controls] = None,
    ) -> None:
        """Prepare the worker (``start`` runs it).

        Args:
            cfg: outputs, speaker and cache settings.
            synth: the loaded voice's synthesizer (used by this thread only).
            queue: jobs to take.
            book: publishes statuses and acknowledges finished jobs.
            topics: topic names for audio and Hermes playBytes.
            notifier: sd_notify, for watchdog pings and STATUS lines.
            cache: audio cache, or None.
            stop: set when the daemon stops; the current job is then left unacknowledged.
            announcements: chime, gain per priority, quiet hours (default: the configured ones).
            controls: speaker volume and mute set at run time, and where activity is reported.
        """
        super().__init__(name="jetvox-synthesis", daemon=True)
        self._cfg = cfg
        self._synth = synth
        self._queue = queue
        self._book = book
        self._topics = topics
        self._notifier = notifier
        self._cache = cache
        self._halt = stop
        self._announce = announcements or Announcements(cfg.announcements)
        self._controls = controls or Controls(cfg.audio.volume)
        self._speaker = Speaker(cfg.audio)
        self.voices = VoicePool(cfg, synth)
        """The configured voice and the few others messages asked for (this thread only)."""
        self._started_job: Optional[Job] = None
        self.crashed: Optional[BaseException] = None
        """The exception that killed the worker, if one did."""
        self.spoken = 0
        """Messages finished with ``done``."""
        self.warmed_up = threading.Event()
        """Set once the warm-up utterance is done (or failed): the daemon connects after it."""

    def run(self) -> None:
        try:
            try:
                self._warm_up()
            finally:
                self.warmed_up.set()
            self._loop()
        except BaseException as exc:  # the daemon exits non-zero and systemd restarts it
            log.exception("the synthesis worker crashed")
            self.crashed = exc
            self._halt.set()

    def _warm_up(self) -> None:
        """One short utterance, discarded, so the first message does not pay for the engines' first run."""
        t0 = time.monotonic()
        try:
            for _ in self._synth.synthesize("Ready."):
                self._notifier.watchdog()
        except Exception:  # a broken voice shows up on the first message too, with its status
            log.warning("warm-up synthesis failed", exc_info=True)
            return
        log.debug("warm-up synthesis took %.0f ms", (time.monotonic() - t0) * 1000)

    def _loop(self) -> None:
        idle_wait = min(self._notifier.ping_interval_s, 5.0)
        while not self._halt.is_set():
            self._notifier.watchdog()
            job = self._queue.get(timeout=idle_wait, hold=self._announce.holding())
            if job is None:
                continue
            self._controls.activity(speaking=True, queue_length=len(self._queue))
            try:
                if job.sink is not None:
                    self._stream(job)
                else:
                    self._handle(job)
            finally:
                self._controls.activity(speaking=False, queue_length=len(self._queue))
            self._notifier.status(f"ready: {self.spoken} spoken, {len(self._queue)} queued")

    def _tick(self) -> None:
        self._notifier.watchdog()

    def _handle(self, job: Job) -> None:
        if job.final is not None:  # spoken before a restart; only its final status was not confirmed
            log.info("message %s was finished before the restart; re-sending its final status", job.id)
            self._book.finish(job, Status.from_dict(job.final), tick=self._tick, stop=self._halt)
            return
        reason = self._refusal(job)
        if reason is not None:
            self._book.finish(job, Status(id=job.id, state="dropped", reason=reason), tick=self._tick, stop=self._halt)
            return
        self._queue.start(job)
        try:
            status, mids = self._attempt(job)
        except _Stopping:
            self._queue.release(job)
            return
        finally:
            self._queue.finish(job)
        if status.state == "done":
            self.spoken += 1
        self._book.finish(job, status, mids, tick=self._tick, stop=self._halt)

    def _refusal(self, job: Job) -> Optional[str]:
        """Why a job taken from the queue is dropped unspoken (TTL, quiet hours set to drop, muted), or None."""
        if job.expired():
            return f"expired: waited {job.age():.1f} s, ttl_s is {job.ttl_s:g}"
        if job.priority in self._announce.held():  # only taken in the window when quiet hours drop
            return self._announce.quiet_reason()
        if job.sink is None and self._muted(job) and targets_of(job.output) == {"speaker"}:
            return "the speaker is muted (alerts still play)"
        return None

    def _muted(self, job: Job) -> bool:
        return self._controls.state.muted and job.priority != "alert"

    def _stream(self, job: Job) -> None:
        """Speak a connection-bound job (Wyoming) into its sink: no spool, no statuses, no speaker."""
        sink = job.sink
        reason = self._refusal(job)
        if reason is not None:
            sink.end("dropped", reason)
            return
        self._queue.start(job)
        t0 = time.monotonic()
        try:
            voice = self.voices.get(job.voice)
            try:
                stream = self._synthesis(job, voice, job.volume)
                sink.start(voice.synth.voice.sample_rate)
                first = True
                for chunk in stream:
                    if self._halt.is_set() or job.cancel.is_set():
                        _close(stream)
                        sink.end("dropped", job.cancel_reason or "the server is stopping")
                        return
                    sink.audio(chunk.pcm16())
                    if first:
                        first = False
                        self._controls.activity(first_audio_ms=round((time.monotonic() - t0) * 1000, 1))
                    self._notifier.watchdog()
            finally:
                self.voices.release(voice)
        except SynthesisError as exc:
            sink.end("error", str(exc))
            return
        except Exception as exc:  # one client's failure never wedges the queue
            log.exception("Wyoming request %s failed", job.id)
            sink.end("error", f"internal error: {type(exc).__name__}: {exc}")
            return
        finally:
            self._queue.finish(job)
        self.spoken += 1
        sink.end("done")

    def _attempt(self, job: Job) -> tuple[Status, list[int]]:
        """Speak ``job``, waiting for the speaker if it is the only output; its final status and publishes."""
        while True:
            try:
                return self._speak(job)
            except SpeakerUnavailable as exc:
                log.info("message %s waits for the sound device: %s", job.id, exc)
                if not self._wait(self._cfg.audio.retry_s, job):
                    if job.cancel.is_set():
                        return Status(id=job.id, state="dropped", reason=job.cancel_reason), []
                    if self._halt.is_set():
                        raise _Stopping() from None
                    return Status(id=job.id, state="dropped", reason=f"expired waiting for a sound device ({exc})"), []
            except SynthesisError as exc:
                return Status(id=job.id, state="error", reason=str(exc)), []
            except _CutOff:
                return Status(id=job.id, state="dropped", reason=job.cancel_reason or "cut off"), []
            except _Stopping:
                raise
            except Exception as exc:  # a failing model must not wedge the queue on one message
                log.exception("message %s failed", job.id)
                return Status(id=job.id, state="error", reason=f"internal error: {type(exc).__name__}: {exc}"), []

    def _wait(self, seconds: float, job: Job) -> bool:
        """Sleep, pinging the watchdog; False if the job got cancelled or expired, or the daemon stops."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            if self._halt.is_set() or job.cancel.is_set() or job.expired():
                return False
            self._notifier.watchdog()
            self._halt.wait(min(0.5, max(0.0, end - time.monotonic())))
        return not (self._halt.is_set() or job.cancel.is_set() or job.expired())

    def _audio_of(
        self, job: Job, voice: LoadedVoice
    ) -> tuple[Optional[str], Optional[CachedAudio], Optional[Iterator[AudioChunk]], Iterator[tuple[np.ndarray, bytes]]]:
        """(cache key, cached audio, synthesis stream, (float, PCM) chunks) of a job: from the cache, else synthesised.

        Raises SynthesisError before any output opens when the text cannot be spoken.
        """
        volume = (self._cfg.synthesis.volume if job.volume is None else job.volume) * self._announce.gain(job.priority)
        params = self._params(job, voice, volume)
        key = cached = None
        if self._cache is not None:
            key = cache_key(job.text, voice.identity, params, self._cfg.synthesis)
            cached = self._cache.get(key)
        if cached is not None:
            return key, cached, None, _from_cache(cached)
        stream = self._synthesis(job, voice, volume)
        return key, None, stream, ((c.audio, c.pcm16()) for c in stream)

    @staticmethod
    def _params(job: Job, voice: LoadedVoice, volume: Optional[float]) -> Params:
        return voice.synth.params(length_scale=job.length_scale, volume=volume,
                                  sentence_silence_s=job.sentence_silence)

    def _synthesis(self, job: Job, voice: LoadedVoice, volume: Optional[float]) -> Iterator[AudioChunk]:
        """The job's chunks as synthesised (SSML spans, each in its own voice if it names one, or plain text).

        Raises SynthesisError before yielding anything when the text cannot be spoken.
        """
        params = self._params(job, voice, volume)
        if job.ssml:
            spans = (job.document or ssml.parse(job.text)).spans
            return voice.synth.synthesize_spans(spans, params, voices=lambda name: self.voices.get(name).synth)
        return voice.synth.synthesize(job.text, params)

    def _play(
        self, job: Job, chunks: Iterator[tuple[np.ndarray, bytes]], utt: Utterance, stream: object, t0: float
    ) -> tuple[Optional[float], list[bytes]]:
        """Write every chunk to the utterance's outputs; (first-audio ms, the PCM chunks). Aborts it on any error."""
        first_ms: Optional[float] = None
        pcm_chunks: list[bytes] = []
        try:
            for audio, pcm in chunks:
                if self._halt.is_set():
                    raise _Stopping()
                if job.cancel.is_set():
                    raise _CutOff()
                if first_ms is None:
                    first_ms = (time.monotonic() - t0) * 1000
                utt.write(audio, pcm)
                pcm_chunks.append(pcm)
                self._notifier.watchdog()
        except BaseException:
            utt.abort()
            _close(stream)
            raise
        return first_ms, pcm_chunks

    def _speak(self, job: Job) -> tuple[Status, list[int]]:
        voice = self.voices.get(job.voice)
        try:
            return self._speak_with(job, voice)
        finally:
            self.voices.release(voice)

    def _speak_with(self, job: Job, voice: LoadedVoice) -> tuple[Status, list[int]]:
        t0 = time.monotonic()
        key, cached, stream, chunks = self._audio_of(job, voice)
        sample_rate = cached.sample_rate if cached is not None else voice.synth.voice.sample_rate
        targets = targets_of(job.output)
        if self._muted(job):
            targets = targets - {"speaker"}
        chime = self._announce.chime(job.priority, sample_rate)
        if chime is not None:  # the chime and the speech are one stream: no gap, no second device open
            chunks = itertools.chain([(chime, pcm16_bytes(chime))], chunks)
        try:
            utt = Utterance(job.id, targets, sample_rate, self._speaker, self._book.broker.publish,
                            self._topics.audio(job.id), self._cfg.audio, speaker_volume=self._controls.state.volume)
        except SpeakerUnavailable:
            _close(stream)
            raise
        if self._started_job is not job:  # once per job, also when a speaker failure makes it start over
            self._started_job = job
            self._book.publish_status(Status(id=job.id, state="started", priority=job.priority,
                                             sample_rate=sample_rate, wait_ms=round((t0 - job.received) * 1000, 1)))
        self._notifier.status(f"speaking {job.id}")
        first_ms, pcm_chunks = self._play(job, chunks, utt, stream, t0)
        samples = sum(len(pcm) for pcm in pcm_chunks) // 2
        result = utt.close()
        mids = list(result.mids)
        if key is not None and cached is None and self._cache is not None:
            speech = pcm_chunks[1:] if chime is not None else pcm_chunks
            self._cache.put(key, CachedAudio(sample_rate=sample_rate, chunks=speech))
        if job.hermes is not None and "mqtt" in targets:
            wav = wav_bytes(b"".join(pcm_chunks), sample_rate)
            mids.append(self._book.broker.publish(self._topics.play_bytes(job.id), wav))
        status = Status(
            id=job.id,
            state="done",
            sample_rate=sample_rate,
            chunks=len(pcm_chunks),
            audio_s=round(samples / sample_rate, 3),
            first_audio_ms=round(first_ms or 0.0, 1),
            wait_ms=round((t0 - job.received) * 1000, 1),
            cached=cached is not None,
            outputs=result.outputs,
            speaker_error=result.speaker_error,
            voice=voice.synth.voice.name,
            chime=chime is not None or None,
            muted=("speaker" in targets_of(job.output) and "speaker" not in targets) or None,
        )
        if first_ms is not None:
            self._controls.activity(first_audio_ms=status.first_audio_ms)
        return status, mids


def _close(stream: object) -> None:
    """Close a synthesis generator early (it releases the synthesizer)."""
    close = getattr(stream, "close", None)
    if close is not None:
        close()


def _from_cache(cached: CachedAudio) -> Iterator[tuple[np.ndarray, bytes]]:
    for pcm in cached.chunks:
        yield from_pcm16(pcm), pcm
