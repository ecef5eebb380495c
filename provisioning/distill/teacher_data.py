"""Run the teacher (split acoustic model and vocoder) over the corpus and cache ids, durations, latents and audio."""

from __future__ import annotations

import argparse
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from jetvox.device.config import default_state_dir
from jetvox.device.synthesis.feeds import acoustic_feeds
from jetvox.device.text.normalize import prepare
from jetvox.device.text.phonemes import Phonemizer
from jetvox.device.voice import manifest as mf
from jetvox.device.voice.sources import PACKAGED_VOICE
from jetvox.engines.onnxrt import ort_session
from jetvox.provisioning.distill.corpus import DEFAULT_SIZE, SEED, generate
from jetvox.provisioning.distill.wide_corpus import WIDE_SEED, WIDE_SIZE, generate_wide

log = logging.getLogger(__name__)

TEACHER = PACKAGED_VOICE
CACHE_VERSION = 1
NOISE_SCALE, NOISE_W = 0.667, 0.8  # the teacher's default inference noise
DET_SCALES = (0.0, 1.0, 0.0)
NOISY_SCALES = (NOISE_SCALE, 1.0, NOISE_W)


@dataclass(frozen=True)
class Item:
    """One cached teacher utterance."""

    ids: np.ndarray
    """Phoneme ids, int64 [P]."""
    durations: np.ndarray
    """Frames per phoneme id at noise_w 0, float32 [P]."""
    z0: np.ndarray
    """Latent frames at noise_scale 0, float32 [192, T0] (T0 = sum of durations)."""
    zn: np.ndarray
    """Latent frames at the default noise scales, float32 [192, Tn]."""
    wav: np.ndarray
    """The teacher vocoder's waveform of ``z0`` or ``zn`` (see ``wav_from``), float32 [256 * T]."""
    wav_from: str
    """``z0`` or ``zn``: which latent ``wav`` was vocoded from."""

    @property
    def durations_cover_z0(self) -> bool:
        """Whether the durations add up to the noise-0 latent's frames (so it lines up with them, phoneme by phoneme)."""
        return int(self.durations.sum()) == self.z0.shape[1]

    @property
    def wav_z(self) -> np.ndarray:
        return self.z0 if self.wav_from == "z0" else self.zn


def teacher_dir(state_dir: Path) -> Path:
    """Where `jetvox provision` puts the teacher's split models."""
    return Path(state_dir) / "voices" / TEACHER


def cache_dir(state_dir: Path) -> Path:
    """The teacher-data cache under the state dir."""
    return Path(state_dir) / "distill" / f"teacher-v{CACHE_VERSION}"


def wide_cache_dir(state_dir: Path) -> Path:
    """The cache of the wide-vocabulary sentences (``wide_corpus.py``), beside the main one."""
    return Path(state_dir) / "distill" / f"teacher-v{CACHE_VERSION}-wide"


MAIN, WIDE = "main", "wide"
CORPORA = (MAIN, WIDE)


def corpus_sentences(name: str, size: int | None = None) -> list[str]:
    """The sentences of the ``main`` corpus (``corpus.py``) or the ``wide`` one (``wide_corpus.py``), as cached."""
    if name == WIDE:
        return generate_wide(size or WIDE_SIZE, WIDE_SEED, exclude=generate(DEFAULT_SIZE, SEED))
    if name == MAIN:
        return generate(size or DEFAULT_SIZE, SEED)
    raise ValueError(f"expected a corpus named one of {', '.join(CORPORA)}; got {name!r}")


def _session(path: Path, threads: int):  # type: ignore[no-untyped-def]

    if not path.is_file():
        raise FileNotFoundError(f"teacher model {path} not found; run `jetvox provision` for {TEACHER} first")
    return ort_session(path, threads=threads)


def _phonemizer_and_acoustic(state_dir: Path, threads: int):  # type: ignore[no-untyped-def]
    """The provisioned teacher's phonemizer and acoustic model session."""
    tdir = teacher_dir(state_dir)
    manifest = mf.read_manifest(tdir)
    return Phonemizer(manifest.espeak_voice, manifest.phoneme_id_map), _session(tdir / "acoustic.onnx", threads)


def utterances(sentences: list[str]) -> Iterator[tuple[str, str]]:
    """(key, normalised text) per speakable piece of each corpus sentence, as the daemon would split it."""
    for n, sentence in enumerate(sentences):
        for k, piece in enumerate(prepare(sentence)):
            yield f"{n:05d}-{k}", piece


def build_cache(
    state_dir: Path, sentences: list[str], out: Path, shard: int = 0, shards: int = 1, threads: int = 1,
    limit: int | None = None,
) -> int:
    """Run the teacher over this shard of ``sentences``; returns how many items were written (existing ones are kept).

    Args:
        state_dir: jetvox state dir holding the provisioned teacher.
        sentences: the training corpus.
        out: cache directory (one ``.npz`` per utterance).
        shard: which shard this process handles (0-based).
        shards: total shards (run one process per shard to use several cores).
        threads: ONNX Runtime intra-op threads.
        limit: only the first ``limit`` utterances (all shards together); None for all.
    """
    from tqdm import tqdm

    phon, acoustic = _phonemizer_and_acoustic(state_dir, threads)
    vocoder = _session(teacher_dir(state_dir) / "vocoder.onnx", threads)
    out.mkdir(parents=True, exist_ok=True)
    (out / "teacher.json").write_text(json.dumps({"teacher": TEACHER, "version": CACHE_VERSION}), encoding="utf-8")
    todo = [(k, t) for i, (k, t) in enumerate(utterances(sentences)) if i % shards == shard and (limit is None or i < limit)]
    written = 0
    for n, (key, text) in enumerate(tqdm(todo, desc=f"teacher shard {shard}/{shards}", mininterval=5)):
        path = out / f"{key}.npz"
        if path.exists():
            continue
        ids = phon.sentence_ids(text)
        if not ids:
            continue
        z0, dur = acoustic.run(["z", "durations"], acoustic_feeds(ids, DET_SCALES))
        (zn,) = acoustic.run(["z"], acoustic_feeds(ids, NOISY_SCALES))
        wav_from = "z0" if n % 2 == 0 else "zn"
        (wav,) = vocoder.run(["audio"], {"z": z0 if wav_from == "z0" else zn})
        tmp = out / f".tmp-{key}.npz"
        np.savez(
            tmp,
            ids=np.asarray(ids, dtype=np.int16),
            durations=dur[0].astype(np.float32),
            z0=z0[0].astype(np.float16),
            zn=zn[0].astype(np.float16),
            wav=wav[0].astype(np.float16),
            wav_from=np.array(wav_from),
            text=np.array(text),
        )
        os.replace(tmp, path)
        written += 1
    return written


def timings(state_dir: Path, sentences: list[str], threads: int = 1) -> Iterator[tuple[str, np.ndarray, np.ndarray, int]]:
    """(key, ids, durations, noise-0 latent frames) per utterance the cache would hold, from the teacher's acoustic
    model alone (no latents kept, no audio): what an utterance pack needs, in a small part of the cache's time."""
    from tqdm import tqdm

    phon, acoustic = _phonemizer_and_acoustic(state_dir, threads)
    for key, text in tqdm(sorted(utterances(sentences)), desc="teacher durations", mininterval=5):
        ids = phon.sentence_ids(text)
        if not ids:
            continue
        z0, dur = acoustic.run(["z", "durations"], acoustic_feeds(ids, DET_SCALES))
        yield key, np.asarray(ids, dtype=np.int64), dur[0].astype(np.float32), int(z0.shape[2])


def load_item(path: Path) -> Item:
    """Read one cached utterance."""
    with np.load(path) as f:
        return Item(
            ids=f["ids"].astype(np.int64),
            durations=f["durations"].astype(np.float32),
            z0=f["z0"].astype(np.float32),
            zn=f["zn"].astype(np.float32),
            wav=f["wav"].astype(np.float32),
            wav_from=str(f["wav_from"]),
        )


def cached_paths(cache: Path) -> list[Path]:
    """The cached utterances, sorted by key."""
    paths = sorted(Path(cache).glob("[0-9]*.npz"))
    if not paths:
        raise FileNotFoundError(f"no teacher data in {cache}; run python -m jetvox.provisioning.distill.teacher_data first")
    return paths


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--state-dir", type=Path, default=None, help="jetvox state dir (default: the configured one)")
    ap.add_argument("--size", type=int, default=None,
                    help=f"corpus sentences (default {DEFAULT_SIZE}; {WIDE_SIZE} with --wide)")
    ap.add_argument("--wide", action="store_true",
                    help="the wide-vocabulary sentences (wide_corpus.py) into their own cache instead")
    ap.add_argument("--shard", type=int, default=0)
    ap.add_argument("--shards", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--limit", type=int, default=None, help="only the first N utterances (all shards together)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    state = args.state_dir or default_state_dir()
    sentences = corpus_sentences(WIDE if args.wide else MAIN, args.size)
    out = wide_cache_dir(state) if args.wide else cache_dir(state)
    n = build_cache(state, sentences, out, args.shard, args.shards, args.threads, args.limit)
    log.info("shard %d/%d: wrote %d new items to %s", args.shard, args.shards, n, out)


if __name__ == "__main__":
    main()
