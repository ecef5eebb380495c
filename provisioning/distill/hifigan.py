"""The time-domain student vocoder: the teacher's HiFi-GAN decoder with fewer channels, started from its own weights."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, cast

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from torch import nn
from torch.nn import functional as F

KIND = "hifigan"
"""``model["kind"]`` of a checkpoint holding this vocoder (the Vocos-style ``StudentVocoder`` has none)."""
PREFIX = "dec."
"""Name prefix of the decoder's weights in a Piper (VITS) model, kept by ``provisioning.split``."""


@dataclass(frozen=True)
class HifiConfig:
    """Shape of a HiFi-GAN generator with "type 2" residual blocks (Piper's medium voices)."""

    channels: tuple[int, ...] = (112, 56, 28, 12)
    """Channels after the input convolution and after each upsampling (one more than ``rates``)."""
    rates: tuple[int, ...] = (8, 8, 4)
    """Upsampling factor of each transposed convolution (their product is the hop, 256)."""
    up_kernels: tuple[int, ...] = (16, 16, 8)
    """Kernel of each transposed convolution."""
    res_kernels: tuple[int, ...] = (3, 5, 7)
    """Kernel of each residual block of a stage (the blocks' outputs are averaged)."""
    res_dilations: tuple[tuple[int, ...], ...] = ((1, 2), (2, 6), (3, 12))
    """Dilations of each residual block's convolutions (one convolution per dilation)."""
    kind: str = KIND
    """Tells this vocoder's checkpoints from the Vocos-style student's."""

    def receptive_frames(self) -> int:
        """Frames either side of a frame that can change its audio (rounded up)."""
        samples_per_step = np.cumprod((1, *self.rates))  # input frame, then each stage's sample, in stage units
        hop = int(samples_per_step[-1])
        reach = 3 * hop  # the input convolution (kernel 7), in output samples
        for stage, (rate, kernel) in enumerate(zip(self.rates, self.up_kernels)):
            unit = hop // int(samples_per_step[stage + 1])  # output samples per sample of this stage
            reach += ((kernel - rate) // 2 + rate) * unit  # the transposed convolution's overhang
            reach += max(sum(d * (k - 1) // 2 for d in dils)
                         for k, dils in zip(self.res_kernels, self.res_dilations)) * unit
        reach += 3  # the output convolution (kernel 7)
        return -(-reach // hop)


def hifi_config(model: dict[str, Any]) -> HifiConfig:
    """A HifiConfig from its dict form (lists, as a checkpoint or JSON holds them, back to tuples)."""
    known = set(HifiConfig.__dataclass_fields__)
    if set(model) - known:
        raise ValueError(f"unknown {KIND} vocoder setting(s) {sorted(set(model) - known)}; known: {sorted(known)}")
    d = HifiConfig()
    return HifiConfig(
        channels=tuple(int(c) for c in model.get("channels", d.channels)),
        rates=tuple(int(c) for c in model.get("rates", d.rates)),
        up_kernels=tuple(int(c) for c in model.get("up_kernels", d.up_kernels)),
        res_kernels=tuple(int(c) for c in model.get("res_kernels", d.res_kernels)),
        res_dilations=tuple(tuple(int(x) for x in ds) for ds in model.get("res_dilations", d.res_dilations)),
    )


class DilatedResBlock(nn.Module):
    """x + conv(leaky_relu(x)) once per dilation (HiFi-GAN's "ResBlock2")."""

    def __init__(self, channels: int, kernel: int, dilations: tuple[int, ...]) -> None:
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv1d(channels, channels, kernel, dilation=d, padding=d * (kernel - 1) // 2)
                                   for d in dilations)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv in self.convs:
            x = x + conv(F.leaky_relu(x, 0.1))
        return x


class HifiVocoder(nn.Module):
    """Latent frames z [B, 192, T] to audio [B, T * 256] by transposed convolutions and dilated residual blocks."""

    def __init__(self, cfg: HifiConfig = HifiConfig()) -> None:
        super().__init__()
        self.cfg = cfg
        ch = cfg.channels
        if len(ch) != len(cfg.rates) + 1 or len(cfg.up_kernels) != len(cfg.rates):
            raise ValueError(f"HifiConfig: {len(cfg.rates)} rates need {len(cfg.rates) + 1} channels and "
                             f"{len(cfg.rates)} kernels; got {len(ch)} and {len(cfg.up_kernels)}")
        self.pre = nn.Conv1d(192, ch[0], 7, padding=3)
        self.ups = nn.ModuleList(nn.ConvTranspose1d(ch[i], ch[i + 1], k, r, padding=(k - r) // 2)
                                 for i, (r, k) in enumerate(zip(cfg.rates, cfg.up_kernels)))
        self.res = nn.ModuleList(
            nn.ModuleList(DilatedResBlock(ch[i + 1], k, d) for k, d in zip(cfg.res_kernels, cfg.res_dilations))
            for i in range(len(cfg.rates)))
        self.post = nn.Conv1d(ch[-1], 1, 7, padding=3, bias=False)

    def stages(self, z: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Audio [B, samples] and each stage's output (the input convolution's, then each upsampling stage's)."""
        x = self.pre(z)
        out = [x]
        for up, blocks in zip(self.ups, self.res):
            x = up(F.leaky_relu(x, 0.1))
            parts = [b(x) for b in cast(nn.ModuleList, blocks)]
            total = parts[0]
            for part in parts[1:]:
                total = total + part
            x = total / len(parts)
            out.append(x)
        return torch.tanh(self.post(F.leaky_relu(x, 0.01)))[:, 0], out

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.stages(z)[0]


def _attrs(node: onnx.NodeProto) -> dict[str, Any]:
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def teacher_decoder(path: Path) -> tuple[HifiConfig, dict[str, torch.Tensor]]:
    """The shape and weights (in HifiVocoder's names) of the HiFi-GAN decoder in a Piper vocoder ONNX file.

    Args:
        path: ``vocoder.onnx`` of a split Piper voice (its weights named ``dec.*``, as Piper exports them).
    """
    model = onnx.load(str(path))
    w = {i.name[len(PREFIX):]: torch.from_numpy(numpy_helper.to_array(i).copy())
         for i in model.graph.initializer if i.name.startswith(PREFIX)}
    by_weight = {n.input[1][len(PREFIX):]: _attrs(n) for n in model.graph.node
                 if n.op_type in ("Conv", "ConvTranspose") and len(n.input) > 1 and n.input[1].startswith(PREFIX)}
    ups = sorted(int(k.split(".")[1]) for k in w if k.startswith("ups.") and k.endswith(".weight"))
    blocks = sorted({int(k.split(".")[1]) for k in w if k.startswith("resblocks.")})
    if not ups or "conv_pre.weight" not in w or "conv_post.weight" not in w or len(blocks) % len(ups):
        raise ValueError(f"{path}: expected a Piper HiFi-GAN decoder (dec.conv_pre, dec.ups.N, dec.resblocks.N, "
                         f"dec.conv_post); found weights {sorted(w)[:8]}...")
    per_stage = len(blocks) // len(ups)
    res_kernels, res_dilations = [], []
    for j in range(per_stage):
        convs = sorted(int(k.split(".")[3]) for k in w if k.startswith(f"resblocks.{j}.convs.") and k.endswith("weight"))
        res_kernels.append(int(w[f"resblocks.{j}.convs.0.weight"].shape[2]))
        res_dilations.append(tuple(int(by_weight[f"resblocks.{j}.convs.{c}.weight"].get("dilations", [1])[0])
                                   for c in convs))
    cfg = HifiConfig(
        channels=(int(w["conv_pre.weight"].shape[0]), *(int(w[f"ups.{i}.weight"].shape[1]) for i in ups)),
        rates=tuple(int(by_weight[f"ups.{i}.weight"]["strides"][0]) for i in ups),
        up_kernels=tuple(int(w[f"ups.{i}.weight"].shape[2]) for i in ups),
        res_kernels=tuple(res_kernels), res_dilations=tuple(res_dilations))
    state = {"pre.weight": w["conv_pre.weight"], "pre.bias": w["conv_pre.bias"], "post.weight": w["conv_post.weight"]}
    for i in ups:
        state[f"ups.{i}.weight"], state[f"ups.{i}.bias"] = w[f"ups.{i}.weight"], w[f"ups.{i}.bias"]
        for j in range(per_stage):
            for key, value in w.items():
                if key.startswith(f"resblocks.{i * per_stage + j}.convs."):
                    state[f"res.{i}.{j}.convs." + key.split(".convs.", 1)[1]] = value
    return cfg, state


def load_teacher(path: Path) -> HifiVocoder:
    """The teacher's decoder as a HifiVocoder (eval mode, no gradients)."""
    cfg, state = teacher_decoder(path)
    model = HifiVocoder(cfg)
    model.load_state_dict(state)
    for p in model.parameters():
        p.requires_grad_(False)
    return model.eval()


@torch.no_grad()
def stage_energy(model: HifiVocoder, batches: list[torch.Tensor]) -> list[torch.Tensor]:
    """Mean square of each channel of each stage's output over ``batches`` of latents."""
    total: list[torch.Tensor] = []
    for z in batches:
        _, outs = model.stages(z)
        energy = [o.pow(2).mean((0, 2)) for o in outs]
        total = energy if not total else [a + b for a, b in zip(total, energy)]
    return [t / len(batches) for t in total]


def kept_channels(energy: list[torch.Tensor], channels: tuple[int, ...]) -> list[torch.Tensor]:
    """Indices (ascending) of the ``channels[i]`` most energetic channels of each stage."""
    if len(energy) != len(channels) or any(c > len(e) or c < 1 for e, c in zip(energy, channels)):
        raise ValueError(f"channels {channels} must keep 1..N of each stage's {[len(e) for e in energy]}")
    return [torch.sort(torch.argsort(e, descending=True)[:c]).values for e, c in zip(energy, channels)]


def pruned_state(state: dict[str, torch.Tensor], keep: list[torch.Tensor]) -> dict[str, torch.Tensor]:
    """The weights of a HifiVocoder cut down to the ``keep`` channels of each stage (every other weight dropped)."""
    out = {}
    for key, w in state.items():
        part = key.split(".")
        if part[0] == "pre":
            w = w[keep[0]]
        elif part[0] == "ups":  # ConvTranspose1d weight: [in, out, k]
            i = int(part[1])
            w = w[keep[i]][:, keep[i + 1]] if part[-1] == "weight" else w[keep[i + 1]]
        elif part[0] == "res":
            i = int(part[1])
            w = w[keep[i + 1]][:, keep[i + 1]] if part[-1] == "weight" else w[keep[i + 1]]
        elif part[0] == "post":
            w = w[:, keep[-1]]
        out[key] = w.clone()
    return out


def pruned_teacher(path: Path, channels: tuple[int, ...], latents: list[torch.Tensor]) -> tuple[HifiVocoder, list[torch.Tensor]]:
    """A HifiVocoder with ``channels`` per stage, its weights the teacher's on the channels that carry the most
    energy on ``latents``; with the kept indices (to compare its stages with the teacher's).

    Args:
        path: the teacher's ``vocoder.onnx``.
        channels: the student's channels per stage (at most the teacher's).
        latents: batches of latent frames [B, 192, T] to measure the channels' energy on.
    """
    teacher = load_teacher(path)
    keep = kept_channels(stage_energy(teacher, latents), channels)
    student = HifiVocoder(replace(teacher.cfg, channels=tuple(channels)))
    student.load_state_dict(pruned_state(teacher.state_dict(), keep))
    return student, keep


def stage_distance(student: list[torch.Tensor], teacher: list[torch.Tensor], keep: list[torch.Tensor]) -> torch.Tensor:
    """Mean over stages of the student's squared error to the teacher's kept channels, relative to their energy."""
    parts = [F.mse_loss(s, t[:, k]) / t[:, k].pow(2).mean().clamp_min(1e-8) for s, t, k in zip(student, teacher, keep)]
    return torch.stack(parts).mean()
