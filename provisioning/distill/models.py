"""The student networks: a Vocos-style vocoder with an ONNX-exportable inverse STFT, and a flow-free acoustic model."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.nn import functional as F

HOP = 256
N_FFT = 1024
LATENT = 192
TAIL_KERNEL = 3


@dataclass(frozen=True)
class VocoderConfig:
    """Size of the student vocoder."""

    dim: int = 256
    """Channels of the frame-rate backbone."""
    blocks: int = 4
    """ConvNeXt blocks (each sees 3 frames either side)."""
    mult: int = 3
    """Width multiplier inside a ConvNeXt block."""
    in_kernel: int = 3
    """Kernel of the input convolution."""
    tail_blocks: int = 0
    """ConvNeXt blocks with a 3-frame kernel after ``blocks`` (each sees 1 frame either side), added to a
    trained vocoder by ``deepen_vocoder``."""
    subframes: int = 1
    """Inverse-STFT frames per latent frame: 1 (n_fft 1024, hop 256), 2 (512, 128) or 4 (256, 64). More gives
    shorter windows, so finer time structure within a latent frame, from a head of about the same size (its outputs
    are ``subframes`` spectra of ``n_fft / 2 + 1`` bins); ``split_head`` turns a trained vocoder's head into one."""

    def __post_init__(self) -> None:
        if self.subframes not in (1, 2, 4):
            raise ValueError(f"subframes must be 1, 2 or 4 (n_fft 1024, 512 or 256); got {self.subframes}")

    @property
    def n_fft(self) -> int:
        """The inverse STFT's window."""
        return N_FFT // self.subframes

    @property
    def hop(self) -> int:
        """The inverse STFT's hop (a quarter of its window)."""
        return HOP // self.subframes

    def receptive_frames(self) -> int:
        """Frames either side of a frame that can change its audio (backbone plus the iSTFT's overlap)."""
        overlap = -(-((self.n_fft // self.hop) // 2) // self.subframes)  # in latent frames, rounded up
        return (self.in_kernel // 2) + 3 * self.blocks + self.tail_blocks + overlap


@dataclass(frozen=True)
class AcousticConfig:
    """Size of the student acoustic model."""

    vocab: int = 256
    """Phoneme id vocabulary (ids must be below it)."""
    dim: int = 128
    """Channels of encoder and decoder."""
    enc_layers: int = 4
    """Convolution blocks at phoneme rate."""
    dec_dilations: tuple[int, ...] = (1, 2, 4, 1, 2, 4)
    """Dilations of the decoder's frame-rate convolution blocks."""


class ConvNeXt(nn.Module):
    """Depthwise conv, LayerNorm over channels, pointwise MLP, layer scale, residual."""

    def __init__(self, dim: int, mult: int, kernel: int = 7) -> None:
        super().__init__()
        self.dw = nn.Conv1d(dim, dim, kernel, padding=kernel // 2, groups=dim)
        self.norm = nn.LayerNorm(dim)
        self.pw1 = nn.Linear(dim, dim * mult)
        self.pw2 = nn.Linear(dim * mult, dim)
        self.scale = nn.Parameter(torch.full((dim,), 0.1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, C, T]
        y = self.dw(x).transpose(1, 2)
        y = self.pw2(F.gelu(self.pw1(self.norm(y))))
        return x + (self.scale * y).transpose(1, 2)


class InverseSTFT(nn.Module):
    """Inverse STFT (Hann window) as one ConvTranspose1d with a windowed inverse-DFT basis, then overlap-add
    normalisation by the window-sum envelope. Output: ``frames * hop`` samples (trimmed (n_fft - hop) / 2 each side).

    The basis is built from integer ranges (exact phases, no buffer in the checkpoint); ``freeze`` stores it
    before export so that the ONNX graph holds it as one constant instead of rebuilding it on every call.
    """

    def __init__(self, n_fft: int = N_FFT, hop: int = HOP) -> None:
        super().__init__()
        self.n_fft, self.hop = n_fft, hop
        self.trim = (n_fft - hop) // 2
        self.frozen: tuple[torch.Tensor, torch.Tensor] | None = None

    def freeze(self) -> None:
        """Keep the basis as constants (for export)."""
        self.frozen = self.basis(self.n_fft // 2 + 1)

    def basis(self, bins: int, device: torch.device | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """([2 * bins, 1, n_fft] inverse-DFT basis times the window, [1, 1, n_fft] squared window), on ``device``.

        ``bins`` comes from the input's shape (a constant for the exporter to fold).
        """
        n_fft = self.n_fft
        n = torch.arange(2 * (bins - 1), dtype=torch.int64, device=device)
        k = torch.arange(bins, dtype=torch.int64, device=device)[:, None]
        ang = torch.remainder(k * n[None, :], n_fft).to(torch.float32) * (2 * math.pi / n_fft)  # exact phase
        window = 0.5 - 0.5 * torch.cos(n.to(torch.float32) * (2 * math.pi / n_fft))
        edge = ((k == 0) | (k == bins - 1)).to(torch.float32)
        coef = (2.0 - edge) / n_fft
        real = coef * torch.cos(ang) * window[None, :]
        imag = -coef * torch.sin(ang) * window[None, :]
        return torch.cat([real, imag], 0)[:, None, :], (window * window)[None, None, :]

    def _overlap_add(self, frames: torch.Tensor) -> torch.Tensor:
        """[B, n_fft, T] windowed frames to [B, (T + r - 1) * hop] samples, r = n_fft / hop (pads and slices only)."""
        r = self.n_fft // self.hop
        t = frames.shape[2]
        total = F.pad(frames[:, : self.hop, :], (0, r - 1))
        for q in range(1, r):
            total = total + F.pad(frames[:, q * self.hop : (q + 1) * self.hop, :], (q, r - 1 - q))
        return total.transpose(1, 2).reshape(frames.shape[0], (t + r - 1) * self.hop)

    def forward(self, real: torch.Tensor, imag: torch.Tensor) -> torch.Tensor:  # [B, bins, T] -> [B, T*hop]
        basis, win_sq = self.frozen if self.frozen is not None else self.basis(real.shape[1], real.device)
        spec = torch.cat([real, imag], 1)  # [B, 2*bins, T]
        frames = torch.matmul(basis[:, 0, :].transpose(0, 1), spec)  # [B, n_fft, T]
        wav = self._overlap_add(frames)
        env = self._overlap_add(win_sq[0, 0][None, :, None] * torch.ones_like(real[:1, :1, :]))
        wav = wav / env.clamp_min(1e-4)
        return wav[:, self.trim : wav.shape[-1] - self.trim]


class StudentVocoder(nn.Module):
    """Latent frames z [B, 192, T] to audio [B, T * 256] through an STFT head (Vocos-like)."""

    def __init__(self, cfg: VocoderConfig = VocoderConfig()) -> None:
        super().__init__()
        self.cfg = cfg
        self.inp = nn.Conv1d(LATENT, cfg.dim, cfg.in_kernel, padding=cfg.in_kernel // 2)
        self.norm = nn.LayerNorm(cfg.dim)
        self.blocks = nn.ModuleList(ConvNeXt(cfg.dim, cfg.mult) for _ in range(cfg.blocks))
        self.out_norm = nn.LayerNorm(cfg.dim)
        self.bins = cfg.n_fft // 2 + 1
        self.head = nn.Linear(cfg.dim, cfg.subframes * 2 * self.bins)
        # registered after the head (though run before it), so a deepened model's parameters keep the order,
        # and its optimiser the moments, of the model it was deepened from
        self.tail = nn.ModuleList(ConvNeXt(cfg.dim, cfg.mult, TAIL_KERNEL) for _ in range(cfg.tail_blocks))
        self.istft = InverseSTFT(cfg.n_fft, cfg.hop)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.norm(self.inp(z).transpose(1, 2)).transpose(1, 2)
        for block in [*self.blocks, *self.tail]:
            x = block(x)
        h = self.head(self.out_norm(x.transpose(1, 2)))  # [B, T, subframes * 2 * bins]
        if self.cfg.subframes > 1:  # each frame's spectra in time order: [B, T * subframes, 2 * bins]
            h = h.reshape(h.shape[0], -1, 2 * self.bins)
        h = h.transpose(1, 2)
        log_mag, phase = h[:, : self.bins], h[:, self.bins :]
        mag = torch.exp(log_mag.clamp(max=7.0))
        return self.istft(mag * torch.cos(phase), mag * torch.sin(phase))


class ConvBlock(nn.Module):
    """Masked residual block: conv, GELU, LayerNorm over channels."""

    def __init__(self, dim: int, kernel: int = 5, dilation: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv1d(dim, dim, kernel, padding=dilation * (kernel // 2), dilation=dilation)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:  # x [B, C, T], mask [B, 1, T]
        y = F.gelu(self.conv(x * mask))
        return (x + self.norm(y.transpose(1, 2)).transpose(1, 2)) * mask


def regulate(h: torch.Tensor, durations: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Repeat phoneme features by integer durations (batch 1, ONNX-friendly: cumsum + compare + gather).

    Args are h [1, C, P] and durations [1, P] (float, integer-valued); returns frame features [1, C, T]
    and the position of each frame inside its phoneme in [0, 1), shape [1, 1, T].
    """
    ends = torch.cumsum(durations, dim=1)  # [1, P]
    total = ends[0, -1].to(torch.int64)
    t = torch.arange(total, device=h.device).to(h.dtype)[:, None]  # type: ignore[call-overload]  # [T, 1], traced
    idx = (t >= ends).to(torch.int64).sum(1)  # [T] phoneme index of each frame
    frames = torch.index_select(h, 2, idx)
    starts = (ends - durations)[0]
    dur = torch.index_select(durations[0], 0, idx).clamp_min(1.0)
    pos = (t[:, 0] - torch.index_select(starts, 0, idx)) / dur
    return frames, pos[None, None, :]


def regulate_batch(h: torch.Tensor, durations: torch.Tensor, frames: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Training version of ``regulate`` for a padded batch: h [B, C, P], durations [B, P] -> [B, C, frames]."""
    ends = torch.cumsum(durations, dim=1)  # [B, P]
    t = torch.arange(frames, device=h.device, dtype=h.dtype)[None, :, None]  # [1, T, 1]
    idx = (t >= ends[:, None, :]).sum(2).clamp(max=h.shape[2] - 1)  # [B, T]
    out = torch.gather(h, 2, idx[:, None, :].expand(-1, h.shape[1], -1))
    starts = ends - durations
    st = torch.gather(starts, 1, idx)
    du = torch.gather(durations, 1, idx).clamp_min(1.0)
    pos = (t[..., 0] - st) / du
    return out, pos[:, None, :]


def predicted_durations(logd: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """Frames per phoneme [1, P] from the predicted log(1 + frames) [1, P] stretched by length_scale (``scales[1]``).

    The operations' order is the exported graphs': the hybrid's export is byte-repeatable, and its digest keys
    the vocoder's training pairs."""
    durations = torch.round((torch.exp(logd) - 1.0).clamp_min(0.0) * scales[1])
    # at least one frame overall, so the vocoder always gets something
    return torch.cat([durations[:, :-1], torch.maximum(durations[:, -1:], torch.ones_like(durations[:, -1:]))], 1)


class StudentAcoustic(nn.Module):
    """Phoneme ids to latent frames: conv encoder, deterministic duration predictor, length regulation, conv decoder."""

    def __init__(self, cfg: AcousticConfig = AcousticConfig()) -> None:
        super().__init__()
        self.cfg = cfg
        d = cfg.dim
        self.embed = nn.Embedding(cfg.vocab, d)
        self.encoder = nn.ModuleList(ConvBlock(d, 5) for _ in range(cfg.enc_layers))
        self.dur = nn.ModuleList(ConvBlock(d, 3) for _ in range(2))
        self.dur_out = nn.Conv1d(d, 1, 1)
        self.dec_in = nn.Conv1d(d + 2, d, 1)
        self.decoder = nn.ModuleList(ConvBlock(d, 5, dil) for dil in cfg.dec_dilations)
        self.out = nn.Conv1d(d, LATENT, 1)

    def encode(self, ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Encoder features [B, C, P] and predicted log(1 + frames) [B, P]."""
        x = self.embed(ids).transpose(1, 2) * mask
        for block in self.encoder:
            x = block(x, mask)
        y = x.detach() if self.training else x
        for block in self.dur:
            y = block(y, mask)
        return x, self.dur_out(y)[:, 0] * mask[:, 0]

    def decode(self, frames: torch.Tensor, pos: torch.Tensor, logdur: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = self.dec_in(torch.cat([frames, pos, logdur], 1)) * mask
        for block in self.decoder:
            x = block(x, mask)
        return self.out(x) * mask

    def decode_forced(self, h: torch.Tensor, durations: torch.Tensor, frames: int) -> torch.Tensor:
        """Teacher-forced decoding of phoneme features h [B, C, P] at durations [B, P] (zero-padded)
        -> z [B, 192, frames]."""
        reg, pos = regulate_batch(h, durations, frames)
        spoken = durations.sum(1, keepdim=True)
        frame_mask = (torch.arange(frames, device=h.device)[None, :] < spoken).to(h.dtype)[:, None, :]
        logdur_f, _ = regulate_batch(torch.log1p(durations)[:, None, :], durations, frames)
        return self.decode(reg, pos, logdur_f, frame_mask)

    def decode_at(self, h: torch.Tensor, durations: torch.Tensor) -> torch.Tensor:
        """Inference decoding (batch 1) of phoneme features h [1, C, P] at durations [1, P] -> z [1, 192, T]."""
        frames, pos = regulate(h, durations)
        logdur, _ = regulate(torch.log1p(durations)[:, None, :], durations)
        return self.decode(frames, pos, logdur, torch.ones_like(pos))

    def forward_train(
        self, ids: torch.Tensor, id_mask: torch.Tensor, durations: torch.Tensor, frames: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Teacher-forced: z [B, 192, frames] from the teacher's durations, and the predicted log(1 + durations)."""
        h, logd = self.encode(ids, id_mask)
        return self.decode_forced(h, durations, frames), logd

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor, scales: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Inference (batch 1): ids [1, P], lengths [1], scales [3] (length_scale used) -> z [1, 192, T], durations [1, P]."""
        mask = (torch.arange(ids.shape[1])[None, :] < lengths[:, None]).to(torch.float32)[:, None, :]
        h, logd = self.encode(ids, mask)
        durations = predicted_durations(logd, scales)
        return self.decode_at(h, durations), durations


def config_dict(cfg: VocoderConfig | AcousticConfig) -> dict:
    return asdict(cfg)


def acoustic_config(model: dict) -> AcousticConfig:
    """An AcousticConfig from its dict as stored in a checkpoint (tuples come back as lists)."""
    m = dict(model)
    if "dec_dilations" in m:
        m["dec_dilations"] = tuple(m["dec_dilations"])
    return AcousticConfig(**m)


def widen_vocoder(state: dict[str, torch.Tensor], cfg: VocoderConfig, mult: int,
                  generator: torch.Generator) -> dict[str, torch.Tensor]:
    """A vocoder state dict with each ConvNeXt MLP widened from ``cfg.mult`` to ``mult`` (Net2Net style).

    The added hidden units get small random input weights and zero output weights, so the widened network
    computes exactly the same audio until training moves them; receptive field and streaming are unchanged.
    """
    if mult <= cfg.mult:
        raise ValueError(f"widening needs a larger MLP multiplier than {cfg.mult}, got {mult}")
    out = dict(state)
    extra = cfg.dim * (mult - cfg.mult)
    for b in range(cfg.blocks):
        w1, b1, w2 = (state[f"blocks.{b}.{k}"] for k in ("pw1.weight", "pw1.bias", "pw2.weight"))
        scale = float(w1.std())
        out[f"blocks.{b}.pw1.weight"] = torch.cat([w1, torch.randn(extra, cfg.dim, generator=generator) * scale])
        out[f"blocks.{b}.pw1.bias"] = torch.cat([b1, torch.zeros(extra)])
        out[f"blocks.{b}.pw2.weight"] = torch.cat([w2, torch.zeros(cfg.dim, extra)], 1)
    return out


def split_head(state: dict[str, torch.Tensor], cfg: VocoderConfig, subframes: int) -> dict[str, torch.Tensor]:
    """A vocoder state dict whose head emits ``subframes`` spectra per latent frame (``VocoderConfig.subframes``),
    started from the trained head of a one-subframe vocoder.

    Each new spectrum takes every ``subframes``-th bin of the old one (the same frequencies) with its magnitude
    divided by ``subframes`` (the shorter window's gain) and its phase moved to the new window's start, so a
    sinusoid the old head made at one of those frequencies comes out the same; what changes is that the shorter
    windows can now differ from one another within a latent frame, which training then uses.
    """
    if cfg.subframes != 1 or subframes not in (2, 4):
        raise ValueError(f"split_head turns a one-subframe head into 2 or 4 subframes; got {cfg.subframes} -> "
                         f"{subframes}")
    new = VocoderConfig(**{**asdict(cfg), "subframes": subframes})
    old_bins, bins = N_FFT // 2 + 1, new.n_fft // 2 + 1
    weight, bias = state["head.weight"], state["head.bias"]  # [2 * old_bins, dim], [2 * old_bins]
    k = torch.arange(bins)
    pick = k * subframes
    rows_w, rows_b = [], []
    for s in range(subframes):
        # sample offset of subframe s's window start from the old window's start (both centred on their frames)
        shift = (s * new.hop + new.hop / 2 - new.n_fft / 2) - (HOP / 2 - N_FFT / 2)
        rows_w += [weight[pick], weight[old_bins + pick]]
        rows_b += [bias[pick] - math.log(subframes), bias[old_bins + pick] + 2 * math.pi * k * shift / new.n_fft]
    out = dict(state)
    out["head.weight"] = torch.cat(rows_w)
    out["head.bias"] = torch.cat(rows_b)
    return out


def deepen_vocoder(state: dict[str, torch.Tensor], cfg: VocoderConfig, tail_blocks: int,
                   seed: int) -> dict[str, torch.Tensor]:
    """A vocoder state dict with ``tail_blocks`` tail ConvNeXt blocks in all (the added ones start silent).

    Each added block is freshly initialised but its layer scale is zero, so the deeper network computes
    exactly the same audio until training moves it (a zero-initialised residual branch).
    """
    if tail_blocks <= cfg.tail_blocks:
        raise ValueError(f"deepening needs more tail blocks than {cfg.tail_blocks}, got {tail_blocks}")
    out = dict(state)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for b in range(cfg.tail_blocks, tail_blocks):
            block = ConvNeXt(cfg.dim, cfg.mult, TAIL_KERNEL)
            nn.init.zeros_(block.scale)
            out.update({f"tail.{b}.{k}": v.detach().clone() for k, v in block.state_dict().items()})
    return out
