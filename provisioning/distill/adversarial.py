"""Adversarial training of the student vocoder: multi-period and multi-resolution discriminators, feature matching."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils import parametrizations

from jetvox.provisioning.distill.losses import VocoderLoss


@dataclass(frozen=True)
class GanConfig:
    """Discriminators and loss weights (stored in the checkpoint)."""

    periods: tuple[int, ...] = (2, 3, 5, 7, 11)
    """Multi-period discriminator: the audio folded by each period (HiFi-GAN)."""
    period_channels: tuple[int, ...] = (16, 32, 64, 128)
    """Channels of each period discriminator's strided 2-D convolutions (HiFi-GAN's are 32..1024: a CPU budget)."""
    resolutions: tuple[tuple[int, int], ...] = ((512, 128), (1024, 256), (2048, 512))
    """Multi-resolution discriminator: (n_fft, hop) of each STFT magnitude it looks at (UnivNet, Vocos)."""
    resolution_channels: int = 16
    """Channels of each resolution discriminator (Vocos uses 32: a CPU budget)."""
    adv_weight: float = 1.0
    """Least-squares adversarial loss of the generator, summed over the discriminators (as HiFi-GAN and Vocos)."""
    fm_weight: float = 2.0
    """Feature matching: L1 between the discriminators' feature maps of teacher and student audio, summed over
    discriminators and layers."""
    recon_weight: float = 6.0
    """The spectral reconstruction loss (``VocoderLoss``: mel, multi-resolution STFT, complex, waveform; about
    2.3 at the shipped checkpoint, so about 14 weighted, HiFi-GAN's mel share against its adversarial terms)."""
    disc_lr: float = 2e-4
    """Discriminators' AdamW learning rate (constant)."""
    mel_weight: float = 1.0
    """Weight of the log-mel L1 inside the reconstruction loss."""
    mrstft_weight: float = 1.0
    """Weight of the multi-resolution STFT (spectral convergence + log magnitude) inside the reconstruction loss."""
    complex_weight: float = 1.0
    """Weight of the compressed complex-spectrum distance (phase-aware) inside the reconstruction loss."""
    wav_weight: float = 0.5
    """Weight of the waveform L1 inside the reconstruction loss."""
    phase_weight: float = 0.0
    """Weight of the phase-derivative distance (``losses.phase_derivative_distance``: instantaneous frequency and
    group delay, not absolute phase) inside the reconstruction loss; 0: not computed."""
    mel_fine_weight: float = 0.0
    """Weight of a log-power mel L1 at about 20 ms windows and 120 bands up to 8 kHz (``losses.FINE_MEL``, the
    time and frequency resolution DNSMOS and ASR front ends look at) inside the reconstruction loss; 0: not computed."""
    width: int = 1
    """Multiplier on ``period_channels`` and ``resolution_channels`` (``train --disc-width``: wider discriminators
    started afresh part-way through a run)."""
    warmup_until: int = 0
    """Until this step only the discriminators train (the generator is held), so that ones started afresh by a
    widening judge it before it learns from them."""


def _norm(conv: nn.Module) -> nn.Module:
    return parametrizations.weight_norm(conv)


def _stack(convs: nn.ModuleList, post: nn.Module, h: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Leaky-ReLU convolutions then the score layer: (flattened scores, every feature map)."""
    feats = []
    for conv in convs:
        h = F.leaky_relu(conv(h), 0.1)
        feats.append(h)
    h = post(h)
    feats.append(h)
    return h.flatten(1), feats


class PeriodDiscriminator(nn.Module):
    """Audio [B, T] folded to [B, 1, T / p, p], then 2-D convolutions strided along time only."""

    def __init__(self, period: int, channels: tuple[int, ...]) -> None:
        super().__init__()
        self.period = period
        chans = (1, *channels)
        self.convs = nn.ModuleList(
            _norm(nn.Conv2d(a, b, (5, 1), (3, 1), padding=(2, 0))) for a, b in zip(chans[:-1], chans[1:])
        )
        self.post = _norm(nn.Conv2d(chans[-1], 1, (3, 1), padding=(1, 0)))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        b, t = x.shape
        pad = (-t) % self.period
        x = F.pad(x, (0, pad), mode="reflect") if pad else x
        return _stack(self.convs, self.post, x.view(b, 1, -1, self.period))


class ResolutionDiscriminator(nn.Module):
    """Log STFT magnitude [B, 1, frames, bins] through 2-D convolutions (strided along frequency)."""

    def __init__(self, n_fft: int, hop: int, channels: int) -> None:
        super().__init__()
        self.n_fft, self.hop = n_fft, hop
        self.window: torch.Tensor
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)
        c = channels
        self.convs = nn.ModuleList([  # every layer but the last halves the frequency axis
            _norm(nn.Conv2d(1, c, (3, 9), (1, 2), padding=(1, 4))),
            _norm(nn.Conv2d(c, c, (3, 9), (1, 2), padding=(1, 4))),
            _norm(nn.Conv2d(c, c, (3, 9), (1, 2), padding=(1, 4))),
            _norm(nn.Conv2d(c, c, (3, 3), padding=(1, 1))),
        ])
        self.post = _norm(nn.Conv2d(c, 1, (3, 3), padding=(1, 1)))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        spec = torch.stft(x, self.n_fft, self.hop, window=self.window, center=True, return_complex=True)
        return _stack(self.convs, self.post, torch.log(spec.abs().clamp_min(1e-5)).transpose(1, 2)[:, None])


class Discriminators(nn.Module):
    """Every period and resolution discriminator; scores and feature maps per discriminator."""

    def __init__(self, cfg: GanConfig = GanConfig()) -> None:
        super().__init__()
        self.cfg = cfg
        self.members = nn.ModuleList(
            [PeriodDiscriminator(p, tuple(c * cfg.width for c in cfg.period_channels)) for p in cfg.periods]
            + [ResolutionDiscriminator(n, h, cfg.resolution_channels * cfg.width) for n, h in cfg.resolutions]
        )

    def forward(self, x: torch.Tensor) -> list[tuple[torch.Tensor, list[torch.Tensor]]]:
        return [d(x) for d in self.members]


def discriminator_loss(real: list[tuple[torch.Tensor, list[torch.Tensor]]],
                       fake: list[tuple[torch.Tensor, list[torch.Tensor]]]) -> torch.Tensor:
    """Least-squares GAN: real scores to 1, fake to 0, summed over discriminators."""
    return torch.stack([torch.mean((1 - r) ** 2) + torch.mean(f**2) for (r, _), (f, _) in zip(real, fake)]).sum()


def generator_losses(real: list[tuple[torch.Tensor, list[torch.Tensor]]],
                     fake: list[tuple[torch.Tensor, list[torch.Tensor]]]) -> tuple[torch.Tensor, torch.Tensor]:
    """(adversarial, feature matching): fake scores to 1; L1 of every feature map to the teacher's (detached).

    Both are summed over the discriminators (and feature matching over their layers), as HiFi-GAN does.
    """
    adv = torch.stack([torch.mean((1 - f) ** 2) for f, _ in fake]).sum()
    fm = torch.stack([
        torch.stack([F.l1_loss(ff, rf.detach()) for ff, rf in zip(f_feats, r_feats)]).sum()
        for (_, r_feats), (_, f_feats) in zip(real, fake)
    ]).sum()
    return adv, fm


def _load_members(disc: Discriminators, saved: dict[str, torch.Tensor]) -> None:
    """Load saved discriminators into ``disc``; members past the saved ones (resolutions added on a resume) keep
    their fresh weights. Anything else that does not match is an error."""
    kept = len({k.split(".")[1] for k in saved})
    own = disc.state_dict()
    wrong = [k for k, v in saved.items() if k not in own or own[k].shape != v.shape]
    wrong += [k for k in own if k not in saved and int(k.split(".")[1]) < kept]
    if wrong:
        raise ValueError(f"saved discriminators do not match the run's GanConfig: {', '.join(wrong[:4])}")
    disc.load_state_dict(saved, strict=False)


class AdversarialStep:
    """One training step of generator and discriminators (the discriminators first, on detached audio)."""

    def __init__(self, cfg: GanConfig, state: dict[str, Any] | None = None,
                 device: torch.device = torch.device("cpu")) -> None:
        self.cfg = cfg
        self.disc = Discriminators(cfg)
        if state is not None and "disc" in state:  # resuming an adversarial run (else it starts now)
            _load_members(self.disc, state["disc"])
        self.disc.to(device)
        self.opt = torch.optim.AdamW(self.disc.parameters(), lr=cfg.disc_lr, betas=(0.8, 0.99), weight_decay=0.01)
        if state is not None and "opt_d" in state:  # a slim checkpoint keeps the discriminators but not their moments
            self.opt.load_state_dict(state["opt_d"])
        self.recon = VocoderLoss(cfg.mel_weight, cfg.mrstft_weight, cfg.complex_weight, cfg.wav_weight,
                                 cfg.phase_weight, cfg.mel_fine_weight).to(device)

    def __call__(self, pred: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        """The generator's loss (to backpropagate) and named parts; updates the discriminators itself."""
        d_loss = discriminator_loss(self.disc(target), self.disc(pred.detach()))
        self.opt.zero_grad(set_to_none=True)
        d_loss.backward()
        torch.nn.utils.clip_grad_norm_(self.disc.parameters(), 5.0)
        self.opt.step()
        recon, parts = self.recon(pred, target)
        with torch.no_grad():  # the teacher's feature maps are targets only: no graph for them
            real = self.disc(target)
        adv, fm = generator_losses(real, self.disc(pred))
        c = self.cfg
        total = c.recon_weight * recon + c.adv_weight * adv + c.fm_weight * fm
        return total, {**parts, "recon": float(recon.detach()), "adv": float(adv.detach()), "fm": float(fm.detach()),
                       "disc": float(d_loss.detach())}

    def state(self) -> dict[str, Any]:
        return {"disc": self.disc.state_dict(), "opt_d": self.opt.state_dict(), "gan": asdict(self.cfg)}


def gan_config(data: dict[str, Any] | None) -> GanConfig:
    """A GanConfig from its stored dict (tuples restored), or the defaults."""
    if not data:
        return GanConfig()
    d = {**asdict(GanConfig()), **data}  # runs saved before a field existed get its default
    for key in ("periods", "period_channels"):
        d[key] = tuple(d[key])
    d["resolutions"] = tuple(tuple(r) for r in d["resolutions"])
    return GanConfig(**d)
