"""On-disk LRU cache of synthesised audio, keyed by text, voice (model hashes) and synthesis parameters."""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import struct
from collections import OrderedDict
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Mapping, Optional

from jetvox.device.text import FRONTEND_VERSION

log = logging.getLogger(__name__)

_MAGIC = b"JVC1"
_SUFFIX = ".jvc"


@functools.cache
def _version() -> str:
    """jetvox's installed version, read once (not once per message)."""
    try:
        return metadata.version("jetvox")
    except metadata.PackageNotFoundError:  # pragma: no cover - run from a source tree
        return "0"


def cache_key(text: str, voice: dict[str, Any], params: Any, synthesis: Any) -> str:
    """The key of one utterance.

    Args:
        text: the text as received.
        voice: identity of the voice: its name, precision and model hashes (see ``voice_identity``).
        params: the synthesis Params dataclass of the request.
        synthesis: the SynthesisConfig (chunking and silence change the audio).
    """
    blob = json.dumps(
        {"text": text, "voice": voice, "params": asdict(params), "synthesis": asdict(synthesis), "jetvox": _version(),
         "frontend": FRONTEND_VERSION},
        sort_keys=True, ensure_ascii=False, default=str,
    )
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def voice_identity(name: str, model_hashes: Mapping[str, str], gain: float, precision: str) -> dict[str, Any]:
    """What identifies a provisioned voice's output: name, precision, gain and every model's hash."""
    return {"name": name, "precision": precision, "models": dict(model_hashes), "gain": gain}


@dataclass(frozen=True)
class CachedAudio:
    """A cached utterance."""

    sample_rate: int
    """Samples per second."""
    chunks: list[bytes]
    """s16le PCM chunks, as first produced."""

    @property
    def nbytes(self) -> int:
        return sum(len(c) for c in self.chunks)


class AudioCache:
    """Least-recently-used files under ``directory``, at most ``max_bytes`` together; used by one thread."""

    def __init__(self, directory: Path, max_bytes: int) -> None:
        """Open the cache, indexing what an earlier run left (oldest access first).

        Args:
            directory: where entries live (created).
            max_bytes: size cap; 0 disables storing.
        """
        self._dir = directory
        self._max = max_bytes
        self._entries: OrderedDict[str, int] = OrderedDict()
        self._total = 0
        self.hits = 0
        self.misses = 0
        directory.mkdir(parents=True, exist_ok=True)
        found = []
        for path in directory.glob("*" + _SUFFIX):
            try:
                st = path.stat()
            except OSError:
                continue
            found.append((st.st_mtime, path.stem, st.st_size))
        for tmp in directory.glob("*.tmp"):
            tmp.unlink(missing_ok=True)
        for _, key, size in sorted(found):
            self._entries[key] = size
            self._total += size
        self._evict()
        log.debug("audio cache %s: %d entries, %d bytes", directory, len(self._entries), self.total_bytes)

    @property
    def total_bytes(self) -> int:
        return self._total

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def _path(self, key: str) -> Path:
        return self._dir / (key + _SUFFIX)

    def get(self, key: str) -> Optional[CachedAudio]:
        """The cached audio for ``key`` (now the most recently used), or None."""
        if key not in self._entries:
            self.misses += 1
            return None
        path = self._path(key)
        try:
            data = path.read_bytes()
            if data[:4] != _MAGIC:
                raise ValueError("bad magic")
            (hlen,) = struct.unpack("<I", data[4:8])
            header = json.loads(data[8 : 8 + hlen])
            pcm = memoryview(data)[8 + hlen :]
            chunks, pos = [], 0
            for n in header["chunks"]:
                chunks.append(bytes(pcm[pos : pos + n]))
                pos += n
            if pos != len(pcm):
                raise ValueError("length mismatch")
            os.utime(path)  # the LRU order survives a restart
        except (OSError, ValueError, KeyError, struct.error) as exc:
            log.warning("dropping unreadable cache entry %s (%s)", path.name, exc)
            self._remove(key)
            self.misses += 1
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return CachedAudio(sample_rate=int(header["sample_rate"]), chunks=chunks)

    def put(self, key: str, audio: CachedAudio) -> bool:
        """Store ``audio`` (atomically), evicting the least recently used entries; False if it is too big."""
        header = json.dumps({"sample_rate": audio.sample_rate, "chunks": [len(c) for c in audio.chunks]}).encode()
        blob = _MAGIC + struct.pack("<I", len(header)) + header + b"".join(audio.chunks)
        if self._max <= 0 or len(blob) > self._max:
            return False
        path = self._path(key)
        tmp = path.with_name(path.name + ".tmp")
        try:
            tmp.write_bytes(blob)
            os.replace(tmp, path)
        except OSError as exc:
            log.warning("cannot write cache entry %s: %s", path.name, exc)
            tmp.unlink(missing_ok=True)
            return False
        self._total += len(blob) - self._entries.get(key, 0)
        self._entries[key] = len(blob)
        self._entries.move_to_end(key)
        self._evict()
        return True

    def _evict(self) -> None:
        while self._entries and self.total_bytes > self._max:
            key = next(iter(self._entries))
            log.debug("evicting cache entry %s", key)
            self._remove(key)

    def _remove(self, key: str) -> None:
        self._total -= self._entries.pop(key, 0)
        self._path(key).unlink(missing_ok=True)
