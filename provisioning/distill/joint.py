"""Both students fine-tuned together: the acoustic student's latents through the vocoder, scored on the audio."""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch.nn import functional as F

from jetvox.device.config import default_state_dir
from jetvox.provisioning.distill import teacher_data
from jetvox.provisioning.distill import train as tr
from jetvox.provisioning.distill.adversarial import AdversarialStep, gan_config
from jetvox.provisioning.distill.aligned import eligible
from jetvox.provisioning.distill.models import HOP, StudentAcoustic

log = logging.getLogger(__name__)

ROLES = ("acoustic", "vocoder")


@dataclass(frozen=True)
class JointConfig:
    """The joint stage's settings (kept in both students' checkpoints)."""

    steps: int
    """Joint steps: each is one optimiser step of both students."""
    vocoder_lr: float = 5e-5
    """Peak learning rate of the vocoder's phase for this stage."""
    acoustic_lr: float = 5e-5
    """Peak learning rate of the acoustic student's phase for this stage."""
    latent_weight: float = 100.0
    """Weight of the acoustic student's own losses (latent L1 to the teacher's, log-duration MSE) beside the audio
    loss that reaches it through the vocoder (whose gradient at the decoder was 200-600x the latent L1's at the
    start): keeps its latents near the teacher's, which the vocoder learnt on."""
    sentences: int = 12
    """Sentences per step, one scored vocoder segment from each."""


class JointData:
    """Batches of whole sentences (ids, the teacher's durations and noise-0 latents) with one audio segment each."""

    def __init__(self, items: list[teacher_data.Item], sentences: int, segment: int, rng: np.random.Generator) -> None:
        self.items = [it for it in items if eligible(it) and it.z0.shape[1] >= segment]
        if not self.items:
            raise ValueError(f"no cached utterance was vocoded from its noise-0 latent with {segment} frames or more")
        self.sentences, self.segment, self.rng = sentences, segment, rng

    def batch(self) -> tuple[tuple[torch.Tensor, ...], list[int], torch.Tensor]:
        """(``train.padded`` tensors, each sentence's segment start in frames, the teacher's audio of each segment)."""
        picks = [self.items[n] for n in self.rng.choice(len(self.items), size=self.sentences)]
        starts = [int(self.rng.integers(0, it.z0.shape[1] - self.segment + 1)) for it in picks]
        wav = np.stack([it.wav[s * HOP : (s + self.segment) * HOP] for it, s in zip(picks, starts)])
        return tr.padded(picks), starts, torch.from_numpy(wav.astype(np.float32))


def segments(z: torch.Tensor, starts: Sequence[int], segment: int, context: int) -> torch.Tensor:
    """Windows [B, C, segment + 2 * context] of latents z [B, C, T], from each start minus ``context`` (zeros beyond
    the ends, as ``train.VocoderData`` cuts them); differentiable."""
    padded = F.pad(z, (context, context + segment))
    return torch.stack([padded[b, :, s : s + segment + 2 * context] for b, s in enumerate(starts)])


def _begin(state: dict[str, Any], joint: JointConfig, lr: float, threads: int) -> tr.TrainConfig:
    """A student's config in the joint stage: as saved when resumed, else with a new learning-rate phase to
    ``joint.steps`` steps from its checkpoint and the stage recorded in ``changes``."""
    saved = {**state["config"], "threads": threads}
    if saved.get("joint"):
        return tr.TrainConfig(**saved)
    step = int(state["step"])
    cfg = {**tr.new_phase(saved, step, step + joint.steps, lr), "joint": asdict(joint)}
    cfg["changes"] = [*cfg.get("changes", []), {"step": step, "joint": asdict(joint)}]
    return tr.TrainConfig(**cfg)


class JointRun:
    """Both students, their optimisers, the discriminators and the data of one joint run directory."""

    def __init__(self, out: Path, joint: JointConfig, cache: Sequence[Path], threads: int,
                 limit_items: int | None = None) -> None:
        states = {role: torch.load(out / role / tr.CKPT, map_location="cpu", weights_only=False) for role in ROLES}
        if states["vocoder"]["config"]["what"] != "vocoder" or states["acoustic"]["config"]["what"] != "acoustic":
            raise ValueError(f"{out}: expected a vocoder and an acoustic checkpoint in vocoder/ and acoustic/")
        joint = JointConfig(**states["vocoder"]["config"].get("joint") or asdict(joint))
        lrs = {"vocoder": joint.vocoder_lr, "acoustic": joint.acoustic_lr}
        self.cfg = {role: _begin(states[role], joint, lrs[role], threads) for role in ROLES}
        self.models, self.opts, self.steps, self.seconds = {}, {}, {}, {}
        for role in ROLES:  # the vocoder last: its random state (the data's) is the one that continues
            model, opt, rng, step, seconds = tr._start(self.cfg[role], states[role])
            self.models[role], self.opts[role], self.steps[role], self.seconds[role] = model, opt, step, seconds
        self.rng = rng
        self.adversarial = AdversarialStep(gan_config(self.cfg["vocoder"].gan), states["vocoder"])
        from tqdm import tqdm

        paths = tr._cached_paths(list(cache))[:limit_items]
        items = [teacher_data.load_item(p) for p in tqdm(paths, desc="loading teacher data", mininterval=5)]
        self.utterances = len(paths)
        self.data = JointData(items, joint.sentences, self.cfg["vocoder"].segment, self.rng)
        self.joint, self.out = joint, out

    def loss(self) -> tuple[torch.Tensor, dict[str, float]]:
        """One batch: the adversarial audio loss of the vocoded teacher-forced latents plus the weighted latent
        and duration losses; the discriminators take their own step inside."""
        acoustic = self.models["acoustic"]
        assert isinstance(acoustic, StudentAcoustic)
        batch, starts, wav = self.data.batch()
        zp, zl, dl = tr.acoustic_losses(acoustic, *batch)
        segment, context = self.cfg["vocoder"].segment, self.cfg["vocoder"].context
        pred = self.models["vocoder"](segments(zp, starts, segment, context))[:, context * HOP : (context + segment) * HOP]
        audio, parts = self.adversarial(pred, wav)
        total = audio + self.joint.latent_weight * (zl + dl)
        return total, {"loss": total.item(), **parts, "audio": audio.item(), "z_l1": zl.item(), "logdur_mse": dl.item()}

    def step(self) -> dict[str, float]:
        for role in ROLES:
            for group in self.opts[role].param_groups:
                group["lr"] = tr._lr(self.cfg[role], self.steps[role])
        total, parts = self.loss()
        for opt in self.opts.values():
            opt.zero_grad(set_to_none=True)
        total.backward()
        for role in ROLES:
            torch.nn.utils.clip_grad_norm_(self.models[role].parameters(), 5.0)
            self.opts[role].step()
            self.steps[role] += 1
        return parts

    def save(self, elapsed: float) -> None:
        """Both checkpoints (each in the form ``train`` writes, so evaluate and ship read them as they are)."""
        for role in ROLES:
            extra = self.adversarial.state() if role == "vocoder" else {}
            tr._save(self.out / role / tr.CKPT, {
                **tr._snapshot(self.cfg[role], self.models[role], self.opts[role], self.rng), **extra,
                "step": self.steps[role], "seconds": self.seconds[role] + elapsed, "utterances": self.utterances})

    def left(self) -> int:
        return self.cfg["vocoder"].steps - self.steps["vocoder"]


def prepare(out: Path, vocoder_from: Path | None, acoustic_from: Path | None) -> None:
    """A joint run directory: copies of the two starting checkpoints, unless it already holds them."""
    for role, source in (("vocoder", vocoder_from), ("acoustic", acoustic_from)):
        if not (out / role / tr.CKPT).exists():
            if source is None or not Path(source).is_file():
                raise FileNotFoundError(f"{out / role / tr.CKPT} does not exist yet and the {role} checkpoint to start "
                                        f"from ({source}) is not a file: give --{role}-from a `train` run's ckpt.pt")
            (out / role).mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, out / role / tr.CKPT)


def run_joint(out: Path, joint: JointConfig, cache: Sequence[Path], threads: int = 1, max_minutes: float | None = None,
              limit_items: int | None = None) -> dict[str, Any]:
    """Run (or resume) the joint stage in ``out`` (from ``prepare``) to its end or the time budget.

    Args:
        out: the run directory with ``vocoder/`` and ``acoustic/`` checkpoints; their loss logs are written beside.
        joint: the stage's settings (a resumed run keeps those it began with).
        cache: teacher-data cache directories.
        threads: torch intra-op threads.
        max_minutes: stop (checkpointed) after this much wall time.
        limit_items: use only the first N cached utterances (tests).
    """
    from tqdm import tqdm

    run = JointRun(out, joint, cache, threads, limit_items)
    logs = {role: tr._LossLog(out / role / tr.LOSS_LOG, run.cfg[role], run.steps[role]) for role in ROLES}
    log.info("joint stage: %d utterances, %d steps left (vocoder at %d, acoustic at %d)", run.utterances, run.left(),
             run.steps["vocoder"], run.steps["acoustic"])
    bar = tqdm(total=run.left(), desc="joint", mininterval=10)
    started = t0 = time.monotonic()
    every = run.cfg["vocoder"].ckpt_every
    while run.left() > 0:
        parts = run.step()
        for role in ROLES:
            logs[role].add(run.steps[role], parts, run.seconds[role] + time.monotonic() - t0)
        bar.set_postfix(audio=f"{parts['audio']:.2f}", z_l1=f"{parts['z_l1']:.3f}", refresh=False)
        bar.update(1)
        over = max_minutes is not None and time.monotonic() - started > max_minutes * 60
        if run.left() % every == 0 or run.left() == 0 or over:
            run.save(time.monotonic() - t0)
            for role in ROLES:
                run.seconds[role] += time.monotonic() - t0
            t0 = time.monotonic()
        if over:
            log.info("time budget of %.1f min reached; checkpoint saved", max_minutes)
            break
    bar.close()
    for lg in logs.values():
        lg.close()
    return {"joint": asdict(run.joint), "left": run.left(), "utterances": run.utterances,
            **{role: {"step": run.steps[role], "losses": logs[role].last} for role in ROLES}}


def ready(out: Path, sources: dict[str, tuple[Path | None, int | None]]) -> str | None:
    """Why a new joint run cannot start yet (a starting checkpoint short of the step its recipe stage ends at), or
    None. A run already under way in ``out`` is always ready."""
    for role, (source, step) in sources.items():
        if step is None or (out / role / tr.CKPT).exists() or source is None or not Path(source).is_file():
            continue
        reached = int(torch.load(source, map_location="cpu", weights_only=False).get("step", 0))
        if reached < step:
            return f"the {role} checkpoint {source} is at step {reached}, not yet at {step}"
    return None


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", type=Path, required=True, help="the joint run directory (vocoder/ and acoustic/)")
    ap.add_argument("--vocoder-from", type=Path, help="the vocoder checkpoint to start from (a new run)")
    ap.add_argument("--acoustic-from", type=Path, help="the acoustic checkpoint to start from (a new run)")
    ap.add_argument("--steps", type=int, default=2000, help="joint steps of a new run (a resumed one keeps its own)")
    ap.add_argument("--cache", type=Path, action="append", default=None, help="teacher-data cache; repeat for several")
    ap.add_argument("--vocoder-lr", type=float, default=JointConfig.vocoder_lr)
    ap.add_argument("--acoustic-lr", type=float, default=JointConfig.acoustic_lr)
    ap.add_argument("--latent-weight", type=float, default=JointConfig.latent_weight)
    ap.add_argument("--sentences", type=int, default=JointConfig.sentences)
    ap.add_argument("--vocoder-step", type=int, default=None, metavar="STEP",
                    help="a new run waits until the vocoder checkpoint has reached STEP (the end of its stage)")
    ap.add_argument("--acoustic-step", type=int, default=None, metavar="STEP",
                    help="likewise for the acoustic checkpoint")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--max-minutes", type=float, default=None)
    args = ap.parse_args(argv)
    if args.steps < 1 or args.sentences < 1 or args.latent_weight < 0 or min(args.vocoder_lr, args.acoustic_lr) <= 0:
        ap.error("--steps and --sentences need at least 1, --latent-weight 0 or more, the learning rates more than 0")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    joint = JointConfig(args.steps, args.vocoder_lr, args.acoustic_lr, args.latent_weight, args.sentences)
    waiting = ready(args.out, {"vocoder": (args.vocoder_from, args.vocoder_step),
                               "acoustic": (args.acoustic_from, args.acoustic_step)})
    if waiting:
        log.info("joint stage waits: %s (run again after the earlier stage)", waiting)
        return
    try:
        prepare(args.out, args.vocoder_from, args.acoustic_from)
        summary = run_joint(args.out, joint, args.cache or [teacher_data.cache_dir(default_state_dir())], args.threads,
                            args.max_minutes)
    except (FileNotFoundError, ValueError) as exc:
        raise SystemExit(f"joint: {exc}") from None
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    log.info("done: %s", summary)


if __name__ == "__main__":
    main()
