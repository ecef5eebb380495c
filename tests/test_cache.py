"""The on-disk audio cache: round trip, LRU eviction under the size cap, keys, survival across restarts."""

from __future__ import annotations

import os
import time
from pathlib import Path

from jetvox.device.config import SynthesisConfig
from jetvox.device.daemon.cache import (
    AudioCache,
    CachedAudio,
    cache_key,
    voice_identity,
)
from jetvox.device.synthesis.synthesizer import Params


def audio(n_bytes: int, fill: int = 1) -> CachedAudio:
    half = n_bytes // 2
    return CachedAudio(sample_rate=22050, chunks=[bytes([fill]) * half, bytes([fill + 1]) * (n_bytes - half)])


def test_round_trip(tmp_path: Path) -> None:
    cache = AudioCache(tmp_path, 1 << 20)
    assert cache.get("k") is None
    a = audio(1000)
    assert cache.put("k", a)
    assert cache.get("k") == a
    assert (cache.hits, cache.misses) == (1, 1)


def test_lru_eviction(tmp_path: Path) -> None:
    cache = AudioCache(tmp_path, 3500)  # room for three 1000-byte entries with their headers
    for key in "abc":
        assert cache.put(key, audio(1000))
    assert cache.get("a") is not None  # a is now the most recently used
    cache.put("d", audio(1000))
    assert "b" not in cache and all(k in cache for k in "acd")
    assert cache.total_bytes <= 3500
    assert not (tmp_path / "b.jvc").exists()


def test_too_big_is_not_stored(tmp_path: Path) -> None:
    cache = AudioCache(tmp_path, 500)
    assert not cache.put("big", audio(1000))
    assert len(cache) == 0


def test_order_and_entries_survive_a_restart(tmp_path: Path) -> None:
    cache = AudioCache(tmp_path, 3500)
    for i, key in enumerate("abc"):
        cache.put(key, audio(1000))
        os.utime(tmp_path / f"{key}.jvc", (time.time() - 100 + i, time.time() - 100 + i))
    cache.get("a")  # touches the file: most recent
    again = AudioCache(tmp_path, 3500)
    assert len(again) == 3 and again.get("b") == audio(1000)
    again.put("d", audio(1000))
    assert "c" not in again  # c was least recently used after a and b were read


def test_corrupt_entry_is_dropped(tmp_path: Path) -> None:
    cache = AudioCache(tmp_path, 1 << 20)
    cache.put("k", audio(100))
    (tmp_path / "k.jvc").write_bytes(b"garbage")
    assert cache.get("k") is None and "k" not in cache


def test_key_depends_on_text_voice_and_parameters() -> None:
    hashes = {"acoustic": "aa", "vocoder": "bb"}
    voice = voice_identity("v", hashes, 1.5, "fp32")
    params = Params(length_scale=1.0, noise_scale=0.667, noise_w=0.8, volume=1.0)
    syn = SynthesisConfig()
    base = cache_key("Hello", voice, params, syn)
    assert base == cache_key("Hello", voice, params, syn)
    assert base != cache_key("Hello!", voice, params, syn)
    assert base != cache_key("Hello", voice_identity("v", {"acoustic": "cc"}, 1.5, "fp32"), params, syn)
    assert base != cache_key("Hello", voice_identity("v", hashes, 1.5, "int8"), params, syn)
    assert base != cache_key("Hello", voice, Params(1.2, 0.667, 0.8, 1.0), syn)
    assert base != cache_key("Hello", voice, params, SynthesisConfig(sentence_silence_s=0.5))
