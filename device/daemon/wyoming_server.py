"""The Wyoming TTS server (Home Assistant's voice protocol) inside `jetvox serve`, on the PyPI `wyoming` package.

Requests become connection-bound jobs in the daemon's one queue, so the synthesis worker speaks them in
priority order beside MQTT messages and never runs two syntheses at once. Each connection's events are
read by its own asyncio task: one client's failure or disconnect never touches another's.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from dataclasses import dataclass
from typing import Any, Optional, Union

import ifaddr  # zeroconf's own dependency: the host's addresses
from sentence_stream import SentenceBoundaryDetector
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.error import Error
from wyoming.event import Event
from wyoming.info import Attribution, Describe, Info, TtsProgram, TtsVoice
from wyoming.server import AsyncEventHandler, AsyncServer, AsyncTcpServer
from wyoming.tts import Synthesize, SynthesizeChunk, SynthesizeStart, SynthesizeStop, SynthesizeStopped
from zeroconf import ServiceInfo, Zeroconf

from jetvox.device import __version__
from jetvox.device.config import Config, wyoming_address
from jetvox.device.daemon.messages import VOICE_NAME, new_id, text_problem
from jetvox.device.daemon.voices import provisioned, provisioned_voices
from jetvox.device.daemon.work_queue import Job, WorkQueue
from jetvox.device.text import ssml

log = logging.getLogger(__name__)

SUPPORT_URL = "https://github.com/jetvox/jetvox"
_WIDTH, _CHANNELS = 2, 1  # s16le mono, as every jetvox output


class RequestError(Exception):
    """A bad Wyoming request: answered with an ``error`` event carrying ``code`` and the message."""

    def __init__(self, text: str, code: str) -> None:
        super().__init__(text)
        self.code = code


@dataclass(frozen=True)
class _End:
    state: str
    reason: Optional[str]


class LoopSink:
    """A job's audio from the worker thread to one connection's event loop, in order (never blocks the worker)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.events: asyncio.Queue[Union[int, bytes, _End]] = asyncio.Queue()

    def _put(self, item: Union[int, bytes, _End]) -> None:
        try:
            self._loop.call_soon_threadsafe(self.events.put_nowait, item)
        except RuntimeError:  # the server's loop is closed: nobody is listening any more
            pass

    def start(self, sample_rate: int) -> None:
        self._put(sample_rate)

    def audio(self, pcm: bytes) -> None:
        self._put(pcm)

    def end(self, state: str, reason: Optional[str] = None) -> None:
        self._put(_End(state, reason))


def wyoming_language(espeak_voice: str) -> str:
    """``en-us`` (espeak-ng) as ``en_US`` (the form Piper voices announce)."""
    lang, _, region = espeak_voice.partition("-")
    return f"{lang.lower()}_{region.upper()}" if region else lang.lower()


def info_of(cfg: Config) -> Info:
    """The ``info`` answer: one TTS program with every provisioned voice, streaming supported."""
    attribution = Attribution(name="jetvox", url=SUPPORT_URL)
    voices = [
        TtsVoice(name=name, description=f"{name} (jetvox{', distilled' if student else ''})",
                 attribution=attribution, installed=True, version=None, languages=[wyoming_language(espeak)])
        for name, espeak, student in provisioned_voices(cfg)
    ]
    program = TtsProgram(name="jetvox", description="jetvox streaming text-to-speech", attribution=attribution,
                         installed=True, version=__version__, voices=voices, supports_synthesize_streaming=True)
    return Info(tts=[program])


class _Connection(AsyncEventHandler):
    """One client: answers ``describe``, turns ``synthesize`` and streamed text into jobs, streams their audio."""

    def __init__(self, server: "WyomingServer", reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        super().__init__(reader, writer)
        self._server = server
        self._cfg = server.cfg
        self._peer = str(writer.get_extra_info("peername"))
        self._streaming = False
        self._stream_voice: Optional[str] = None
        self._stream_ssml = False
        self._sbd = SentenceBoundaryDetector()
        self._ssml_text: list[str] = []
        self._streamed: list[str] = []
        self._last_stream = ""
        self._outbox: asyncio.Queue[Optional[Job]] = asyncio.Queue()
        self._writer_task: Optional[asyncio.Task[None]] = None
        self._jobs: list[Job] = []

    async def handle_event(self, event: Event) -> bool:
        try:
            return await self._handle(event)
        except RequestError as exc:
            log.warning("Wyoming client %s: %s", self._peer, exc)
            await self.write_event(Error(text=str(exc), code=exc.code).event())
            return True

    async def _handle(self, event: Event) -> bool:
        if Describe.is_type(event.type):
            await self.write_event(info_of(self._cfg).event())
            return True
        if Synthesize.is_type(event.type):
            request = Synthesize.from_event(event)
            # Home Assistant sends the whole text as `synthesize` beside a stream, for servers that cannot stream
            if self._streaming or (self._last_stream and request.text.strip() == self._last_stream):
                log.debug("Wyoming client %s: the stream's compatibility copy ignored", self._peer)
                return True
            self._ensure_writer()
            await self._submit(self._job(request.text, self._voice(request.voice),
                                         _is_ssml(request.text_format, request.text)))
            return True
        if SynthesizeStart.is_type(event.type):
            start = SynthesizeStart.from_event(event)
            self._streaming = True
            self._stream_voice = self._voice(start.voice)
            self._stream_ssml = _is_ssml(start.text_format, "")
            self._sbd = SentenceBoundaryDetector()
            self._ssml_text, self._streamed = [], []
            self._ensure_writer()
            return True
        if SynthesizeChunk.is_type(event.type):
            if not self._streaming:
                raise RequestError("synthesize-chunk without synthesize-start", "no-stream")
            text = SynthesizeChunk.from_event(event).text
            self._streamed.append(text)
            if self._stream_ssml:  # SSML is spoken whole at synthesize-stop: a sentence splitter cannot cut XML
                self._ssml_text.append(text)
            else:
                for sentence in self._sbd.add_chunk(text):
                    await self._submit(self._job(sentence, self._stream_voice, False))
            return True
        if SynthesizeStop.is_type(event.type):
            if not self._streaming:
                raise RequestError("synthesize-stop without synthesize-start", "no-stream")
            rest = "".join(self._ssml_text) if self._stream_ssml else self._sbd.finish()
            self._streaming = False
            self._last_stream = "".join(self._streamed).strip()
            if rest.strip():
                await self._submit(self._job(rest, self._stream_voice, self._stream_ssml))
            await self._outbox.put(None)  # then synthesize-stopped
            return True
        log.debug("Wyoming client %s: ignoring event %s", self._peer, event.type)
        return True

    def _voice(self, voice: Any) -> Optional[str]:
        """The requested voice's name (None: the configured one); RequestError if it is not provisioned."""
        name = getattr(voice, "name", None) if voice is not None else None
        if name is None:
            return None
        if not VOICE_NAME.match(name):
            raise RequestError(f"voice: expected a voice name, got {name[:60]!r}", "unknown-voice")
        problem = provisioned(self._cfg, name)
        if problem is not None:
            raise RequestError(f"voice: {problem}", "unknown-voice")
        return name

    def _job(self, text: str, voice: Optional[str], is_ssml: bool) -> Job:
        problem = text_problem(text, self._cfg.synthesis.max_text_chars)
        if problem is not None:
            raise RequestError(problem[1], problem[0])
        document = None
        if is_ssml:  # parsed now, so a bad document is this request's error
            try:
                document = ssml.parse(text)
            except ssml.SsmlError as exc:
                raise RequestError(str(exc), "bad-ssml") from None
            for name in document.voices:
                self._voice(_Named(name))
        return Job(id=new_id("wyoming-"), text=text, priority=self._cfg.wyoming.priority, output="wyoming",
                   voice=voice, ssml=is_ssml, document=document, source="wyoming",
                   sink=LoopSink(asyncio.get_running_loop()))

    def _ensure_writer(self) -> None:
        if self._writer_task is None or self._writer_task.done():
            self._writer_task = asyncio.create_task(self._write_jobs(), name=f"wyoming writer {self._peer}")

    async def _submit(self, job: Job) -> None:
        """Queue ``job`` at once (the worker may start it while earlier ones of this client are still streamed)."""
        if not self._server.submit(job):
            raise RequestError("the server is stopping", "stopping")
        self._jobs.append(job)
        await self._outbox.put(job)

    async def _write_jobs(self) -> None:
        """Stream each queued job's audio in order; ``None`` ends a text stream."""
        while True:
            job = await self._outbox.get()
            if job is None:
                await self.write_event(SynthesizeStopped().event())
                continue
            try:
                await self._stream(job)
            finally:
                self._jobs.remove(job)

    async def _stream(self, job: Job) -> None:
        rate = 0
        while True:
            item = await job.sink.events.get()
            if isinstance(item, int):
                rate = item
                await self.write_event(AudioStart(rate=rate, width=_WIDTH, channels=_CHANNELS).event())
            elif isinstance(item, bytes):
                await self.write_event(AudioChunk(rate=rate, width=_WIDTH, channels=_CHANNELS, audio=item).event())
            else:
                if rate:
                    await self.write_event(AudioStop().event())
                if item.state != "done":
                    log.warning("Wyoming request %s from %s: %s", job.id, self._peer, item.reason or item.state)
                    await self.write_event(Error(text=item.reason or item.state, code=item.state).event())
                return

    async def disconnect(self) -> None:
        """The client left: its waiting jobs are withdrawn, the one being spoken is cut off."""
        for job in list(self._jobs):
            if not self._server.queue.drop_transient(job):
                job.cancel_reason = "the Wyoming client disconnected"
                job.cancel.set()
        if self._writer_task is not None:
            self._writer_task.cancel()


@dataclass(frozen=True)
class _Named:
    name: str


def _is_ssml(text_format: Any, text: str) -> bool:
    value = getattr(text_format, "value", text_format)
    return value == "ssml" or ssml.is_ssml(text)


class WyomingServer:
    """Serves Wyoming on its own thread and event loop; jobs go to the daemon's queue."""

    def __init__(self, cfg: Config, queue: WorkQueue, device_id: str) -> None:
        """Prepare (``start`` binds the socket).

        Args:
            cfg: the ``wyoming`` section, limits and the state dir (provisioned voices).
            queue: the daemon's work queue (its worker speaks the jobs).
            device_id: names the zeroconf service.
        """
        self.cfg = cfg
        self.queue = queue
        self._device_id = device_id
        self._loop = asyncio.new_event_loop()
        self._server: Optional[AsyncServer] = None
        self._thread = threading.Thread(target=self._loop.run_forever, name="jetvox-wyoming", daemon=True)
        self._zeroconf: Any = None
        self.port: Optional[int] = None
        """The bound TCP port (a configured port 0 picks a free one)."""

    def submit(self, job: Job) -> bool:
        return self.queue.put_transient(job)

    def start(self) -> None:
        """Bind and serve; OSError (e.g. the port is taken) names the URI."""
        uri = self.cfg.wyoming.uri
        kind, host, port = wyoming_address(uri)
        server = AsyncServer.from_uri(uri)
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(server.start(lambda r, w: _Connection(self, r, w)), self._loop)
        try:
            future.result(timeout=10)
        except OSError as exc:
            self._loop.call_soon_threadsafe(self._loop.stop)
            raise OSError(exc.errno, f"wyoming.uri {uri}: {exc.strerror or exc}") from None
        self._server = server
        if isinstance(server, AsyncTcpServer):
            bound = getattr(server, "_server", None)
            sockets = getattr(bound, "sockets", None) or []
            self.port = sockets[0].getsockname()[1] if sockets else port
        log.info("Wyoming server listening on %s%s", uri, f" (port {self.port})" if kind == "tcp" and port == 0 else "")
        if kind == "tcp" and self.cfg.wyoming.zeroconf:
            self._register_zeroconf(host)

    def _register_zeroconf(self, host: str) -> None:
        """Announce ``_wyoming._tcp`` over mDNS (Home Assistant discovers the server); a failure is logged only."""
        try:
            name = self.cfg.wyoming.zeroconf_name or f"jetvox-{self._device_id}"
            addresses = [socket.inet_aton(host)] if host not in ("0.0.0.0", "") else None
            info = ServiceInfo("_wyoming._tcp.local.", f"{name}._wyoming._tcp.local.", port=self.port,
                               addresses=addresses, parsed_addresses=None if addresses else _local_addresses(),
                               properties={"version": __version__})
            zc = Zeroconf()
            zc.register_service(info)
            self._zeroconf = (zc, info)
            log.info("zeroconf: announced %s._wyoming._tcp.local. on port %s", name, self.port)
        except Exception as exc:  # mDNS is a convenience: the server works without it
            log.warning("zeroconf announcement failed (%s: %s); add the Wyoming integration by host and port",
                        type(exc).__name__, exc)

    def stop(self) -> None:
        if self._zeroconf is not None:
            zc, info = self._zeroconf
            try:
                zc.unregister_service(info)
                zc.close()
            except Exception as exc:
                log.debug("zeroconf: %s", exc)
            self._zeroconf = None
        if self._server is not None and self._thread.is_alive():
            future = asyncio.run_coroutine_threadsafe(self._server.stop(), self._loop)
            try:
                future.result(timeout=3)
            except Exception as exc:
                log.debug("stopping the Wyoming server: %s", exc)
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(3)


def _local_addresses() -> list[str]:
    """This host's IPv4 addresses other than loopback (for an mDNS record of a server bound to 0.0.0.0)."""
    try:
        found = [ip.ip for adapter in ifaddr.get_adapters() for ip in adapter.ips
                 if isinstance(ip.ip, str) and not ip.ip.startswith("127.")]
    except Exception:
        found = []
    return found or ["127.0.0.1"]
