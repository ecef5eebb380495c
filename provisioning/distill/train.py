"""Train a student (vocoder or acoustic model) on the cached teacher data, with checkpoints, seeds and a loss log."""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import os
import platform
import signal
import threading
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch

from jetvox.device.config import default_state_dir
from jetvox.provisioning.distill import aligned as aligned_mod
from jetvox.provisioning.distill import hifigan, teacher_data, teacher_pairs, variance
from jetvox.provisioning.distill.adversarial import AdversarialStep, GanConfig, gan_config
from jetvox.provisioning.distill.losses import VocoderLoss, masked_l1, masked_mse
from jetvox.provisioning.distill.models import (
    HOP,
    StudentAcoustic,
    StudentVocoder,
    VocoderConfig,
    acoustic_config,
    deepen_vocoder,
    split_head,
    widen_vocoder,
)

log = logging.getLogger(__name__)

CKPT = "ckpt.pt"
LOSS_LOG = "losses.jsonl"


@dataclass
class TrainConfig:
    """Hyper-parameters of one training run (stored in every checkpoint)."""

    what: str
    """``vocoder`` or ``acoustic``."""
    steps: int
    """Total optimiser steps (the learning-rate schedule spans them)."""
    seed: int = 1234
    """Seed for torch and numpy."""
    batch: int = 16
    """Segments (vocoder) or sentences (acoustic) per step."""
    lr: float = 1e-3
    """Peak learning rate (AdamW), reached after ``warmup`` steps then cosine-decayed to 10%."""
    warmup: int = 100
    """Linear warm-up steps."""
    segment: int = 32
    """Vocoder: frames per training segment whose audio is scored."""
    context: int = 8
    """Vocoder: extra latent frames either side of a segment given as input (not scored)."""
    ckpt_every: int = 200
    """Steps between checkpoints."""
    log_every: int = 10
    """Steps between loss-log lines."""
    threads: int = 1
    """torch intra-op threads."""
    noisy_fraction: float = 0.5
    """Acoustic: not used; vocoder: the cache alternates noise-0 and default-noise latents (about half each)."""
    model: dict[str, Any] = field(default_factory=dict)
    """The student's size (a VocoderConfig or AcousticConfig as a dict)."""
    adversarial: bool = False
    """Vocoder: also train against discriminators with feature matching (``adversarial.py``)."""
    gan: dict[str, Any] = field(default_factory=dict)
    """The discriminators' size and the loss weights (a GanConfig as a dict) of an adversarial run."""
    phases: list[dict[str, float]] = field(default_factory=list)
    """Learning-rate phases ``{"until": step, "lr": peak}``; each warms up and cosine-decays on its own span.
    Empty means one phase (``steps``, ``lr``). An extended run (``--resume`` with more steps and a new ``--lr``)
    appends a phase, so the schedule of the finished steps is never rewritten."""
    changes: list[dict[str, Any]] = field(default_factory=list)
    """Settings changed on a resume, oldest first: ``{"step": step, "gan": {key: new value}}`` (``--gan-set``),
    ``{"step": step, "model": {"mult": new}}`` (``--widen-mult``), ``{"step": step, "model": {"tail_blocks": new}}``
    (``--deepen``), ``{"step": step, "aligned": {...}}`` (``--aligned-fraction``), ``{"step": step, "ema": decay}``
    (``--ema``), ``{"step": step, "gan": {"width": n, "warmup_until": step}}`` (``--disc-width``),
    ``{"step": step, "pairs": {...}}`` (``--pairs``), ``{"step": step, "batch": n}`` (``--batch`` on a resume) or
    ``{"step": step, "model": {"subframes": n}}`` (``--subframes``)."""
    aligned_fraction: float = 0.0
    """Vocoder: share of segments whose input is the acoustic student's teacher-forced latent instead of the
    teacher's (``aligned.py``); their target is still the teacher's audio."""
    aligned_acoustic: str = ""
    """Digest of the acoustic student's weights that made those latents (``aligned.weights_digest``)."""
    joint: dict[str, Any] = field(default_factory=dict)
    """The joint stage (``joint.py``, a JointConfig as a dict) this run is in, from the step it began; empty
    before it."""
    ema: float = 0.0
    """Decay of an exponential moving average of the weights kept beside them (0: none). When kept, it is what
    is exported and evaluated (``export.load_student``): averaged weights of a GAN generator sound steadier than
    the last step's."""
    stage_weight: float = 0.0
    """Time-domain (``hifigan``) vocoder started from the pruned teacher: weight of the distance of its stages'
    outputs to the teacher decoder's, on the channels it kept (``hifigan.stage_distance``); 0 for none."""
    pairs: dict[str, str] = field(default_factory=dict)
    """Vocoder: when set, its pairs are the acoustic student's teacher-forced latents and the teacher decoder's audio
    of exactly those latents, made at the start of each run on the training device (``teacher_pairs.py``), not the
    cache's: the digests ``{"utterances", "acoustic", "teacher"}`` of what made them. Empty: the cache's pairs."""


def runs_dir(state_dir: Path) -> Path:
    """Default parent of the training runs (``vocoder/`` and ``acoustic/``)."""
    return Path(state_dir) / "distill" / "runs"


def _lr(cfg: TrainConfig, step: int) -> float:
    start, until, peak, decay = 0, cfg.steps, cfg.lr, cfg.steps
    for phase in cfg.phases:
        until, peak = int(phase["until"]), float(phase["lr"])
        decay = int(phase.get("decay_until", until))  # a phase cut short keeps the cosine it was run with
        if step < until:
            break
        start = until
    step -= start
    if step < cfg.warmup:
        return peak * (step + 1) / cfg.warmup
    frac = min(1.0, (step - cfg.warmup) / max(1, decay - start - cfg.warmup))
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))


def extend(saved: dict[str, Any], steps: int, lr: float | None) -> dict[str, Any]:
    """The config of a resumed run: ``steps`` total; with ``lr``, a new phase from the saved target to ``steps``."""
    cfg = {**saved, "steps": steps}
    if lr is not None and steps > saved["steps"]:
        done = list(saved.get("phases") or [{"until": saved["steps"], "lr": saved["lr"]}])
        cfg["phases"] = [*done, {"until": steps, "lr": lr}]
    return cfg


def new_phase(saved: dict[str, Any], step: int, steps: int, lr: float) -> dict[str, Any]:
    """The config of a run given a new learning-rate phase from ``step`` (the checkpoint's) to ``steps``.

    The phase running at ``step`` ends there but keeps the cosine it was run with (``decay_until``), so the
    schedule of the finished steps is not rewritten. Unchanged when the last phase already is (``steps``, ``lr``).
    """
    phases = list(saved.get("phases") or [{"until": saved["steps"], "lr": saved["lr"]}])
    if phases[-1]["until"] == steps and phases[-1]["lr"] == lr:
        return {**saved, "steps": steps}
    done = [p for p in phases if p["until"] <= step]
    running = [p for p in phases if p["until"] > step][:1]
    cut = [{**running[0], "until": step, "decay_until": running[0].get("decay_until", running[0]["until"])}] if running else []
    return {**saved, "steps": steps, "phases": [*done, *cut, {"until": steps, "lr": lr}]}


class VocoderData:
    """Random latent segments with context and the teacher audio of their centre."""

    def __init__(self, items: list[teacher_data.Item], cfg: TrainConfig, rng: np.random.Generator,
                 aligned: list[np.ndarray | None] | None = None) -> None:
        keep = [n for n, it in enumerate(items) if it.wav_z.shape[1] >= cfg.segment]
        self.z = [items[n].wav_z.astype(np.float16) for n in keep]
        self.wav = [items[n].wav.astype(np.float16) for n in keep]
        if not self.z:
            raise ValueError(f"no cached utterance has {cfg.segment} frames or more; the teacher cache is too small")
        lengths = np.array([z.shape[1] for z in self.z], dtype=np.float64)
        self.p = lengths / lengths.sum()
        self.aligned = [aligned[n] for n in keep] if aligned is not None else []
        self.aligned_index = np.array([k for k, z in enumerate(self.aligned) if z is not None], dtype=np.int64)
        if cfg.aligned_fraction > 0 and not self.aligned_index.size:
            raise ValueError("aligned_fraction > 0 but no cached utterance was vocoded from its noise-0 latent")
        if self.aligned_index.size:
            self.p_aligned = lengths[self.aligned_index] / lengths[self.aligned_index].sum()
        self.cfg, self.rng = cfg, rng

    def _picks(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """(input latent, teacher audio) of each segment of a batch."""
        if self.cfg.aligned_fraction <= 0:  # the draws of the runs before aligned latents, unchanged
            return [(self.z[n], self.wav[n]) for n in self.rng.choice(len(self.z), size=self.cfg.batch, p=self.p)]
        out = []
        for _ in range(self.cfg.batch):
            if self.rng.random() < self.cfg.aligned_fraction:
                n = int(self.rng.choice(self.aligned_index, p=self.p_aligned))
                z = self.aligned[n]
                assert z is not None
                out.append((z, self.wav[n]))
            else:
                n = int(self.rng.choice(len(self.z), p=self.p))
                out.append((self.z[n], self.wav[n]))
        return out

    def batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        seg, ctx = self.cfg.segment, self.cfg.context
        zs = np.zeros((self.cfg.batch, 192, seg + 2 * ctx), dtype=np.float32)
        ws = np.zeros((self.cfg.batch, seg * HOP), dtype=np.float32)
        for b, (z, wav) in enumerate(self._picks()):
            start = int(self.rng.integers(0, z.shape[1] - seg + 1))
            a, e = max(0, start - ctx), min(z.shape[1], start + seg + ctx)
            zs[b, :, a - (start - ctx) : e - (start - ctx)] = z[:, a:e]
            ws[b] = wav[start * HOP : (start + seg) * HOP]
        return torch.from_numpy(zs), torch.from_numpy(ws)


class AcousticData:
    """Padded batches of (ids, teacher durations, teacher noise-0 latents)."""

    def __init__(self, items: list[teacher_data.Item], cfg: TrainConfig, rng: np.random.Generator) -> None:
        self.items = [it for it in items if it.durations_cover_z0]
        if not self.items:
            raise ValueError("no cached utterance has durations that sum to its latent length")
        self.cfg, self.rng = cfg, rng

    def batch(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        return padded([self.items[n] for n in self.rng.choice(len(self.items), size=self.cfg.batch)])


def padded(picks: list[teacher_data.Item]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Utterances as one zero-padded batch: ids [B, P], id mask [B, 1, P], durations [B, P], noise-0 latents
    [B, 192, T]."""
    p = max(len(it.ids) for it in picks)
    t = max(it.z0.shape[1] for it in picks)
    ids = np.zeros((len(picks), p), dtype=np.int64)
    dur = np.zeros((len(picks), p), dtype=np.float32)
    z = np.zeros((len(picks), 192, t), dtype=np.float32)
    for b, it in enumerate(picks):
        ids[b, : len(it.ids)] = it.ids
        dur[b, : len(it.ids)] = it.durations
        z[b, :, : it.z0.shape[1]] = it.z0
    mask = (np.arange(p)[None, :] < np.array([len(it.ids) for it in picks])[:, None]).astype(np.float32)
    return torch.from_numpy(ids), torch.from_numpy(mask[:, None, :]), torch.from_numpy(dur), torch.from_numpy(z)


def build_model(cfg: TrainConfig) -> torch.nn.Module:
    if cfg.what == "vocoder" and cfg.model.get("kind") == hifigan.KIND:
        return hifigan.HifiVocoder(hifigan.hifi_config(cfg.model))
    if cfg.what == "vocoder":
        return StudentVocoder(VocoderConfig(**cfg.model))
    if cfg.what == "acoustic":
        return StudentAcoustic(acoustic_config(cfg.model))
    raise ValueError(f"--what must be vocoder or acoustic, got {cfg.what!r}")


def _truncate_log(path: Path, step: int) -> None:
    """Drop loss-log lines written after the checkpoint being resumed (they will be written again)."""
    if path.exists():
        lines = [x for x in path.read_text(encoding="utf-8").splitlines() if x and json.loads(x)["step"] <= step]
        path.write_text("".join(f"{x}\n" for x in lines), encoding="utf-8")


def _on_cpu(obj: Any) -> Any:
    """``obj`` with every tensor in it (through dicts, lists and tuples) copied to the CPU."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: _on_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_on_cpu(v) for v in obj)
    return obj


def _save(path: Path, state: dict[str, Any]) -> None:
    """Write a checkpoint atomically, its tensors on the CPU (so that it loads on a machine without the GPU)."""
    tmp = path.with_name(f".tmp-{path.name}")
    torch.save(_on_cpu(state), tmp)
    os.replace(tmp, path)


def gan_changes(pairs: list[str]) -> dict[str, float]:
    """``KEY=VALUE`` pairs naming GanConfig's float fields (loss weights, discriminator learning rate)."""
    floats = {k for k, v in asdict(GanConfig()).items() if isinstance(v, float)}
    out: dict[str, float] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or key not in floats:
            raise ValueError(f"--gan-set expects KEY=NUMBER with KEY one of {', '.join(sorted(floats))}; got {pair!r}")
        try:
            out[key] = float(value)
        except ValueError:
            raise ValueError(f"--gan-set {key}: expected a number, got {value!r}") from None
    return out


def _pad_like(saved: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """``saved`` (an optimiser moment) zero-padded at the end of each axis to ``shape``."""
    out = torch.zeros(shape, dtype=saved.dtype)
    out[tuple(slice(0, n) for n in saved.shape)] = saved
    return out


def widen(state: dict[str, Any], mult: int, seed: int) -> dict[str, Any]:
    """A vocoder checkpoint with wider ConvNeXt MLPs (``models.widen_vocoder``), its optimiser moments padded
    with zeros for the new units and the change recorded in its config."""
    old = VocoderConfig(**state["config"]["model"])
    names = [n for n, _ in StudentVocoder(old).named_parameters()]
    model = widen_vocoder(state["model"], old, mult, torch.Generator().manual_seed(seed))
    opt = state.get("opt")
    if opt is not None:
        for index, name in enumerate(names):
            moments = opt["state"].get(index, {})
            for key in ("exp_avg", "exp_avg_sq"):
                if key in moments and moments[key].shape != model[name].shape:
                    moments[key] = _pad_like(moments[key], model[name].shape)
    config = {**state["config"], "model": {**state["config"]["model"], "mult": mult}}
    config["changes"] = [*config.get("changes", []), {"step": int(state["step"]), "model": {"mult": mult}}]
    return {**state, "model": model, "config": config}


def deepen(state: dict[str, Any], tail_blocks: int, seed: int) -> dict[str, Any]:
    """A vocoder checkpoint with ``tail_blocks`` silent-at-first tail blocks (``models.deepen_vocoder``); its
    optimiser gets the new parameters (after the old ones, with no moments yet) and the change is recorded."""
    old = VocoderConfig(**state["config"]["model"])
    model = deepen_vocoder(state["model"], old, tail_blocks, seed)
    new = StudentVocoder(VocoderConfig(**{**state["config"]["model"], "tail_blocks": tail_blocks}))
    opt = state.get("opt")
    if opt is not None:
        (group,) = opt["param_groups"]
        count = sum(1 for _ in new.parameters())
        opt = {**opt, "param_groups": [{**group, "params": list(range(count))}]}
    config = {**state["config"], "model": {**state["config"]["model"], "tail_blocks": tail_blocks}}
    config["changes"] = [*config.get("changes", []), {"step": int(state["step"]), "model": {"tail_blocks": tail_blocks}}]
    return {**state, "model": model, "config": config, **({"opt": opt} if opt is not None else {})}


def subframed(state: dict[str, Any], subframes: int) -> dict[str, Any]:
    """A vocoder checkpoint whose head emits ``subframes`` spectra per latent frame (``models.split_head``), the
    change recorded; its optimiser is dropped (the head's moments have no counterpart), so training restarts it."""
    old = VocoderConfig(**state["config"]["model"])
    model = split_head(state["model"], old, subframes)
    config = {**state["config"], "model": {**state["config"]["model"], "subframes": subframes}}
    config["changes"] = [*config.get("changes", []), {"step": int(state["step"]), "model": {"subframes": subframes}}]
    return {**{k: v for k, v in state.items() if k != "opt"}, "model": model, "config": config}


def _reshape(state: dict[str, Any], widen_mult: int | None, tail_blocks: int | None, seed: int,
             subframes: int | None = None) -> dict[str, Any]:
    """The checkpoint widened, deepened and/or given a subframed head as asked (each only when not already so)."""
    model = state["config"]["model"]
    if widen_mult is not None and model.get("mult", widen_mult) < widen_mult:
        state = widen(state, widen_mult, seed)
    if tail_blocks is not None and model.get("tail_blocks", 0) < tail_blocks:
        state = deepen(state, tail_blocks, seed)
    if subframes is not None and model.get("subframes", 1) != subframes:
        state = subframed(state, subframes)
    if state["config"]["model"] != model:  # an average of the old shape restarts from the reshaped weights
        state = {k: v for k, v in state.items() if k != "ema"}
    return state


AddedResolutions = tuple[tuple[tuple[int, int], ...], int]
"""``train``'s ``add_resolutions``: (n_fft, hop) of each resolution discriminator to add, and warmup steps."""


def _restore(cfg: TrainConfig, ckpt_path: Path, resume: bool, extend_lr: float | None,
             gan_set: dict[str, float] | None = None, widen_mult: int | None = None,
             aligned: tuple[float, str] | None = None, phase_lr: float | None = None,
             tail_blocks: int | None = None, ema: float | None = None,
             disc: tuple[int, int] | None = None, pairs: dict[str, str] | None = None,
             batch: int | None = None, subframes: int | None = None,
             add_resolutions: AddedResolutions | None = None) -> tuple[TrainConfig, dict[str, Any] | None]:
    """The run's config and the checkpoint to continue from (None to start afresh); makes the run's directory."""
    ckpt_path.parent.mkdir(parents=True, exist_ok=True)
    if not (resume and ckpt_path.exists()):
        if aligned:
            cfg = TrainConfig(**{**asdict(cfg), "aligned_fraction": aligned[0], "aligned_acoustic": aligned[1]})
        cfg = TrainConfig(**{**asdict(cfg), "pairs": pairs or {}, "batch": batch or cfg.batch})
        if subframes is not None:  # a fresh vocoder with that head from the start
            cfg = TrainConfig(**{**asdict(cfg), "model": {**cfg.model, "subframes": subframes}})
        return replace_gan(TrainConfig(**{**asdict(cfg), "ema": ema or cfg.ema}), gan_set), None
    state = torch.load(ckpt_path, map_location="cpu", weights_only=False)
    state = _reshape(state, widen_mult, tail_blocks, cfg.seed, subframes)
    step = int(state["step"])
    here = {"threads": cfg.threads, "ckpt_every": cfg.ckpt_every}  # this run's, not the results': not kept
    if phase_lr is not None:
        resumed = {**new_phase(state["config"], step, cfg.steps, phase_lr), **here}
    else:
        resumed = {**extend(state["config"], cfg.steps, extend_lr), **here}
    if aligned is not None:
        saved = (resumed.get("aligned_fraction", 0.0), resumed.get("aligned_acoustic", ""))
        if saved != aligned:
            resumed.update(aligned_fraction=aligned[0], aligned_acoustic=aligned[1])
            change = {"fraction": aligned[0], "acoustic": aligned[1]}
            resumed["changes"] = [*resumed.get("changes", []), {"step": step, "aligned": change}]
    elif resumed.get("aligned_fraction", 0.0) > 0 and not (pairs or resumed.get("pairs")):
        raise ValueError(f"{ckpt_path} trains on aligned latents (acoustic weights {resumed['aligned_acoustic']}): "
                         "give --aligned-fraction and --aligned-acoustic to resume it")
    if cfg.adversarial and not resumed.get("adversarial"):  # turning a spectral-loss run adversarial from here
        resumed.update(adversarial=True, gan=cfg.gan or asdict(GanConfig()))
    if gan_set:
        gan = asdict(gan_config(resumed.get("gan")))
        if any(gan[k] != v for k, v in gan_set.items()):
            resumed["gan"] = {**gan, **gan_set}
            resumed["changes"] = [*resumed.get("changes", []), {"step": int(state["step"]), "gan": gan_set}]
    if ema is not None and resumed.get("ema", 0.0) != ema:
        resumed["ema"] = ema
        resumed["changes"] = [*resumed.get("changes", []), {"step": step, "ema": ema}]
    if disc is not None:
        resumed, state = _widen_discriminators(resumed, state, *disc)
    if add_resolutions is not None:
        resumed, state = _add_resolutions(resumed, state, *add_resolutions)
    _switch_pairs(resumed, step, pairs, aligned is not None, ckpt_path)
    if batch is not None and resumed["batch"] != batch:
        resumed["batch"] = batch
        resumed["changes"] = [*resumed.get("changes", []), {"step": step, "batch": batch}]
    cfg = TrainConfig(**resumed)
    log.info("resuming %s from step %d", cfg.what, state["step"])
    return cfg, state


def _switch_pairs(resumed: dict[str, Any], step: int, pairs: dict[str, str] | None, aligned: bool,
                  ckpt_path: Path) -> None:
    """Record in a resumed run's config (in place) what its pairs are from ``step`` on: ``pairs``, or none when it
    goes back to the cache on aligned latents; refuse a pairs run resumed on neither."""
    if pairs is None and resumed.get("pairs"):
        if not aligned:
            raise ValueError(f"{ckpt_path} trains on pairs made by the teacher's decoder ({resumed['pairs']}): give "
                             "--pairs to resume it")
        pairs = {}
    if pairs is not None and resumed.get("pairs", {}) != pairs:
        resumed["pairs"] = pairs
        resumed["changes"] = [*resumed.get("changes", []), {"step": step, "pairs": pairs}]


def _widen_discriminators(resumed: dict[str, Any], state: dict[str, Any], width: int,
                          warmup: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """An adversarial run's config and checkpoint with discriminators ``width`` times as wide, started afresh (their
    weights and optimiser dropped) and trained alone for ``warmup`` steps; unchanged when already that wide."""
    if not resumed.get("adversarial"):
        raise ValueError("--disc-width widens an adversarial run's discriminators: give --adversarial")
    gan = asdict(gan_config(resumed.get("gan")))
    if gan["width"] == width:
        return resumed, state
    return _restart_discriminators(resumed, state, gan, {"width": width}, warmup, ("disc", "opt_d"))


def _add_resolutions(resumed: dict[str, Any], state: dict[str, Any], resolutions: tuple[tuple[int, int], ...],
                     warmup: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """An adversarial run's config and checkpoint with resolution discriminators at these (n_fft, hop) added after
    its own, started afresh and trained alone (the generator held) for ``warmup`` steps; the trained ones are kept,
    their optimiser's moments dropped. Unchanged when it already has every one."""
    if not resumed.get("adversarial"):
        raise ValueError("--add-resolution adds a discriminator to an adversarial run: give --adversarial")
    gan = asdict(gan_config(resumed.get("gan")))
    new = [tuple(r) for r in resolutions if tuple(r) not in gan["resolutions"]]
    if not new:
        return resumed, state
    change = {"resolutions": [list(r) for r in (*gan["resolutions"], *new)]}
    return _restart_discriminators(resumed, state, gan, change, warmup, ("opt_d",))


def _restart_discriminators(resumed: dict[str, Any], state: dict[str, Any], gan: dict[str, Any],
                            change: dict[str, Any], warmup: int,
                            drop: tuple[str, ...]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The config with ``change`` to its GanConfig ``gan`` and a warmup of ``warmup`` steps from the checkpoint's
    step, recorded in ``changes``; the checkpoint without the keys in ``drop`` (what starts afresh)."""
    step = int(state["step"])
    change = {**change, "warmup_until": step + warmup}
    resumed = {**resumed, "gan": {**gan, **change}, "changes": [*resumed.get("changes", []), {"step": step, "gan": change}]}
    return resumed, {k: v for k, v in state.items() if k not in drop}


def replace_gan(cfg: TrainConfig, gan_set: dict[str, float] | None) -> TrainConfig:
    """A fresh run's config with ``gan_set`` applied to its GanConfig."""
    if not gan_set:
        return cfg
    return TrainConfig(**{**asdict(cfg), "gan": {**asdict(gan_config(cfg.gan)), **gan_set}})


def _start(
    cfg: TrainConfig, state: dict[str, Any] | None, device: torch.device = torch.device("cpu")
) -> tuple[torch.nn.Module, torch.optim.Optimizer, np.random.Generator, int, float]:
    """Seeded model (on ``device``), optimiser and data RNG, restored from ``state`` when resuming; with its step
    and seconds."""
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    model = build_model(cfg)
    if not cfg.model:
        cfg.model = asdict(model.cfg)  # type: ignore[call-overload]
    if state is not None:
        model.load_state_dict(state["model"])
    model.to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(0.8, 0.99), weight_decay=0.01)
    if state is None:
        return model, opt, rng, 0, 0.0
    if "opt" in state:  # a slim checkpoint (weights only, as kept in results/) restarts the optimiser
        opt.load_state_dict(state["opt"])
        rng.bit_generator.state = state["numpy_rng"]
        torch.set_rng_state(state["torch_rng"])
    return model, opt, rng, int(state["step"]), float(state["seconds"])


def _dataset(cfg: TrainConfig, paths: list[Path], rng: np.random.Generator,
             acoustic: StudentAcoustic | None = None,
             compensation: tuple[np.ndarray, np.ndarray] | None = None) -> VocoderData | AcousticData:
    """The cached teacher utterances as batches for the student being trained (with ``acoustic``'s aligned latents,
    carrying ``compensation`` when given, when the vocoder trains on them)."""
    from tqdm import tqdm

    items = [teacher_data.load_item(p) for p in tqdm(paths, desc="loading teacher data", mininterval=5)]
    if cfg.what != "vocoder":
        return AcousticData(items, cfg, rng)
    latents = (aligned_mod.aligned_latents(items, acoustic, compensation)
               if acoustic is not None and cfg.aligned_fraction > 0 else None)
    return VocoderData(items, cfg, rng, latents)


LossFn = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, dict[str, float]]]
Batches = VocoderData | AcousticData | teacher_pairs.PairData
"""Where a run's batches come from: the cache's pairs or sentences, or pairs made on the training device."""


class StageTeacher:
    """The teacher's decoder, whose stages a pruned time-domain student is held to (``TrainConfig.stage_weight``)."""

    def __init__(self, teacher: hifigan.HifiVocoder, keep: list[torch.Tensor], weight: float) -> None:
        self.teacher, self.keep, self.weight = teacher, keep, weight

    def to(self, device: torch.device) -> StageTeacher:
        """The teacher and the kept channels' indices moved to ``device``."""
        return StageTeacher(self.teacher.to(device), [k.to(device) for k in self.keep], self.weight)

    def __call__(self, model: torch.nn.Module, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The student's audio of ``z`` and its stages' distance to the teacher's."""
        if not isinstance(model, hifigan.HifiVocoder):
            raise ValueError(f"stage_weight needs a {hifigan.KIND} vocoder; this run's is {type(model).__name__}")
        audio, mine = model.stages(z)
        with torch.no_grad():
            _, theirs = self.teacher.stages(z)
        return audio, hifigan.stage_distance(mine, theirs, self.keep)


def _student_loss(
    model: torch.nn.Module, data: Batches, cfg: TrainConfig, loss_fn: LossFn,
    stages: StageTeacher | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """One batch's loss and its named parts (the batch moved to the model's device)."""
    device = next(model.parameters()).device
    if isinstance(data, (VocoderData, teacher_pairs.PairData)):
        z, wav = (t.to(device) for t in data.batch())
        audio, distance = stages(model, z) if stages is not None else (model(z), None)
        loss, parts = loss_fn(audio[:, cfg.context * HOP : (cfg.context + cfg.segment) * HOP], wav)
        if stages is not None and distance is not None:
            loss, parts = loss + stages.weight * distance, {**parts, "stages": distance.item()}
        return loss, parts
    assert isinstance(model, StudentAcoustic)
    _, zl, dl = acoustic_losses(model, *(t.to(device) for t in data.batch()))
    return zl + dl, {"z_l1": zl.item(), "logdur_mse": dl.item()}


def acoustic_losses(model: StudentAcoustic, ids: torch.Tensor, mask: torch.Tensor, dur: torch.Tensor,
                    z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The acoustic student's teacher-forced latents of a ``padded`` batch, their L1 to the teacher's and the
    MSE of its predicted log(1 + durations)."""
    zp, logd = model.forward_train(ids, mask, dur, z.shape[2])
    fmask = (torch.arange(z.shape[2], device=z.device)[None, :] < dur.sum(1, keepdim=True)).float()[:, None, :]
    zl = masked_l1(zp, z, fmask)
    dl = masked_mse(logd[:, None, :], torch.log1p(dur)[:, None, :], mask)
    return zp, zl, dl


def _hardware(cfg: TrainConfig, device: torch.device = torch.device("cpu")) -> str:
    """What the run trains on (stored in each checkpoint)."""
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (CUDA {torch.version.cuda})"
    cpu = next((line.split(":", 1)[1].strip() for line in _cpuinfo() if line.startswith("model name")), "")
    return f"{cpu or platform.processor() or platform.machine()}, {cfg.threads} torch thread(s)"


def _cpuinfo() -> list[str]:
    try:
        return Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines()
    except OSError:
        return []


class WeightAverage:
    """An exponential moving average of a model's weights (``TrainConfig.ema``), kept in the checkpoint as ``ema``."""

    def __init__(self, decay: float, model: torch.nn.Module, saved: dict[str, torch.Tensor] | None) -> None:
        self.decay = decay
        current = model.state_dict()
        self.weights = ({k: v.to(current[k].device) for k, v in saved.items()} if saved is not None
                        else {k: v.detach().clone() for k, v in current.items()})

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        """Move the average towards the model's current weights (integer buffers are copied)."""
        for name, value in model.state_dict().items():
            if value.is_floating_point():
                self.weights[name].mul_(self.decay).add_(value, alpha=1.0 - self.decay)
            else:
                self.weights[name].copy_(value)


def _optimise(model: torch.nn.Module, opt: torch.optim.Optimizer, data: Batches,
              cfg: TrainConfig, loss_fn: LossFn, step: int, average: WeightAverage | None = None,
              stages: StageTeacher | None = None) -> dict[str, float]:
    """One optimiser step at ``step``'s learning rate (and the weights' average moved); the loss and its parts.
    While new discriminators warm up (``GanConfig.warmup_until``) the loss updates them only."""
    for g in opt.param_groups:
        g["lr"] = _lr(cfg, step)
    loss, parts = _student_loss(model, data, cfg, loss_fn, stages)
    if step < cfg.gan.get("warmup_until", 0):
        return {"loss": loss.item(), **parts}
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
    opt.step()
    if average:
        average.update(model)
    return {"loss": loss.item(), **parts}


class _LossLog:
    """Averages the losses over ``log_every`` steps and appends them to the run's loss log (after dropping the lines
    written past ``step``, the checkpoint being resumed: they will be written again)."""

    def __init__(self, path: Path, cfg: TrainConfig, step: int) -> None:
        _truncate_log(path, step)
        self.file = path.open("a", encoding="utf-8")
        self.cfg = cfg
        self.acc: dict[str, float] = {}
        self.last: dict[str, float] = {}
        """The latest averages."""

    def add(self, step: int, parts: dict[str, float], elapsed: float) -> bool:
        """Count one step's losses; True when a line was written."""
        for k, v in parts.items():
            self.acc[k] = self.acc.get(k, 0.0) + v
        every = self.cfg.log_every
        if step % every and step != self.cfg.steps:
            return False
        n = every if step % every == 0 else step % every
        self.last, self.acc = {k: v / n for k, v in self.acc.items()}, {}
        line = {"step": step, "lr": _lr(self.cfg, step - 1), "seconds": round(elapsed, 1), **self.last}
        self.file.write(json.dumps(line) + "\n")
        self.file.flush()
        return True

    def close(self) -> None:
        self.file.close()


def _cached_paths(cache: Path | Sequence[Path]) -> list[Path]:
    """Every cached utterance of one cache directory, or of several one after another."""
    return [p for c in ([cache] if isinstance(cache, Path) else cache) for p in teacher_data.cached_paths(c)]


PRUNE_SAMPLES = 32
"""Cached utterances whose latents measure the teacher's channels' energy for ``--prune-teacher``."""


@dataclass(frozen=True)
class TeacherDecoder:
    """The teacher's decoder that a time-domain student (``hifigan.py``) is cut from and held to."""

    path: Path
    """The teacher's split ``vocoder.onnx``."""
    prune: tuple[int, ...] | None = None
    """A fresh run: start from the teacher's decoder cut to these channels per stage (``pruned_start``); ignored
    when resuming."""
    stage_weight: float = 0.0
    """A fresh pruned run: ``TrainConfig.stage_weight`` (a resumed run keeps its own)."""


def _teacher_parts(cfg: TrainConfig, state: dict[str, Any] | None, paths: list[Path], teacher: TeacherDecoder | None
                   ) -> tuple[TrainConfig, dict[str, Any] | None, StageTeacher | None, dict[str, Any]]:
    """The run's config and checkpoint (the pruned teacher's first one where a fresh run asks for it), the teacher
    whose stages the student is held to (None when ``stage_weight`` is 0) and what every checkpoint keeps of it."""
    if teacher is not None and teacher.prune is not None and state is None:
        cfg, state = pruned_start(cfg, teacher.prune, teacher.path, paths, teacher.stage_weight)
    keep = (state or {}).get("teacher_channels")
    kept = {"teacher_channels": keep} if keep is not None else {}
    if not cfg.stage_weight:
        return cfg, state, None, kept
    if teacher is None or keep is None:
        raise ValueError("stage_weight needs the teacher's vocoder.onnx and a run started with --prune-teacher")
    return cfg, state, StageTeacher(hifigan.load_teacher(teacher.path), keep, cfg.stage_weight), kept


def pruned_start(cfg: TrainConfig, channels: tuple[int, ...], teacher: Path, paths: list[Path],
                 stage_weight: float) -> tuple[TrainConfig, dict[str, Any]]:
    """A fresh time-domain vocoder run's config and first checkpoint: the teacher's decoder (``teacher``, a split
    Piper ``vocoder.onnx``) cut to ``channels`` per stage, keeping the channels with the most energy on the first
    cached utterances (``hifigan.pruned_teacher``)."""
    if cfg.what != "vocoder":
        raise ValueError(f"--prune-teacher starts a vocoder; got --what {cfg.what}")
    if not paths:
        raise ValueError("--prune-teacher measures the teacher's channels on cached utterances; the cache is empty")
    latents = [torch.from_numpy(teacher_data.load_item(p).z0[None].astype(np.float32)) for p in paths[:PRUNE_SAMPLES]]
    model, keep = hifigan.pruned_teacher(teacher, channels, latents)
    log.info("vocoder: the teacher's decoder cut to %s channels per stage (%.2fM parameters)", channels,
             _megaparams(model))
    cfg = TrainConfig(**{**asdict(cfg), "model": asdict(model.cfg), "stage_weight": stage_weight})
    return cfg, {"model": model.state_dict(), "step": 0, "seconds": 0.0, "teacher_channels": keep}


@dataclass(frozen=True)
class PairSource:
    """What a vocoder run's pairs are made from on the training device (``teacher_pairs.py``), instead of the cache."""

    utterances: Path
    """An utterance pack (``python -m jetvox.provisioning.distill.teacher_pairs --out FILE``)."""
    acoustic: Path
    """The acoustic student's checkpoint whose teacher-forced latents are the vocoder's inputs, or an exported
    acoustic model (``.onnx``, the teacher's interface) whose own latents are (``teacher_pairs.OnnxAcoustic``)."""
    teacher: Path
    """The teacher's split ``vocoder.onnx``, whose audio of those latents is the target."""
    variance: Path | None = None
    """A compensated acoustic ONNX model (the shipped student's) whose global-variance compensation is applied to
    the latents first, as in use (``variance.py``); None: the latents as the checkpoint makes them."""


SLIM_KEYS = ("config", "step", "seconds", "utterances", "hardware", "disc", "opt_d", "gan", "teacher_channels")
"""What a started-from checkpoint passes on beside its weights (not the generator's optimiser or the RNGs)."""


def start_from(source: Path, out: Path) -> None:
    """Begin run directory ``out`` with ``source``'s weights (their average where it keeps one), config, step and
    discriminators, but a fresh optimiser: a new run that goes on from another's checkpoint, which stays as it is."""
    if not Path(source).is_file():
        raise FileNotFoundError(f"--start-from {source}: no such checkpoint")
    state = torch.load(source, map_location="cpu", weights_only=False)
    slim = {k: state[k] for k in SLIM_KEYS if k in state}
    out.mkdir(parents=True, exist_ok=True)
    _save(out / CKPT, {**slim, "model": state.get("ema", state["model"])})
    log.info("%s starts from %s at step %d (%s weights)", out, source, state["step"],
             "averaged" if "ema" in state else "last")


def _tf32(allowed: bool) -> None:
    """Let a CUDA device's matrix products and convolutions round their inputs to TensorFloat-32 (training) or not
    (the teacher's targets); cuDNN then also times its algorithms once for the run's fixed shapes."""
    torch.backends.cuda.matmul.allow_tf32 = allowed
    torch.backends.cudnn.allow_tf32 = allowed
    torch.backends.cudnn.benchmark = allowed


def _device(name: str) -> torch.device:
    """The torch device called ``name``; a clear error where torch sees no CUDA device and one is asked for."""
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} asked for, but torch {torch.__version__} sees no CUDA device")
    return dev


def _file_digest(path: Path) -> str:
    if not Path(path).is_file():
        raise FileNotFoundError(f"{path} not found (expected an ONNX model: the teacher's split vocoder.onnx, or "
                                "an exported acoustic model)")
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def _pair_data(source: PairSource, limit_items: int | None, device: torch.device, what: str
               ) -> tuple[dict[str, str], Callable[[TrainConfig, np.random.Generator], teacher_pairs.PairData]]:
    """The digests of a pair source (for the run's config) and what makes its batches once the run's config and
    data RNG are known (the pairs are made on ``device`` then); pairs train only a vocoder (``what``)."""
    if what != "vocoder":
        raise ValueError(f"pairs train a vocoder; got {what}")
    utts = teacher_pairs.load(source.utterances)
    utts = teacher_pairs.Utterances(utts.ids[:limit_items], utts.durations[:limit_items])
    acoustic: StudentAcoustic | teacher_pairs.OnnxAcoustic
    if source.acoustic.suffix == ".onnx":
        if source.variance is not None:
            raise ValueError(f"{source.acoustic} is an exported model, which carries its own compensation; "
                             "drop --pairs-variance")
        acoustic, acoustic_digest = teacher_pairs.OnnxAcoustic(source.acoustic), _file_digest(source.acoustic)
    else:
        acoustic, acoustic_digest = aligned_mod.load_acoustic(source.acoustic)
    digests = {"utterances": utts.digest(), "acoustic": acoustic_digest, "teacher": _file_digest(source.teacher)}
    comp = variance.read(source.variance) if source.variance is not None else None
    if comp is not None:
        digests["variance"] = variance.digest(comp)

    def make(cfg: TrainConfig, rng: np.random.Generator) -> teacher_pairs.PairData:
        dtype = torch.float32 if device.type == "cuda" else torch.float16  # the CPU's memory holds half
        _tf32(False)  # the targets in full float32, as the teacher's ONNX model computes them
        latents, audio = teacher_pairs.kept_pairs(
            source.utterances, teacher_pairs.pairs_key(digests, dtype, device),
            lambda: teacher_pairs.make_pairs(utts, acoustic, hifigan.load_teacher(source.teacher), device, dtype,
                                             comp),
            device)
        return teacher_pairs.PairData(latents, audio, cfg.batch, cfg.segment, cfg.context, rng)

    return digests, make


def _aligned_source(acoustic_ckpt: Path, compensated: Path | None
                    ) -> tuple[StudentAcoustic, str, tuple[np.ndarray, np.ndarray] | None]:
    """The acoustic student that makes aligned latents, the digest a run records for them (its weights', and the
    global-variance compensation's of the ``compensated`` ONNX model when given) and that compensation."""
    acoustic, digest = aligned_mod.load_acoustic(acoustic_ckpt)
    if compensated is None:
        return acoustic, digest, None
    comp = variance.read(compensated)
    return acoustic, f"{digest}+variance:{variance.digest(comp)}", comp


def train(cfg: TrainConfig, cache: Path | Sequence[Path], out: Path, resume: bool = False, max_minutes: float | None = None,
          limit_items: int | None = None, extend_lr: float | None = None,
          gan_set: dict[str, float] | None = None, widen_mult: int | None = None,
          stop_at: int | None = None, aligned: tuple[float, Path] | None = None,
          phase_lr: float | None = None, tail_blocks: int | None = None, ema: float | None = None,
          disc: tuple[int, int] | None = None, teacher: TeacherDecoder | None = None,
          pairs: PairSource | None = None, device: str = "cpu", batch: int | None = None,
          subframes: int | None = None, add_resolutions: AddedResolutions | None = None,
          aligned_variance: Path | None = None) -> dict[str, Any]:
    """Train (or continue training) one student; returns a summary (steps, seconds, last losses).

    Args:
        cfg: the run's hyper-parameters (on resume, the checkpoint's own are used, except ``steps``).
        cache: teacher-data cache directory, or several (their utterances in order, one after another).
        out: run directory for ``ckpt.pt`` and ``losses.jsonl``.
        resume: continue from ``out/ckpt.pt`` when it exists.
        max_minutes: stop (with a checkpoint) after this much wall time even if steps remain.
        limit_items: use only the first N cached utterances (tests).
        extend_lr: on resume past the checkpoint's target, the peak learning rate of the added phase
            (None continues the saved schedule stretched to ``cfg.steps``).
        gan_set: adversarial loss weights (GanConfig fields) to change from here on; recorded in ``changes``.
        widen_mult: vocoder: widen the ConvNeXt MLPs to this multiplier from here on (function-preserving,
            recorded in ``changes``, ignored when already that wide); ``tail_blocks`` likewise deepens.
        stop_at: stop (with a checkpoint) at this step; the schedule still spans ``cfg.steps``.
        aligned: vocoder: (share of segments, acoustic checkpoint) of ``aligned.py``'s latents from here on.
        phase_lr: on resume, the peak of a new learning-rate phase from here to ``cfg.steps`` (``new_phase``).
        ema: keep an average of the weights with this decay from here on (``TrainConfig.ema``).
        disc: adversarial vocoder: (width, warmup steps) of fresh, wider discriminators (``GanConfig.width``).
        teacher: time-domain vocoder: the teacher's decoder it is cut from and held to (``TeacherDecoder``).
        pairs: vocoder: make its pairs from these (``PairSource``) on ``device`` instead of reading the cache's.
        device: where to train (``cpu``, ``cuda``); checkpoints are written with their tensors on the CPU.
        batch: on resume, a new batch size from here on (recorded in ``changes``).
        subframes: vocoder, on resume: this many spectra per latent frame (``models.split_head``), as ``widen_mult``.
        add_resolutions: adversarial vocoder, on resume: resolution discriminators to add (``_add_resolutions``).
        aligned_variance: with ``aligned``: an acoustic ONNX model whose compensation those latents get (``variance``).
    """
    dev = _device(device)
    acoustic, digest, compensation = _aligned_source(aligned[1], aligned_variance) if aligned else (None, "", None)
    pair_digests, make_pairs = _pair_data(pairs, limit_items, dev, cfg.what) if pairs else (None, None)
    cfg, state = _restore(cfg, out / CKPT, resume, extend_lr, gan_set, widen_mult,
                          (aligned[0], digest) if aligned else None, phase_lr, tail_blocks, ema, disc,
                          pair_digests, batch, subframes, add_resolutions)
    paths = [] if pairs else _cached_paths(cache)[:limit_items]
    cfg, state, stages, kept = _teacher_parts(cfg, state, paths, teacher)
    stages = stages.to(dev) if stages is not None else None
    model, opt, rng, step, seconds = _start(cfg, state, dev)
    data = make_pairs(cfg, rng) if make_pairs else _dataset(cfg, paths, rng, acoustic, compensation)
    if dev.type == "cuda":
        _tf32(True)
    adversarial = AdversarialStep(gan_config(cfg.gan), state, dev) if cfg.adversarial else None
    loss_fn: LossFn = adversarial or VocoderLoss().to(dev)
    average = WeightAverage(cfg.ema, model, (state or {}).get("ema")) if cfg.ema else None
    utterances = len(data.lengths) if isinstance(data, teacher_pairs.PairData) else len(paths)
    log.info("%s: %.2fM parameters, %d utterances, steps %d..%d on %s", cfg.what, _megaparams(model), utterances, step,
             cfg.steps, _hardware(cfg, dev))
    run = _Run(cfg, model, opt, rng, data, loss_fn, average, stages, adversarial, {"utterances": utterances, **kept},
               out)
    step, seconds, last = _run_steps(run, step, seconds, min(cfg.steps, stop_at) if stop_at is not None else cfg.steps,
                                     max_minutes)
    return _summary(cfg, step, seconds, last, utterances)


@dataclass
class _Run:
    """What a run holds while it steps (``_run_steps``)."""

    cfg: TrainConfig
    model: torch.nn.Module
    opt: torch.optim.Optimizer
    rng: np.random.Generator
    data: Batches
    loss_fn: LossFn
    average: WeightAverage | None
    stages: StageTeacher | None
    adversarial: AdversarialStep | None
    extra: dict[str, Any]
    """Kept in every checkpoint beside the snapshot (utterances, the pruned teacher's channels)."""
    out: Path

    def checkpoint(self, step: int, seconds: float) -> None:
        _save(self.out / CKPT, {**_snapshot(self.cfg, self.model, self.opt, self.rng, self.average), "step": step,
                                "seconds": seconds, **(self.adversarial.state() if self.adversarial else {}),
                                **self.extra})


@dataclass
class _Stop:
    """Set by SIGTERM or SIGINT while steps run: the run checkpoints after the step under way and ends."""

    signal: str | None = None
    """The signal's name, once one came."""


@contextmanager
def stop_on_signal() -> Iterator[_Stop]:
    """SIGTERM and SIGINT end the run at the next step boundary with a checkpoint (a session or service stopped
    mid-run loses no steps) instead of at once; the previous handlers come back afterwards (main thread only)."""
    stop = _Stop()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def note(signum: int, _frame: object) -> None:
        stop.signal = signal.Signals(signum).name

    previous = {s: signal.signal(s, note) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield stop
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def _run_steps(run: _Run, step: int, seconds: float, end: int, max_minutes: float | None
               ) -> tuple[int, float, dict[str, float]]:
    """Optimiser steps from ``step`` to ``end``, until ``max_minutes`` of wall time or until SIGTERM/SIGINT,
    checkpointed every ``ckpt_every`` steps and at the end; the step reached, the seconds trained in all and the
    last logged losses."""
    with stop_on_signal() as stop:
        return _steps(run, step, seconds, end, max_minutes, stop)


def _steps(run: _Run, step: int, seconds: float, end: int, max_minutes: float | None, stop: _Stop
           ) -> tuple[int, float, dict[str, float]]:
    from tqdm import tqdm  # the training extra's; not needed to import this module

    cfg = run.cfg
    t0 = started = time.monotonic()  # t0 restarts at each checkpoint (for the seconds trained); started does not
    bar = tqdm(total=cfg.steps, initial=step, desc=f"train {cfg.what}", mininterval=10)
    losses = _LossLog(run.out / LOSS_LOG, cfg, step)
    while step < end:
        parts = _optimise(run.model, run.opt, run.data, cfg, run.loss_fn, step, run.average, run.stages)
        step += 1
        if losses.add(step, parts, seconds + time.monotonic() - t0):
            bar.set_postfix(loss=f"{losses.last['loss']:.3f}")
        bar.update(1)
        over = max_minutes is not None and time.monotonic() - started > max_minutes * 60
        if step % cfg.ckpt_every == 0 or step == end or over or stop.signal:
            seconds += time.monotonic() - t0
            t0 = time.monotonic()
            run.checkpoint(step, seconds)
        if over:
            log.info("time budget of %.1f min reached at step %d; checkpoint saved", max_minutes, step)
            break
        if stop.signal:
            log.info("%s at step %d: checkpoint saved; the same command resumes the run", stop.signal, step)
            break
    losses.close()
    bar.close()
    return step, seconds, losses.last


def _megaparams(model: torch.nn.Module) -> float:
    return sum(p.numel() for p in model.parameters()) / 1e6


def _snapshot(cfg: TrainConfig, model: torch.nn.Module, opt: torch.optim.Optimizer,
              rng: np.random.Generator, average: WeightAverage | None = None) -> dict[str, Any]:
    """The parts of a checkpoint that resume a run exactly: config, weights (and their average), optimiser and
    both RNGs."""
    device = next(model.parameters()).device
    return {"config": asdict(cfg), "model": model.state_dict(), "opt": opt.state_dict(),
            "numpy_rng": rng.bit_generator.state, "torch_rng": torch.get_rng_state(),
            "hardware": _hardware(cfg, device),
            **({"ema": average.weights} if average else {})}


def _summary(cfg: TrainConfig, step: int, seconds: float, losses: dict[str, float], utterances: int) -> dict[str, Any]:
    """What a run reports when it stops (also written to its ``summary.json``)."""
    aligned = {"aligned_fraction": cfg.aligned_fraction, "aligned_acoustic": cfg.aligned_acoustic}
    return {"what": cfg.what, "steps": step, "target_steps": cfg.steps, "seconds": round(seconds, 1),
            "losses": losses, "utterances": utterances, "seed": cfg.seed, "threads": cfg.threads, "phases": cfg.phases,
            "changes": cfg.changes, **(aligned if cfg.aligned_fraction else {}),
            **({"pairs": cfg.pairs} if cfg.pairs else {})}


def checkpoint_step(out: Path) -> int:
    """The step of the checkpoint in run directory ``out`` (0 when there is none)."""
    path = out / CKPT
    return int(torch.load(path, map_location="cpu", weights_only=False)["step"]) if path.exists() else 0


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--what", choices=("vocoder", "acoustic"), required=True)
    ap.add_argument("--steps", type=int, required=True)
    ap.add_argument("--out", type=Path, default=None, help="run directory (default: STATE/distill/runs/WHAT)")
    ap.add_argument("--resume", action="store_true", help="continue from OUT/ckpt.pt if present")
    ap.add_argument("--cache", type=Path, action="append", default=None,
                    help="teacher-data cache; repeat to train on several (default: the main one under the state dir)")
    ap.add_argument("--batch", type=int, default=None,
                    help="segments or sentences per step (default 16); on --resume, a new batch size from here on")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--threads", type=int, default=max(1, (os.cpu_count() or 1)))
    ap.add_argument("--ckpt-every", type=int, default=200)
    ap.add_argument("--extend-lr", type=float, default=None,
                    help="with --resume past the saved target: peak learning rate of a new cosine phase")
    ap.add_argument("--max-minutes", type=float, default=None, help="stop early (checkpointed) after this wall time")
    ap.add_argument("--adversarial", action="store_true",
                    help="vocoder: train against multi-period and multi-resolution discriminators from here on")
    ap.add_argument("--gan-set", action="append", default=[], metavar="KEY=VALUE",
                    help="adversarial run: change a loss weight from here on (recorded in the run's config)")
    ap.add_argument("--widen-mult", type=int, default=None, metavar="N",
                    help="vocoder, with --resume: widen each ConvNeXt MLP to N x dim (new units start silent)")
    ap.add_argument("--deepen", type=int, default=None, metavar="N",
                    help="vocoder, with --resume: N tail ConvNeXt blocks (3-frame kernel) in all (new ones start silent)")
    ap.add_argument("--subframes", type=int, default=None, choices=(2, 4),
                    help="vocoder, with --resume: a head of N inverse-STFT frames per latent frame (n_fft 1024/N) "
                         "from here on, started from the trained one")
    ap.add_argument("--stop-at", type=int, default=None, metavar="STEP",
                    help="stop (checkpointed) at this step; the learning-rate schedule still spans --steps")
    ap.add_argument("--aligned-fraction", type=float, default=None, metavar="F",
                    help="vocoder: share (0..1) of segments vocoded from the acoustic student's teacher-forced latents")
    ap.add_argument("--aligned-acoustic", type=Path, default=None, metavar="CKPT",
                    help="the acoustic student's checkpoint that makes those latents (with --aligned-fraction)")
    ap.add_argument("--aligned-variance", type=Path, default=None, metavar="ONNX",
                    help="with --aligned-fraction: apply the global-variance compensation of this acoustic model (the "
                         "student's acoustic.onnx that joe-fast shipped until the thirty-eighth session) to the "
                         "aligned latents, as the vocoder gets them in use")
    ap.add_argument("--phase-lr", type=float, default=None, metavar="LR",
                    help="with --resume: a new learning-rate phase from the checkpoint's step to --steps, peak LR")
    ap.add_argument("--ema", type=float, default=None, metavar="DECAY",
                    help="keep an exponential moving average of the weights (0 < DECAY < 1, e.g. 0.999) from here on; "
                         "the average is what gets exported")
    ap.add_argument("--disc-width", type=int, default=None, metavar="N",
                    help="adversarial vocoder, with --resume: discriminators N times as wide as the defaults from here "
                         "on, started afresh")
    ap.add_argument("--add-resolution", action="append", default=[], metavar="N_FFT:HOP",
                    help="adversarial vocoder, with --resume: add a multi-resolution discriminator looking at this "
                         "STFT (e.g. 448:112, 20 ms windows), started afresh; repeatable")
    ap.add_argument("--disc-warmup", type=int, default=200, metavar="STEPS",
                    help="with --disc-width or --add-resolution: steps in which only the discriminators train "
                         "(default 200)")
    ap.add_argument("--prune-teacher", default=None, metavar="C0,C1,...",
                    help="a fresh vocoder run: start from the teacher's HiFi-GAN decoder cut to these channels per "
                         "stage (the time-domain student, hifigan.py)")
    ap.add_argument("--stage-weight", type=float, default=0.0, metavar="W",
                    help="with --prune-teacher: hold the student's stages to the teacher decoder's kept channels")
    ap.add_argument("--from-step", type=int, default=None, metavar="STEP",
                    help="do nothing unless the run's checkpoint has reached STEP (a later stage of a recipe)")
    return _device_flags(ap)


def _device_flags(ap: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The flags of where a run trains and what it trains on there (``--pairs``, ``--device``, ``--start-from``)."""
    ap.add_argument("--pairs", type=Path, nargs=2, default=None, metavar=("PACK", "ACOUSTIC"),
                    help="vocoder: make the pairs on the training device from an utterance pack (teacher_pairs.py): "
                         "the teacher-forced latents of the acoustic student's checkpoint ACOUSTIC (or, ACOUSTIC an "
                         ".onnx, that exported model's own latents, as in use) and the teacher decoder's audio of them")
    ap.add_argument("--pairs-variance", type=Path, default=None, metavar="ONNX",
                    help="with --pairs: apply the global-variance compensation of this acoustic model (the shipped "
                         "student's acoustic.onnx) to the pairs' latents, as the vocoder gets them in use")
    ap.add_argument("--teacher-vocoder", type=Path, default=None, metavar="ONNX",
                    help="the teacher's split vocoder.onnx (default: the provisioned teacher's under the state dir)")
    ap.add_argument("--device", default="cpu", help="where to train: cpu (default) or cuda")
    ap.add_argument("--start-from", type=Path, default=None, metavar="CKPT",
                    help="with --resume, when OUT has no checkpoint yet: begin from this one's weights (its average "
                         "where kept), config and discriminators, with a fresh optimiser")
    return ap


def _check(ap: argparse.ArgumentParser, args: argparse.Namespace) -> dict[str, float]:
    """Refuse flags that do not go together, naming them; the ``--gan-set`` changes."""
    if args.widen_mult is not None and (args.what != "vocoder" or not args.resume):
        ap.error("--widen-mult widens a vocoder checkpoint: it needs --what vocoder and --resume")
    if args.subframes is not None and (args.what != "vocoder" or not args.resume):
        ap.error("--subframes changes a vocoder checkpoint's head: it needs --what vocoder and --resume")
    if args.deepen is not None and (args.what != "vocoder" or not args.resume or args.deepen < 1):
        ap.error(f"--deepen adds tail blocks to a vocoder checkpoint: it needs --what vocoder, --resume and N >= 1; "
                 f"got {args.deepen}")
    if (args.aligned_fraction is None) != (args.aligned_acoustic is None):
        ap.error("--aligned-fraction and --aligned-acoustic go together")
    if args.aligned_variance is not None and args.aligned_fraction is None:
        ap.error("--aligned-variance applies a compensation to the aligned latents: it needs --aligned-fraction")
    if args.aligned_fraction is not None and (args.what != "vocoder" or not 0.0 <= args.aligned_fraction <= 1.0):
        ap.error(f"--aligned-fraction is a vocoder's share between 0 and 1; got {args.aligned_fraction} for {args.what}")
    if args.phase_lr is not None and (not args.resume or args.phase_lr <= 0 or args.extend_lr is not None):
        ap.error("--phase-lr starts a new phase of a resumed run: it needs --resume and a positive rate, "
                 "and replaces --extend-lr")
    if args.ema is not None and not 0.0 < args.ema < 1.0:
        ap.error(f"--ema is the average's decay per step, between 0 and 1 (e.g. 0.999); got {args.ema}")
    if args.adversarial and args.what != "vocoder":
        ap.error("--adversarial trains the vocoder only")
    if args.disc_width is not None and (not (args.adversarial and args.resume) or args.disc_width < 1
                                        or args.disc_warmup < 0):
        ap.error(f"--disc-width widens a resumed adversarial run's discriminators: it needs --adversarial, --resume, "
                 f"N >= 1 and --disc-warmup >= 0; got N={args.disc_width}, warmup {args.disc_warmup}")
    if args.add_resolution:
        args.add_resolution = _resolutions(ap, args)
    if args.prune_teacher is not None:
        try:
            args.prune_teacher = tuple(int(c) for c in args.prune_teacher.split(","))
        except ValueError:
            ap.error(f"--prune-teacher expects channels per stage like 112,56,28,12; got {args.prune_teacher!r}")
        if args.what != "vocoder" or min(args.prune_teacher) < 1:
            ap.error(f"--prune-teacher starts a vocoder with positive channels; got {args.prune_teacher} for {args.what}")
    if args.pairs_variance is not None and args.pairs is None:
        ap.error("--pairs-variance applies a compensation to the pairs' latents: it needs --pairs")
    if args.pairs is not None and (args.what != "vocoder" or args.aligned_fraction is not None):
        ap.error("--pairs makes a vocoder's pairs; it replaces --aligned-fraction and needs --what vocoder")
    if args.batch is not None and args.batch < 1:
        ap.error(f"--batch is a positive number of segments or sentences; got {args.batch}")
    if args.start_from is not None and not args.resume:
        ap.error("--start-from begins a run that is then resumed: give --resume too")
    if args.device not in ("cpu", "cuda") and not args.device.startswith("cuda:"):
        ap.error(f"--device expects cpu, cuda or cuda:N; got {args.device!r}")
    if args.stage_weight < 0 or (args.stage_weight and args.prune_teacher is None):
        ap.error(f"--stage-weight is a non-negative weight given with --prune-teacher; got {args.stage_weight}")
    try:
        return gan_changes(args.gan_set)
    except ValueError as exc:
        ap.error(str(exc))


def _resolutions(ap: argparse.ArgumentParser, args: argparse.Namespace) -> tuple[tuple[int, int], ...]:
    """``--add-resolution`` values as (n_fft, hop) pairs, or a clear error."""
    if not (args.adversarial and args.resume) or args.disc_warmup < 0:
        ap.error("--add-resolution adds a discriminator to a resumed adversarial run: it needs --adversarial, "
                 f"--resume and --disc-warmup >= 0; got warmup {args.disc_warmup}")
    out = []
    for value in args.add_resolution:
        try:
            n_fft, hop = (int(v) for v in value.split(":"))
        except ValueError:
            ap.error(f"--add-resolution expects N_FFT:HOP like 448:112; got {value!r}")
        if not 16 <= n_fft <= 8192 or not 1 <= hop <= n_fft:
            ap.error(f"--add-resolution expects 16 <= N_FFT <= 8192 and 1 <= HOP <= N_FFT; got {value!r}")
        out.append((n_fft, hop))
    return tuple(out)


def main(argv: list[str] | None = None) -> None:
    ap = _parser()
    args = ap.parse_args(argv)
    gan_set = _check(ap, args)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    cache = args.cache or [teacher_data.cache_dir(default_state_dir())]
    out = args.out or runs_dir(default_state_dir()) / args.what
    cfg = TrainConfig(what=args.what, steps=args.steps, seed=args.seed, batch=args.batch or 16, lr=args.lr,
                      threads=args.threads, ckpt_every=args.ckpt_every, adversarial=args.adversarial)
    if args.start_from is not None and not (out / CKPT).exists():
        try:
            start_from(args.start_from, out)
        except FileNotFoundError as exc:
            raise SystemExit(f"train: {exc}") from None
    reached = checkpoint_step(out) if args.resume else 0
    if args.from_step is not None and reached < args.from_step:
        log.info("%s is at step %d, not yet at %d: this stage waits (run again after the earlier one)",
                 out, reached, args.from_step)
        return
    if args.stop_at is not None and reached >= args.stop_at:
        log.info("%s is at step %d, past this stage's end (%d): nothing to do", out, reached, args.stop_at)
        return
    aligned = (args.aligned_fraction, args.aligned_acoustic) if args.aligned_fraction is not None else None
    teacher_vocoder = args.teacher_vocoder or teacher_data.teacher_dir(default_state_dir()) / "vocoder.onnx"
    pairs = (PairSource(args.pairs[0], args.pairs[1], teacher_vocoder, args.pairs_variance)
             if args.pairs is not None else None)
    try:
        summary = train(cfg, cache, out, args.resume, args.max_minutes, extend_lr=args.extend_lr, gan_set=gan_set,
                        widen_mult=args.widen_mult, stop_at=args.stop_at, aligned=aligned, phase_lr=args.phase_lr,
                        tail_blocks=args.deepen, ema=args.ema,
                        disc=(args.disc_width, args.disc_warmup) if args.disc_width is not None else None,
                        teacher=TeacherDecoder(teacher_vocoder, args.prune_teacher, args.stage_weight),
                        pairs=pairs, device=args.device, batch=args.batch if args.resume else None,
                        subframes=args.subframes,
                        add_resolutions=(args.add_resolution, args.disc_warmup) if args.add_resolution else None,
                        aligned_variance=args.aligned_variance)
    except (FileNotFoundError, ValueError) as exc:
        raise SystemExit(f"train: {exc}") from None
    if args.resume and summary["steps"] == reached and (out / "summary.json").is_file():
        # a recipe run again at its target: the summary of the steps that were trained stays (it used to be
        # replaced by one with no losses)
        log.info("%s was at step %d already (--steps %d): nothing trained; its summary is kept", out, reached,
                 args.steps)
        return
    (out / "summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    log.info("done: %s", summary)


if __name__ == "__main__":
    main()
