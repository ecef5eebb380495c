"""Hybrid acoustic student: the teacher's own text encoder (its prior means) in front of the student's decoder."""

from __future__ import annotations

import argparse
import json
import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from onnx import compose, helper, numpy_helper, version_converter
from torch import nn

from jetvox.device.config import default_state_dir
from jetvox.device.storage import atomic_path
from jetvox.device.synthesis.feeds import acoustic_feeds
from jetvox.device.voice import manifest as mf
from jetvox.device.text.phonemes import Phonemizer
from jetvox.engines.onnxrt import ort_session
from jetvox.provisioning.distill import teacher_data, teacher_pairs, variance
from jetvox.provisioning.distill.aligned import load_acoustic
from jetvox.provisioning.distill.export import OPSET, compact, fix_io
from jetvox.provisioning.distill.train import stop_on_signal
from jetvox.provisioning.distill.interface import InterfaceError, check_interface
from jetvox.provisioning.distill.models import (LATENT, StudentAcoustic, acoustic_config,
                                               predicted_durations)

log = logging.getLogger(__name__)

MP = "m_p"
"""The text encoder's output as this module names it: the teacher's prior mean per phoneme, [1, 192, P]."""
ENCODER_INPUTS = ("input", "input_lengths")
DATA_VERSION = 1
SHARP_NAME = "sharpen.amount"
SHARP_IN, SHARP_AVG = "z__unsharp", "z__avg"


def prior_mean(model: onnx.ModelProto) -> str:
    """The name of the teacher's prior mean: the first output of the first two-way ``Split`` (in graph order) that
    no path from ``scales`` reaches (VITS splits its text encoder's projection into means and log-scales; every later
    Split, in the duration predictor and the flow, depends on the noise scales)."""
    noisy = {"scales"}
    for node in model.graph.node:
        if any(i in noisy for i in node.input):
            noisy.update(node.output)
            continue
        if node.op_type == "Split" and len(node.output) == 2:
            return node.output[0]
    raise InterfaceError("no two-way Split free of the noise scales: not a VITS acoustic model")


def text_encoder(teacher_acoustic: Path) -> onnx.ModelProto:
    """The teacher's text encoder alone: ids and lengths in, the prior mean ``m_p`` [1, 192, P] out."""
    model = onnx.load(str(teacher_acoustic))
    mp = prior_mean(model)
    sub = onnx.utils.Extractor(model).extract_model(list(ENCODER_INPUTS), [mp])
    for node in sub.graph.node:
        node.output[:] = [MP if o == mp else o for o in node.output]
    del sub.graph.output[:]
    sub.graph.output.append(_mp_info(MP))
    sub.graph.name = "teacher-text-encoder"
    onnx.checker.check_model(sub)
    return sub


def with_prior_mean(teacher_acoustic: Path) -> onnx.ModelProto:
    """The teacher's acoustic model with its prior mean as a third output (one run gives z, durations and m_p)."""
    model = onnx.load(str(teacher_acoustic))
    mp = prior_mean(model)
    model.graph.output.append(_mp_info(mp))
    return model


def _mp_info(name: str) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, ["batch_size", LATENT, "phonemes"])


@dataclass(frozen=True)
class Utterance:
    """One training utterance: the teacher at noise 0."""

    ids: np.ndarray
    """Phoneme ids, int64 [P]."""
    durations: np.ndarray
    """The teacher's frames per id, float32 [P]."""
    mp: np.ndarray
    """The teacher's prior mean, float16 [192, P]."""
    z: np.ndarray
    """The teacher's latent, float16 [192, sum(durations)]."""


def make_data(state_dir: Path, corpora: Sequence[str], out: Path, shard: int = 0, shards: int = 1,
              threads: int = 1) -> Path:
    """Run the teacher (noise 0) over this shard of ``corpora``'s utterances; writes ``out`` (a torch pickle of
    ``Utterance`` fields) atomically and returns it. Utterances whose durations do not cover z are skipped.

    Args:
        state_dir: jetvox state dir holding the provisioned teacher.
        corpora: corpus names (``teacher_data.CORPORA``), in order.
        out: the shard's file.
        shard: which shard this process makes (0-based); shards: how many processes share the work.
        threads: ONNX Runtime intra-op threads.
    """
    from tqdm import tqdm

    tdir = teacher_data.teacher_dir(state_dir)
    manifest = mf.read_manifest(tdir)
    phon = Phonemizer(manifest.espeak_voice, manifest.phoneme_id_map)
    teacher = with_prior_mean(tdir / "acoustic.onnx")
    sess = ort_session(teacher.SerializeToString(), threads=threads)
    mp_name = teacher.graph.output[-1].name
    todo = [text for name in corpora for _, text in teacher_data.utterances(teacher_data.corpus_sentences(name))]
    rows: list[dict[str, np.ndarray]] = []
    skipped = 0
    for text in tqdm(todo[shard::shards], desc=f"teacher m_p shard {shard}/{shards}", mininterval=5):
        ids = phon.sentence_ids(text)
        if not ids:
            continue
        z, dur, mp = sess.run(["z", "durations", mp_name], acoustic_feeds(ids, teacher_data.DET_SCALES))
        if int(dur.sum()) != z.shape[2]:
            skipped += 1
            continue
        rows.append({"ids": np.asarray(ids, np.int64), "durations": dur[0].astype(np.float32),
                     "mp": mp[0].astype(np.float16), "z": z[0].astype(np.float16)})
    with atomic_path(out) as tmp:
        torch.save({"version": DATA_VERSION, "corpora": list(corpora), "rows": rows}, tmp)
    log.info("%d utterances written to %s (%d skipped: durations not covering z)", len(rows), out, skipped)
    return out


def load_data(paths: Sequence[Path]) -> list[Utterance]:
    """The utterances of ``make_data``'s shard files, in order."""
    out = []
    for path in paths:
        if not Path(path).is_file():
            raise FileNotFoundError(f"hybrid data {path} not found; make it first with "
                                    "`python -m jetvox.provisioning.distill.hybrid data --shard K` for each shard")
        data = torch.load(path, weights_only=False)
        if data.get("version") != DATA_VERSION:
            raise ValueError(f"{path}: expected hybrid data of version {DATA_VERSION}, got {data.get('version')}")
        out += [Utterance(**row) for row in data["rows"]]
    if not out:
        raise ValueError("no hybrid training utterances; run `python -m jetvox.provisioning.distill.hybrid data`")
    return out


class HybridAcoustic(nn.Module):
    """The student's duration predictor and decoder, its encoder features replaced by a 1x1 projection of the
    teacher's prior mean ``m_p`` (an extra input; ``graft`` puts the teacher's text encoder in front of it)."""

    def __init__(self, student: StudentAcoustic) -> None:
        super().__init__()
        self.student = student
        self.proj = nn.Conv1d(LATENT, student.cfg.dim, 1)

    def trainable(self) -> list[nn.Parameter]:
        """What training changes: the projection and the decoder (durations stay the student's)."""
        s = self.student
        return [*self.proj.parameters(), *s.dec_in.parameters(), *s.decoder.parameters(), *s.out.parameters()]

    def forward_train(self, mp: torch.Tensor, durations: torch.Tensor, frames: int) -> torch.Tensor:
        """Teacher-forced: m_p [B, 192, P] and the teacher's durations [B, P] (zero-padded) -> z [B, 192, frames]."""
        return self.student.decode_forced(self.proj(mp), durations, frames)

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor, scales: torch.Tensor,
                mp: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Inference (batch 1), the student's interface plus m_p [1, 192, P] -> z [1, 192, T], durations [1, P]."""
        mask = (torch.arange(ids.shape[1])[None, :] < lengths[:, None]).to(torch.float32)[:, None, :]
        _, logd = self.student.encode(ids, mask)
        durations = predicted_durations(logd, scales)
        return self.student.decode_at(self.proj(mp), durations), durations


@torch.no_grad()
def init_projection(model: HybridAcoustic, data: Sequence[Utterance], count: int = 400) -> float:
    """Least-squares fit of the projection to the student's own encoder features (so training starts from the
    student's decoder doing what it did); returns the fit's mean absolute residual."""
    xs, ys = [], []
    for u in data[:count]:
        ids = torch.from_numpy(u.ids)[None]
        h, _ = model.student.encode(ids, torch.ones(1, 1, ids.shape[1]))
        xs.append(torch.from_numpy(u.mp.astype(np.float32)).T)
        ys.append(h[0].T)
    x, y = torch.cat(xs), torch.cat(ys)
    x1 = torch.cat([x, torch.ones(x.shape[0], 1)], 1)
    sol = torch.linalg.lstsq(x1.double(), y.double()).solution.float()  # [193, dim]
    model.proj.weight.copy_(sol[:-1].T[:, :, None])
    assert model.proj.bias is not None  # an nn.Conv1d made with bias
    model.proj.bias.copy_(sol[-1])
    return float((x1 @ sol - y).abs().mean())


@dataclass(frozen=True)
class HybridTrainConfig:
    """How the hybrid is trained (recorded in its checkpoint)."""

    steps: int = 6000
    """Optimizer steps in all."""
    batch: int = 16
    """Crops per step."""
    crop: int = 160
    """Latent frames per crop."""
    lr: float = 3e-4
    """AdamW's peak rate (cosine decay to zero over ``steps``)."""
    seed: int = 1234
    """Seed of the crop draws and of torch."""


def _batch(data: Sequence[Utterance], picks: np.ndarray, rng: np.random.Generator,
           crop: int) -> tuple[torch.Tensor, torch.Tensor, list[int], torch.Tensor]:
    """Padded m_p and durations of the picked utterances, each crop's first frame, and the target crops."""
    p = max(len(data[i].ids) for i in picks)
    mp = torch.zeros(len(picks), LATENT, p)
    dur = torch.zeros(len(picks), p)
    target = torch.zeros(len(picks), LATENT, crop)
    starts = []
    for b, i in enumerate(picks):
        u = data[i]
        mp[b, :, :len(u.ids)] = torch.from_numpy(u.mp.astype(np.float32))
        dur[b, :len(u.ids)] = torch.from_numpy(u.durations)
        start = int(rng.integers(0, max(1, u.z.shape[1] - crop + 1)))
        piece = torch.from_numpy(u.z[:, start:start + crop].astype(np.float32))
        target[b, :, :piece.shape[1]] = piece
        starts.append(start)
    return mp, dur, starts, target


def crop_loss(model: HybridAcoustic, data: Sequence[Utterance], picks: np.ndarray, rng: np.random.Generator,
              crop: int) -> torch.Tensor:
    """Mean L1 between the hybrid's and the teacher's latents over random ``crop``-frame crops of ``picks``."""
    mp, dur, starts, target = _batch(data, picks, rng, crop)
    frames = int(dur.sum(1).max())
    z = model.forward_train(mp, dur, frames)
    pad = F.pad(z, (0, crop))
    out = torch.stack([pad[b, :, s:s + crop] for b, s in enumerate(starts)])
    lengths = dur.sum(1).long()
    mask = torch.stack([(torch.arange(crop) + s < n).float() for s, n in zip(starts, lengths.tolist())])[:, None, :]
    return ((out - target).abs() * mask).sum() / (mask.sum() * LATENT)


def train(model: HybridAcoustic, data: Sequence[Utterance], run: Path, cfg: HybridTrainConfig,
          max_minutes: float | None = None) -> int:
    """Train (resuming ``run/ckpt.pt`` where it exists) until ``cfg.steps`` or ``max_minutes``; returns the step.

    SIGTERM or Ctrl-C checkpoints after the step under way and returns (``train.stop_on_signal``).
    """
    from tqdm import tqdm

    torch.manual_seed(cfg.seed)
    opt = torch.optim.AdamW(model.trainable(), lr=cfg.lr, weight_decay=0.0)
    step, ckpt = 0, run / "ckpt.pt"
    if ckpt.is_file():
        state = torch.load(ckpt, map_location="cpu", weights_only=False)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        step = state["step"]
    rng = np.random.default_rng(cfg.seed + step)
    weights = np.array([u.z.shape[1] for u in data], dtype=np.float64)
    weights /= weights.sum()
    started, losses = time.monotonic(), []
    model.train()
    with stop_on_signal() as stop, tqdm(total=cfg.steps, initial=step, desc="hybrid acoustic", mininterval=10) as bar:
        while step < cfg.steps and stop.signal is None:
            for group in opt.param_groups:
                group["lr"] = cfg.lr * 0.5 * (1 + math.cos(math.pi * step / cfg.steps))
            loss = crop_loss(model, data, rng.choice(len(data), cfg.batch, p=weights), rng, cfg.crop)
            opt.zero_grad()
            loss.backward()
            opt.step()
            step += 1
            losses.append(float(loss))
            bar.update(1)
            if step % 250 == 0 or step == cfg.steps:
                bar.set_postfix(l1=f"{np.mean(losses[-250:]):.4f}")
                _save(model, opt, step, cfg, run, losses)
                losses = []
            if max_minutes is not None and time.monotonic() - started > max_minutes * 60:
                break
    _save(model, opt, step, cfg, run, losses)
    model.eval()
    return step


def _save(model: HybridAcoustic, opt: torch.optim.Optimizer, step: int, cfg: HybridTrainConfig, run: Path,
          losses: list[float]) -> None:
    run.mkdir(parents=True, exist_ok=True)
    if losses:
        with (run / "losses.jsonl").open("a", encoding="utf-8") as f:
            f.write(json.dumps({"step": step, "l1": round(float(np.mean(losses)), 5)}) + "\n")
    with atomic_path(run / "ckpt.pt") as tmp:
        torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "step": step, "config": asdict(cfg),
                    "student_config": asdict(model.student.cfg)}, tmp)


def graft(encoder: onnx.ModelProto, head: onnx.ModelProto) -> onnx.ModelProto:
    """One acoustic model: ``encoder`` (``text_encoder``) feeding ``head``'s ``m_p`` input, both reading the ids and
    lengths; ``head``'s other inputs and outputs stay. The encoder is converted to ``head``'s opset first."""
    opset = next(o.version for o in head.opset_import if o.domain in ("", "ai.onnx"))
    enc = version_converter.convert_version(encoder, opset)
    enc.ir_version = head.ir_version
    enc = compose.add_prefix(enc, "tenc/")
    merged = compose.merge_models(enc, head, io_map=[(f"tenc/{MP}", MP)])
    # merge_models checks that both import the same opsets but keeps both lists: one entry per domain, as
    # ONNX Runtime's quantiser requires ("Failed to find proper ai.onnx domain" otherwise)
    opsets = {o.domain: o.version for o in merged.opset_import}
    del merged.opset_import[:]
    merged.opset_import.extend(helper.make_opsetid(domain, version) for domain, version in opsets.items())
    shared = {f"tenc/{name}": name for name in ENCODER_INPUTS}
    for node in merged.graph.node:
        node.input[:] = [shared.get(i, i) for i in node.input]
    keep = [vi for vi in merged.graph.input if vi.name not in shared]
    del merged.graph.input[:]
    merged.graph.input.extend(keep)
    merged.graph.name = "jetvox-hybrid-acoustic"
    onnx.checker.check_model(merged)
    return merged


def sharpen(path: Path, amount: float) -> None:
    """Append ``z + (amount - 1) * (z - mean5(z))`` to the acoustic model at ``path`` (in place, atomically; after
    any global-variance compensation): restores the fast detail within phonemes that regression smooths away.
    ``mean5`` averages each channel over five frames (fewer at the ends)."""
    variance.append_after_z(path, "sharpened", SHARP_IN,
                            [numpy_helper.from_array(np.array(amount - 1.0, np.float32), SHARP_NAME)], [
        helper.make_node("AveragePool", [SHARP_IN], [SHARP_AVG], kernel_shape=[5], pads=[2, 2], count_include_pad=0),
        helper.make_node("Sub", [SHARP_IN, SHARP_AVG], ["z__detail"]),
        helper.make_node("Mul", ["z__detail", SHARP_NAME], ["z__boost"]),
        helper.make_node("Add", [SHARP_IN, "z__boost"], ["z"]),
    ])


def export(model: HybridAcoustic, teacher_acoustic: Path, path: Path) -> Path:
    """Write the hybrid as one acoustic model with the teacher's interface (text encoder grafted in front)."""
    model.eval()
    ids = torch.randint(1, 100, (1, 25))
    args = (ids, torch.tensor([25]), torch.tensor([0.667, 1.0, 0.8]), torch.randn(1, LATENT, 25))
    with atomic_path(path.with_suffix(".head.onnx")) as tmp, torch.no_grad():
        torch.onnx.export(model, args, str(tmp), input_names=["input", "input_lengths", "scales", MP],
                          output_names=["z", "durations"], opset_version=OPSET, dynamo=False,
                          dynamic_axes={"input": {0: "batch_size", 1: "phonemes"}, "input_lengths": {0: "batch_size"},
                                        MP: {2: "phonemes"}, "z": {2: "frames"}, "durations": {1: "phonemes"}})
        head = onnx.load(str(tmp))
    path.with_suffix(".head.onnx").unlink()
    merged = graft(text_encoder(teacher_acoustic), head)
    with atomic_path(path) as tmp:
        onnx.save(merged, str(tmp))
        fix_io(tmp, "acoustic")
        compact(tmp)
        check_interface(tmp, "acoustic")
    return path


STUDENT = Path(__file__).resolve().parent / "results" / "acoustic-ckpt.pt"
"""The acoustic student's checkpoint (joe-fast's acoustic model until the thirty-eighth session): where a new hybrid
run starts its duration predictor and decoder."""
SHARPEN = 1.6
"""The default ``sharpen`` amount (thirty-fourth session: best of 1, 1.3, 1.6 and 2 through the teacher's vocoder)."""


def data_paths(state_dir: Path, shards: int) -> list[Path]:
    """Where ``make_data`` puts each shard of the main and wide corpora."""
    return [Path(state_dir) / "distill" / f"hybrid-v{DATA_VERSION}-{k}of{shards}.pt" for k in range(shards)]


def build(run: Path, student: Path = STUDENT) -> HybridAcoustic:
    """The hybrid of ``run``'s checkpoint, or (no checkpoint yet) a new one around ``student``'s weights."""
    ckpt = run / "ckpt.pt"
    if ckpt.is_file():
        state = torch.load(ckpt, map_location="cpu", weights_only=False)
        model = HybridAcoustic(StudentAcoustic(acoustic_config(state["student_config"])))
        model.load_state_dict(state["model"])
        return model.eval()
    return HybridAcoustic(load_acoustic(student)[0])


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m jetvox.provisioning.distill.hybrid", description=__doc__)
    ap.add_argument("what", choices=("data", "train", "export", "pack"))
    ap.add_argument("--state-dir", type=Path, default=None, help="jetvox state dir (default: the configured one)")
    ap.add_argument("--shard", type=int, default=0, help="data: which shard this process makes")
    ap.add_argument("--shards", type=int, default=2, help="data: processes sharing the work (default 2)")
    ap.add_argument("--threads", type=int, default=1, help="ONNX Runtime (data) or torch (train) threads")
    ap.add_argument("--run", type=Path, default=Path(__file__).resolve().parent / "results" / "acoustic-hybrid")
    ap.add_argument("--steps", type=int, default=HybridTrainConfig.steps)
    ap.add_argument("--max-minutes", type=float, default=None, help="train: stop (checkpointed) after this long")
    ap.add_argument("--out", type=Path, default=None, help="export: the acoustic.onnx to write; pack: the .npz")
    ap.add_argument("--count", type=int, default=PACK_SIZE, help=f"pack: utterances (default {PACK_SIZE})")
    ap.add_argument("--sharpen", type=float, default=SHARPEN, help=f"export: sharpening amount (default {SHARPEN})")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        return _run(ap, args)
    except (FileNotFoundError, ValueError) as exc:  # InterfaceError and ManifestError are ValueErrors
        raise SystemExit(f"hybrid {args.what}: {exc}") from None


def _run(ap: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    state = args.state_dir or default_state_dir()
    if args.what == "data":
        out = data_paths(state, args.shards)[args.shard]
        if out.is_file():
            log.info("%s is made already; kept (remove it to make it again)", out)
        else:
            make_data(state, teacher_data.CORPORA, out, args.shard, args.shards, args.threads)
        return 0
    if args.what == "train":
        torch.set_num_threads(args.threads)
        data = load_data(data_paths(state, args.shards))
        model = build(args.run)
        if not (args.run / "ckpt.pt").is_file():
            log.info("projection initialised (mean residual %.4f)", init_projection(model, data))
        step = train(model, data, args.run, HybridTrainConfig(steps=args.steps), args.max_minutes)
        log.info("hybrid at step %d in %s", step, args.run)
        return 0
    if args.out is None:
        ap.error(f"{args.what} needs --out")
    if args.what == "pack":
        request = f"hybrid data v{DATA_VERSION}, {args.count} drawn with seed {PACK_SEED}"
        if teacher_pairs.made_by(args.out) == request:
            log.info("%s is the pack of %s already; kept", args.out, request)
            return 0
        utts = pack(load_data(data_paths(state, args.shards)), args.count)
        teacher_pairs.save(utts, args.out, request)
        log.info("%d utterances packed in %s (digest %s)", len(utts.ids), args.out, utts.digest())
        return 0
    export_voice(build(args.run), teacher_data.teacher_dir(state), args.out, args.sharpen)
    return 0


PACK_SIZE, PACK_SEED = 5000, 5
"""A vocoder stage's utterances: as many as stage 3w's, drawn from the hybrid's data (main and wide corpora)."""


def pack(data: Sequence[Utterance], count: int = PACK_SIZE, seed: int = PACK_SEED) -> teacher_pairs.Utterances:
    """``count`` of ``data``'s utterances (ids and the teacher's durations), drawn without replacement with ``seed``
    and kept in their order: an utterance pack (``teacher_pairs.py``) for a vocoder stage on the hybrid's latents."""
    if not 0 < count <= len(data):
        raise ValueError(f"expected a count from 1 to {len(data)} utterances; got {count}")
    picks = np.sort(np.random.default_rng(seed).choice(len(data), count, replace=False))
    return teacher_pairs.Utterances([data[i].ids for i in picks], [data[i].durations for i in picks])


def export_voice(model: HybridAcoustic, teacher: Path, out: Path, amount: float) -> variance.Compensation:
    """Export, compensate (global variance against the ``teacher``'s split models) and sharpen the hybrid at
    ``out``; returns the compensation (for the training record)."""
    manifest = mf.read_manifest(teacher)
    export(model, teacher / "acoustic.onnx", out)
    comp = variance.compensate(teacher, out, dict(manifest.phoneme_id_map), manifest.espeak_voice,
                               say=lambda line: log.info("%s", line))
    if amount != 1.0:
        sharpen(out, amount)
    log.info("hybrid acoustic model written to %s (%.1f MB)", out, out.stat().st_size / 1e6)
    return comp


STORE_PREFIX, STORE_KEEP = "tenc/", ("enc_p.proj",)
"""What ``export.store_int8`` stores of a hybrid as INT8: the grafted text encoder's matrices but its last
projection, whose large least-squares weights (up to 440) turn INT8 rounding into a latent error of 0.24."""


if __name__ == "__main__":
    raise SystemExit(main())
