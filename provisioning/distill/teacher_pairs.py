"""Vocoder training pairs made on the training device: the acoustic student's latents and the teacher's audio of them."""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import logging
import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from jetvox.device.config import default_state_dir
from jetvox.device.synthesis.feeds import acoustic_feeds
from jetvox.engines.onnxrt import ort_session
from jetvox.provisioning.distill import teacher_data
from jetvox.provisioning.distill.models import HOP, LATENT, StudentAcoustic

log = logging.getLogger(__name__)

PACK_VERSION = 1
PAIRS_VERSION = 1
"""Bumped when ``make_pairs`` computes its pairs differently: kept pairs of another version are made afresh."""

Pairs = tuple[list[torch.Tensor], list[torch.Tensor]]
"""Per utterance, a latent [192, T] and the teacher's audio of it [T * 256] (``make_pairs``)."""


@dataclass(frozen=True)
class Utterances:
    """Phoneme ids and the teacher's durations of the cached utterances: all a pair needs (megabytes, not the
    cache's gigabytes), so the pairs can be made wherever the training runs."""

    ids: list[np.ndarray]
    """Phoneme ids per utterance, int64 [P]."""
    durations: list[np.ndarray]
    """The teacher's frames per phoneme id (noise_w 0), float32 [P]."""

    def digest(self) -> str:
        """A short sha256 of the ids and durations (recorded in the run's config)."""
        h = hashlib.sha256()
        for ids, dur in zip(self.ids, self.durations):
            h.update(ids.astype(np.int64).tobytes())
            h.update(dur.astype(np.float32).tobytes())
        return h.hexdigest()[:16]


def from_cache(paths: Sequence[Path]) -> Utterances:
    """The utterances of cached teacher items whose durations cover their latents (``aligned.eligible``'s rule
    without the audio: the pairs' audio is made afresh)."""
    ids, durations = [], []
    for path in paths:
        item = teacher_data.load_item(path)
        if item.durations_cover_z0:
            ids.append(item.ids.astype(np.int64))
            durations.append(item.durations.astype(np.float32))
    if not ids:
        raise ValueError("no cached utterance has durations that sum to its latent length; rebuild the teacher cache")
    return Utterances(ids, durations)


def from_teacher(state_dir: Path, corpora: Sequence[list[str]], first: int | None = None,
                 threads: int = 1) -> Utterances:
    """The utterances ``from_cache`` would pack from the caches of ``corpora`` (in order; ``first``: only the first N
    the caches would hold), their durations from the teacher's acoustic model run here: no cache needed.

    Args:
        state_dir: jetvox state dir holding the provisioned teacher.
        corpora: each corpus' sentences (``teacher_data.corpus_sentences``), in the order to pack them.
        first: only the first N utterances (before the durations check, as ``--first`` counts cached ones).
        threads: ONNX Runtime intra-op threads.
    """
    ids, durations = [], []
    timed = itertools.chain.from_iterable(teacher_data.timings(state_dir, s, threads) for s in corpora)  # lazily
    for _key, i, dur, frames in itertools.islice(timed, first):
        if int(dur.sum()) == frames:
            ids.append(i)
            durations.append(dur)
    if not ids:
        raise ValueError("no utterance's durations sum to its latent length")
    return Utterances(ids, durations)


def save(utts: Utterances, path: Path, request: str = "") -> Path:
    """Write ``utts`` as one compressed npz (atomically, with ``os.replace``), with the ``request`` that made it."""
    lengths = np.array([len(i) for i in utts.ids], dtype=np.int64)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp-{path.name}")
    with tmp.open("wb") as f:
        np.savez_compressed(f, version=np.int64(PACK_VERSION), lengths=lengths, request=np.array(request),
                            ids=np.concatenate(utts.ids).astype(np.int16), durations=np.concatenate(utts.durations))
    os.replace(tmp, path)
    return path


def made_by(path: Path) -> str | None:
    """The request a pack at ``path`` was made by (``save``'s), or None where there is none or no pack."""
    try:
        with np.load(path) as f:
            return str(f["request"]) if "request" in f else None
    except (OSError, ValueError):
        return None


def load(path: Path) -> Utterances:
    """The utterances of a file written by ``save``."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"utterance pack {path} not found (make it with "
                                "`python -m jetvox.provisioning.distill.teacher_pairs --out FILE`)")
    with np.load(path) as f:
        if "version" not in f or int(f["version"]) != PACK_VERSION:
            raise ValueError(f"{path}: expected an utterance pack of version {PACK_VERSION}")
        cuts = np.cumsum(f["lengths"])[:-1]
        ids = [a.astype(np.int64) for a in np.split(f["ids"], cuts)]
        durations = [a.astype(np.float32) for a in np.split(f["durations"], cuts)]
    return Utterances(ids, durations)


class PairData:
    """Random segments of the pairs, drawn as ``train.VocoderData`` draws them (length-weighted, ``context`` latent
    frames either side, zeros past an utterance's ends), as tensors on the pairs' device.

    Every utterance is kept in one long tensor with ``context`` zero frames between neighbours, so a batch is one
    gather on the device rather than a copy per segment.
    """

    def __init__(self, latents: list[torch.Tensor], audio: list[torch.Tensor], batch: int, segment: int,
                 context: int, rng: np.random.Generator) -> None:
        keep = [n for n, z in enumerate(latents) if z.shape[1] >= segment]
        if not keep:
            raise ValueError(f"no utterance has {segment} frames or more")
        device = latents[0].device
        gap = torch.zeros(LATENT, context, dtype=latents[0].dtype, device=device)
        parts, wavs, starts, at = [gap], [], [], context
        for n in keep:
            parts += [latents[n], gap]
            wavs.append(audio[n])
            starts.append(at)
            at += latents[n].shape[1] + context
        self.z = torch.cat(parts, 1)
        """Every latent, [192, frames], with the gaps."""
        self.wav = torch.cat(wavs)
        """Every utterance's audio, one after another (no gaps)."""
        self.lengths = np.array([latents[n].shape[1] for n in keep], dtype=np.int64)
        self.starts = np.array(starts, dtype=np.int64)
        self.wav_starts = np.concatenate([[0], np.cumsum(self.lengths[:-1]) * HOP])
        self.p = self.lengths / self.lengths.sum()
        self.batch_size, self.segment, self.context, self.rng = batch, segment, context, rng
        span = torch.arange(segment + 2 * context, device=device)
        self.span, self.samples = span, torch.arange(segment * HOP, device=device)

    def batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Latents [B, 192, segment + 2 * context] and the teacher's audio of the centre [B, segment * 256]."""
        picks = self.rng.choice(len(self.lengths), size=self.batch_size, p=self.p)
        offsets = self.rng.integers(0, self.lengths[picks] - self.segment + 1)
        first = torch.from_numpy(self.starts[picks] + offsets - self.context).to(self.z.device)
        z = self.z[:, first[:, None] + self.span[None, :]]  # [192, B, L]
        wav_first = torch.from_numpy(self.wav_starts[picks] + offsets * HOP).to(self.z.device)
        wav = self.wav[wav_first[:, None] + self.samples[None, :]]
        return z.permute(1, 0, 2).float(), wav.float()


class OnnxAcoustic:
    """An exported acoustic model (the teacher's interface) as the source of the pairs' latents: its own latent of
    each utterance's ids, its own durations, compensation and sharpening included, exactly as the vocoder gets it in
    use (the teacher's durations in the pack go unused)."""

    SCALES = (0.667, 1.0, 0.8)
    """The voice's default scales, as the daemon passes them (a deterministic student reads length_scale only)."""

    def __init__(self, path: Path, threads: int = 0) -> None:
        self.path = Path(path)
        self._session = ort_session(self.path, threads=threads)

    def latent(self, ids: np.ndarray) -> np.ndarray:
        """z [1, 192, T] for one utterance's ids."""
        return np.asarray(self._session.run(["z"], acoustic_feeds(ids.tolist(), self.SCALES))[0], dtype=np.float32)


@torch.no_grad()
def _latent(acoustic: StudentAcoustic | OnnxAcoustic, ids: np.ndarray, dur: np.ndarray,
            device: torch.device) -> torch.Tensor:
    """One utterance's latent [1, 192, T]: an ONNX model's own, or a checkpoint's teacher-forced on ``dur``."""
    if isinstance(acoustic, OnnxAcoustic):
        return torch.from_numpy(acoustic.latent(ids)).to(device)
    i = torch.from_numpy(ids)[None].to(device)
    d = torch.from_numpy(dur)[None].to(device)
    z, _ = acoustic.forward_train(i, torch.ones(1, 1, i.shape[1], device=device), d, int(dur.sum()))
    return z


@torch.no_grad()
def make_pairs(utts: Utterances, acoustic: StudentAcoustic | OnnxAcoustic, teacher: torch.nn.Module,
               device: torch.device, dtype: torch.dtype = torch.float16,
               variance: tuple[np.ndarray, np.ndarray] | None = None) -> Pairs:
    """Per utterance, the acoustic student's latent [192, T] and the teacher decoder's audio of exactly that latent
    [T * 256], stored as ``dtype`` on ``device``.

    The vocoder then learns a function: its target is what the teacher's vocoder makes of the very input it is
    given, the latents it is given in use (the cache's pairs give the teacher's audio of the teacher's own latents,
    which the student's latents only approximate). A checkpoint's latents are teacher-forced on the pack's
    durations; an ``OnnxAcoustic``'s are its own. Each utterance is vocoded whole, as in use. ``variance``, a
    global-variance compensation ``(scale, shift)`` per channel (``variance.read``), is applied to each latent
    first, as the shipped acoustic model applies it.
    """
    from tqdm import tqdm

    teacher = teacher.to(device).eval()
    if isinstance(acoustic, StudentAcoustic):
        acoustic = acoustic.to(device).eval()
    if variance is not None and any(v.shape != (LATENT,) for v in variance):
        raise ValueError(f"a compensation of {LATENT} channels expected; got scale {variance[0].shape}, "
                         f"shift {variance[1].shape}")
    comp = [torch.from_numpy(v).to(device)[None, :, None] for v in variance] if variance is not None else None
    latents, audio = [], []
    for ids, dur in tqdm(list(zip(utts.ids, utts.durations)), desc="student latents, teacher audio", mininterval=5):
        z = _latent(acoustic, ids, dur, device)
        if comp is not None:
            z = z * comp[0] + comp[1]
        wav = teacher(z).reshape(-1)
        if wav.shape[0] != z.shape[2] * HOP:
            raise ValueError(f"the teacher's decoder made {wav.shape[0]} samples of {z.shape[2]} frames; expected "
                             f"{z.shape[2] * HOP}")
        latents.append(z[0].to(dtype))
        audio.append(wav.to(dtype))
    log.info("pairs for %d utterances (%.2f h of audio) on %s", len(latents),
             sum(a.shape[0] for a in audio) / 22050 / 3600, device)
    return latents, audio


def pairs_key(digests: dict[str, str], dtype: torch.dtype, device: torch.device) -> str:
    """What identifies a run's pairs: the digests of pack, acoustic student and teacher, the dtype and device type
    they are made in, torch's version and ``PAIRS_VERSION`` (a short sha256)."""
    what = {**digests, "dtype": str(dtype), "device": device.type, "torch": torch.__version__,
            "version": PAIRS_VERSION}
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:16]


def kept_pairs(pack: Path, key: str, make: Callable[[], Pairs], device: torch.device) -> Pairs:
    """The pairs of ``key``: read from beside ``pack`` where an earlier run kept them, else ``make()`` and kept there
    (atomically; the pack's pairs of any other key are removed, so one pack keeps one set).

    Making them takes half an hour on a 2-core CPU for 5,000 utterances; kept, they take about a gigabyte of disk
    and seconds to read, so a resumed stage on the same machine starts stepping at once.
    """
    pack = Path(pack)
    path = pack.with_name(f"{pack.stem}.pairs-{key}.pt")
    if path.is_file():
        try:
            kept = torch.load(path, map_location=device, weights_only=True)
        except (OSError, RuntimeError, EOFError, pickle.UnpicklingError) as exc:
            log.warning("kept pairs %s unreadable (%s); making them again", path, exc)
        else:
            if isinstance(kept, dict) and kept.get("key") == key:
                log.info("pairs kept in %s (%d utterances) read", path, len(kept["latents"]))
                return kept["latents"], kept["audio"]
            log.warning("kept pairs %s are not of key %s; making them again", path, key)
    latents, audio = make()
    tmp = path.with_name(f".tmp-{path.name}")
    torch.save({"key": key, "latents": [z.cpu() for z in latents], "audio": [a.cpu() for a in audio]}, tmp)
    os.replace(tmp, path)
    for other in pack.parent.glob(f"{pack.stem}.pairs-*.pt"):
        if other != path:
            other.unlink()
    log.info("pairs kept in %s (%.2f GB) for the next run of this pack", path, path.stat().st_size / 1e9)
    return latents, audio


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", type=Path, required=True, help="utterance pack to write (.npz)")
    source = ap.add_mutually_exclusive_group()
    source.add_argument("--cache", type=Path, action="append", default=None,
                        help="teacher-data cache; repeat for several (default: the main one under the state dir)")
    source.add_argument("--corpus", choices=teacher_data.CORPORA, action="append", default=None,
                        help="no cache: the corpus' durations from the teacher's acoustic model, run now (minutes, "
                             "where its cache takes an hour); repeat for several, in order; the same pack as --cache")
    ap.add_argument("--first", type=int, default=None, metavar="N",
                    help="only the first N cached utterances (a smaller pack for a CPU; default: all)")
    ap.add_argument("--state-dir", type=Path, default=None, help="jetvox state dir (default: the configured one)")
    ap.add_argument("--threads", type=int, default=1, help="ONNX Runtime threads for --corpus (default 1)")
    args = ap.parse_args(argv)
    if args.first is not None and args.first < 1:
        ap.error(f"--first is a positive number of utterances; got {args.first}")
    if args.threads < 1:
        ap.error(f"--threads is a positive number; got {args.threads}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    state = args.state_dir or default_state_dir()
    request = f"corpus {' + '.join(args.corpus)}, first {args.first}" if args.corpus else ""
    if request and made_by(args.out) == request:
        log.info("%s is the pack of %s already; kept", args.out, request)
        return
    try:
        if args.corpus:
            corpora = [teacher_data.corpus_sentences(name) for name in args.corpus]
            utts = from_teacher(state, corpora, args.first, args.threads)
            origin = f"the teacher's durations of {' + '.join(args.corpus)}"
        else:
            caches = args.cache or [teacher_data.cache_dir(state)]
            cached = [p for c in caches for p in teacher_data.cached_paths(c)]
            utts = from_cache(cached[:args.first])
            origin = f"{len(cached)} cached utterances"
    except (FileNotFoundError, ValueError) as exc:
        raise SystemExit(f"teacher_pairs: {exc}") from None
    save(utts, args.out, request)
    log.info("%d utterances (of %s) written to %s (%.1f MB, digest %s)", len(utts.ids), origin, args.out,
             args.out.stat().st_size / 1e6, utts.digest())


if __name__ == "__main__":
    main()
