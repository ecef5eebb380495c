"""Training losses for the students: multi-resolution STFT, log-mel, complex-spectrum and phase-derivative distances."""

from __future__ import annotations

import torch
from torch.nn import functional as F

SAMPLE_RATE = 22050
RESOLUTIONS = ((512, 128), (1024, 256), (2048, 512))
FINE_MEL = (448, 112, 120)
"""(n_fft, hop, mel bands) of the fine mel term: about 20 ms windows at 22,050 Hz, as 16 kHz speech-quality and ASR
front ends use (DNSMOS: 320-sample windows, 120 bands to 8 kHz), against the main mel term's 46 ms."""


def mel_filterbank(n_fft: int = 1024, n_mels: int = 80, sr: int = SAMPLE_RATE, fmin: float = 0.0, fmax: float = 8000.0) -> torch.Tensor:
    """Triangular HTK-mel filters, [n_mels, n_fft // 2 + 1]."""

    def to_mel(f: float | torch.Tensor) -> torch.Tensor:
        return 2595.0 * torch.log10(1.0 + torch.as_tensor(f, dtype=torch.float64) / 700.0)

    mels = torch.linspace(float(to_mel(fmin)), float(to_mel(fmax)), n_mels + 2, dtype=torch.float64)
    hz = 700.0 * (10 ** (mels / 2595.0) - 1.0)
    freqs = torch.linspace(0, sr / 2, n_fft // 2 + 1, dtype=torch.float64)
    lo, mid, hi = hz[:-2, None], hz[1:-1, None], hz[2:, None]
    up = (freqs[None] - lo) / (mid - lo)
    down = (hi - freqs[None]) / (hi - mid)
    return torch.clamp(torch.minimum(up, down), min=0.0).float()


def phase_derivative_distance(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """How far the phase's derivatives of ``pred`` are from ``target``'s (complex STFTs [B, F, T]).

    The instantaneous frequency (phase step from frame to frame) and the group delay (phase step from bin to bin),
    compared as ``1 - cos`` of their difference, so wrapping does not matter (APNet's anti-wrapping losses in a
    smooth form), each weighted by the target's magnitude (so that silent bins, whose phase is noise, do not count).
    Unlike a complex or waveform distance it does not ask for the target's absolute phase. 0 when equal, at most 2.
    """
    def unit(z: torch.Tensor) -> torch.Tensor:
        return z / z.abs().clamp_min(1e-4)

    up, ut = unit(pred), unit(target)
    weight = target.abs()
    weight = weight / weight.mean(dim=(1, 2), keepdim=True).clamp_min(1e-5)
    total = weight.new_zeros(())
    for dim in (2, 1):  # along time: instantaneous frequency; along frequency: group delay
        n = up.shape[dim]
        a0, a1 = up.narrow(dim, 0, n - 1), up.narrow(dim, 1, n - 1)
        b0, b1 = ut.narrow(dim, 0, n - 1), ut.narrow(dim, 1, n - 1)
        # the step's difference as a phasor: (a1 conj a0) conj (b1 conj b0); its real part is cos of the difference
        cos = (a1 * a0.conj() * (b1 * b0.conj()).conj()).real
        w = torch.minimum(weight.narrow(dim, 0, n - 1), weight.narrow(dim, 1, n - 1))
        total = total + (w * (1.0 - cos)).mean()
    return total


def _log_mel_l1(fb: torch.Tensor, pred: torch.Tensor, target: torch.Tensor, floor: float) -> torch.Tensor:
    """L1 between the logs of two spectrograms' mel bands (``fb``), each band floored at ``floor``."""
    return F.l1_loss(torch.log(torch.matmul(fb, pred).clamp_min(floor)),
                     torch.log(torch.matmul(fb, target).clamp_min(floor)))


class VocoderLoss(torch.nn.Module):
    """Sum of weighted distances between a predicted and a target waveform, returned with its parts."""

    def __init__(self, mel_w: float = 1.0, mrstft_w: float = 1.0, complex_w: float = 1.0, wav_w: float = 0.5,
                 phase_w: float = 0.0, mel_fine_w: float = 0.0) -> None:
        super().__init__()
        self.mel_fb: torch.Tensor
        self.fine_fb: torch.Tensor
        self.w = {"mel": mel_w, "mrstft": mrstft_w, "complex": complex_w, "wav": wav_w}
        if phase_w:  # only then computed (and logged)
            self.w["phase"] = phase_w
        if mel_fine_w:
            self.w["mel_fine"] = mel_fine_w
            n_fft, _, n_mels = FINE_MEL
            self.register_buffer("fine_fb", mel_filterbank(n_fft, n_mels), persistent=False)
            self.register_buffer(f"win{n_fft}", torch.hann_window(n_fft), persistent=False)
        self.register_buffer("mel_fb", mel_filterbank(), persistent=False)
        for n_fft, _ in RESOLUTIONS:
            self.register_buffer(f"win{n_fft}", torch.hann_window(n_fft), persistent=False)

    def _stft(self, x: torch.Tensor, n_fft: int, hop: int) -> torch.Tensor:
        return torch.stft(x, n_fft, hop, window=getattr(self, f"win{n_fft}"), center=True, return_complex=True)

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        parts: dict[str, torch.Tensor] = {}
        mr = pred.new_zeros(())
        for n_fft, hop in RESOLUTIONS:
            p, t = self._stft(pred, n_fft, hop), self._stft(target, n_fft, hop)
            pm, tm = p.abs().clamp_min(1e-5), t.abs().clamp_min(1e-5)
            sc = torch.linalg.norm(tm - pm) / torch.linalg.norm(tm).clamp_min(1e-5)
            mr = mr + sc + F.l1_loss(pm.log(), tm.log())
            if n_fft == 1024:
                parts["mel"] = _log_mel_l1(self.mel_fb, pm, tm, 1e-5)
                # compressed complex spectra: magnitude ** 0.3 with the phase kept
                pc = torch.view_as_real(p * pm.pow(-0.7))
                tc = torch.view_as_real(t * tm.pow(-0.7))
                parts["complex"] = F.mse_loss(pc, tc) * 10.0
                if "phase" in self.w:
                    parts["phase"] = phase_derivative_distance(p, t)
        parts["mrstft"] = mr / len(RESOLUTIONS)
        if "mel_fine" in self.w:
            n_fft, hop, _ = FINE_MEL
            pp, tp = (self._stft(x, n_fft, hop).abs().square() for x in (pred, target))
            parts["mel_fine"] = 0.5 * _log_mel_l1(self.fine_fb, pp, tp, 1e-10)  # log power / 2: log magnitude
        parts["wav"] = F.l1_loss(pred, target) * 10.0
        total = torch.stack([self.w[k] * v for k, v in parts.items()]).sum()
        return total, {k: float(v.detach()) for k, v in parts.items()}


def masked_l1(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean absolute error over the unmasked positions (mask broadcasts over channels)."""
    full = mask.expand_as(pred)
    return (torch.abs(pred - target) * full).sum() / full.sum().clamp_min(1.0)


def masked_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    full = mask.expand_as(pred)
    return ((pred - target) ** 2 * full).sum() / full.sum().clamp_min(1.0)



