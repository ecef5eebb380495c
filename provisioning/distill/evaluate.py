"""How natural a vocoder run's checkpoint sounds: DNSMOS beside the shipped and the teacher vocoder, same latents.

    python -m jetvox.provisioning.distill.evaluate provisioning/distill/results/vocoder-gan

Latents come from an acoustic model at noise 0 on the 26 benchmark sentences (with ``--held-out``, on the gate's
126, which begin with them): ``joe-fast``'s (the shipped voice's acoustic model,
what the vocoder gets in use; the default) or, with ``--latents en_US-joe-medium``, the teacher's (to tell a
vocoder's own shortfall from its inputs'), or with ``--latents PATH`` an acoustic student's checkpoint (a
``train --what acoustic`` run's ``ckpt.pt``), whose teacher-forced distance to the teacher's latents on these
sentences, never trained on, is reported too. Each sentence is vocoded whole by the checkpoint (exported to ONNX),
the shipped student vocoder and the teacher's vocoder. Prints mean P.808 and OVRL of each and the checkpoint's
spectrum against the teacher's by band; with ``--splice``, also the P.808 of the checkpoint's audio with one band
range replaced by the teacher vocoder's (where the shortfall lies); with ``--swap``, the P.808 of short-time
spectra with the magnitude of one and the phase of the other (whether the shortfall is in the magnitude or the phase).
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from jetvox.device import config
from jetvox.device.evaluation.naturalness import mean_naturalness
from jetvox.device.evaluation.sentences import EVAL_SENTENCES, HELD_OUT
from jetvox.device.synthesis.feeds import acoustic_feeds
from jetvox.device.synthesis.synthesizer import synthesizer_for
from jetvox.device.voice import manifest as mf
from jetvox.device.voice.loader import load_voice
from jetvox.engines.onnxrt import ort_session
from jetvox.provisioning.distill import teacher_data
from jetvox.provisioning.distill.aligned import load_acoustic
from jetvox.provisioning.distill.export import export, load_student, run_vocoder

BANDS_HZ = ((0, 500), (500, 1000), (1000, 2000), (2000, 3000), (3000, 5000), (5000, 8000), (8000, 11025))


def band_gap_db(audio: list[np.ndarray], reference: list[np.ndarray], sample_rate: int) -> dict[str, float]:
    """Mean power spectrum of ``audio`` minus that of ``reference`` (each clip at equal RMS), dB per band."""

    def mean_db(clips: list[np.ndarray]) -> np.ndarray:
        window = np.hanning(1024)
        powers = []
        for clip in clips:
            clip = clip / (np.sqrt(np.mean(clip**2)) + 1e-9)
            frames = np.lib.stride_tricks.sliding_window_view(clip, 1024)[::256] * window
            powers.append(np.abs(np.fft.rfft(frames, axis=1)) ** 2)
        return 10 * np.log10(np.concatenate(powers).mean(0) + 1e-12)

    diff = mean_db(audio) - mean_db(reference)
    freqs = np.arange(len(diff)) * sample_rate / 1024
    return {f"{lo}-{hi} Hz": round(float(diff[(freqs >= lo) & (freqs < hi)].mean()), 2) for lo, hi in BANDS_HZ}


SPLICE_CUTS_HZ = (1000, 3000, 6000)
_SPLICE_FFT = 1024
SWAP_FFTS = (1024, 512)
"""STFT sizes of ``swap_report`` (hop a quarter of each): 46 and 23 ms windows at 22,050 Hz."""


def _unit_stft(x: np.ndarray, n: int, n_fft: int) -> torch.Tensor:
    """The STFT (Hann window, hop ``n_fft / 4``) of the first ``n`` samples of ``x`` brought to unit RMS."""
    x = np.asarray(x[:n], dtype=np.float64)
    x = x / (np.sqrt(np.mean(x**2)) + 1e-12)
    window = torch.hann_window(n_fft, dtype=torch.float64)
    return torch.stft(torch.from_numpy(x), n_fft, n_fft // 4, window=window, return_complex=True)


def _inverse(spec: torch.Tensor, n: int, n_fft: int) -> np.ndarray:
    window = torch.hann_window(n_fft, dtype=torch.float64)
    return torch.istft(spec, n_fft, n_fft // 4, window=window, length=n).numpy().astype(np.float32)


def spliced(low: np.ndarray, high: np.ndarray, sample_rate: int, cut_hz: float) -> np.ndarray:
    """One clip: ``low``'s short-time spectrum below ``cut_hz`` and ``high``'s from it up (both brought to equal RMS
    first, cut to the shorter length)."""
    n = min(len(low), len(high))
    below = (torch.arange(_SPLICE_FFT // 2 + 1) * sample_rate / _SPLICE_FFT < cut_hz)[:, None]
    mixed = torch.where(below, _unit_stft(low, n, _SPLICE_FFT), _unit_stft(high, n, _SPLICE_FFT))
    return _inverse(mixed, n, _SPLICE_FFT)


def splice_report(candidate: list[np.ndarray], reference: list[np.ndarray], sample_rate: int) -> dict[str, float]:
    """Mean P.808 of the candidate's clips with the bands below or above each cut taken from the reference's: the
    nearer a splice comes to the reference's score, the more of the candidate's shortfall the replaced bands held."""
    out = {}
    for cut in SPLICE_CUTS_HZ:
        for name, (low, high) in ((f"candidate below {cut} Hz, reference above", (candidate, reference)),
                                  (f"reference below {cut} Hz, candidate above", (reference, candidate))):
            clips = [spliced(a, b, sample_rate, cut) for a, b in zip(low, high)]
            out[name] = round(mean_naturalness(clips, sample_rate).p808, 3)
    return out


def swapped(magnitude_of: np.ndarray, phase_of: np.ndarray, n_fft: int = _SPLICE_FFT) -> np.ndarray:
    """One clip: the short-time spectrum's magnitude of ``magnitude_of`` with the phase of ``phase_of`` (both at unit
    RMS, cut to the shorter length; STFT size ``n_fft``, hop a quarter of it)."""
    n = min(len(magnitude_of), len(phase_of))
    mixed = torch.polar(_unit_stft(magnitude_of, n, n_fft).abs(), _unit_stft(phase_of, n, n_fft).angle())
    return _inverse(mixed, n, n_fft)


def swap_report(candidate: list[np.ndarray], reference: list[np.ndarray], sample_rate: int) -> dict[str, float]:
    """Mean P.808 of the candidate's short-time magnitude with the reference's phase, and of the reverse, at each of
    ``SWAP_FFTS``: the swap that comes nearer the reference's score shows which of the two holds the candidate's
    shortfall, and at which time resolution."""
    out = {}
    for n_fft in SWAP_FFTS:
        for name, (mag, phase) in (("candidate magnitude, reference phase", (candidate, reference)),
                                   ("reference magnitude, candidate phase", (reference, candidate))):
            clips = [swapped(a, b, n_fft) for a, b in zip(mag, phase)]
            out[f"STFT {n_fft}: {name}"] = round(mean_naturalness(clips, sample_rate).p808, 3)
    return out


STUDENT = "joe-fast"
TEACHER = teacher_data.TEACHER


def checkpoint_latents(path: Path, state_dir: Path, ids_list: list[list[int]]) -> tuple[list[np.ndarray], float]:
    """An acoustic checkpoint's latents (noise 0, its own durations) per sentence, and the mean L1 of its
    teacher-forced latents (the teacher's durations) to the teacher's noise-0 latents."""
    model, _ = load_acoustic(path)
    teacher = ort_session(teacher_data.teacher_dir(state_dir) / "acoustic.onnx")
    latents, errors = [], []
    with torch.no_grad():
        for ids in ids_list:
            x = torch.tensor([ids], dtype=torch.int64)
            z, _ = model(x, torch.tensor([len(ids)]), torch.tensor(teacher_data.DET_SCALES))
            latents.append(z.numpy())
            z_t, dur = teacher.run(["z", "durations"], acoustic_feeds(ids, teacher_data.DET_SCALES))
            forced, _ = model.forward_train(x, torch.ones(1, 1, len(ids)), torch.from_numpy(dur.astype(np.float32)),
                                            z_t.shape[2])
            errors.append(float(np.abs(forced.numpy() - z_t).mean()))
    return latents, float(np.mean(errors))


def evaluate(run_dir: Path, teacher: str = TEACHER, latents_from: str = STUDENT, average: bool = True,
             splice: bool = False, swap: bool = False, sentences: tuple[str, ...] = EVAL_SENTENCES) -> dict[str, Any]:
    """Naturalness of the checkpoint in ``run_dir`` (``ckpt.pt``; its weights' average where it keeps one, unless
    ``average`` is False), the shipped vocoder and the teacher's, all on the latents of voice ``latents_from`` (or
    of the acoustic checkpoint at that path); with ``splice``, also ``splice_report`` against the teacher's vocoder,
    with ``swap`` its ``swap_report``; on ``sentences``."""
    from_checkpoint = latents_from not in (STUDENT, teacher)
    cfg = config.from_mapping({"voice": {"name": STUDENT if from_checkpoint else latents_from},
                               "synthesis": {"noise_scale": 0.0, "noise_w": 0.0}, "engine": {"precision": "fp32"}})
    voice = load_voice(cfg)
    synth = synthesizer_for(voice, cfg)
    params = synth.params()
    ids_list = [list(ids) for text in sentences for ids in synth.sentences(text)]
    extra: dict[str, Any] = {}
    if from_checkpoint:
        latents, l1 = checkpoint_latents(Path(latents_from), cfg.state_dir, ids_list)
        extra["teacher_forced_z_l1"] = round(l1, 4)
    else:
        latents = [synth.acoustic(ids, params) for ids in ids_list]
    with tempfile.TemporaryDirectory(prefix="jetvox-eval-") as tmp:
        work = Path(tmp)
        (work / "run").mkdir()
        shutil.copy(run_dir / "ckpt.pt", work / "run" / "ckpt.pt")  # a copy: a running training may rewrite it
        model, _, meta = load_student(work / "run", average)
        onnx_path = export(model, "vocoder", work / "vocoder.onnx")
        candidate = [run_vocoder(onnx_path, z) for z in latents]
    def vocode(voice_name: str) -> list[np.ndarray]:
        session = ort_session(mf.voice_dir(cfg.state_dir, voice_name) / "vocoder.onnx")
        name = session.get_inputs()[0].name
        return [session.run(None, {name: z.astype(np.float32)})[0].reshape(-1) for z in latents]

    shipped, reference = vocode(STUDENT), vocode(teacher)
    rate = voice.sample_rate
    scores = {label: mean_naturalness(clips, rate) for label, clips in
              (("checkpoint", candidate), ("shipped", shipped), ("teacher_vocoder", reference))}
    if splice:
        extra["splice_p808"] = splice_report(candidate, reference, rate)
    if swap:
        extra["swap_p808"] = swap_report(candidate, reference, rate)
    synth.close()
    voice.close()
    return {
        "step": meta.get("step"),
        "weights": meta["weights"],
        "latents": latents_from,
        "sentences": len(sentences),
        **{label: {"p808": round(s.p808, 3), "ovrl": round(s.ovrl, 3)} for label, s in scores.items()},
        "spectrum_vs_teacher_db": band_gap_db(candidate, reference, rate),
        **extra,
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path, help="a vocoder run directory holding ckpt.pt")
    ap.add_argument("--latents", default=STUDENT, metavar=f"{{{STUDENT},{TEACHER},CKPT}}",
                    help="whose acoustic model makes the latents: a voice, or an acoustic checkpoint's path "
                         "(default: the shipped joe-fast's)")
    ap.add_argument("--last", action="store_true",
                    help="score the last step's weights even where the run keeps their moving average")
    ap.add_argument("--splice", action="store_true",
                    help="also score the checkpoint's audio with bands taken from the teacher vocoder's (slower)")
    ap.add_argument("--swap", action="store_true",
                    help="also score the checkpoint's short-time magnitude with the teacher vocoder's phase, and the "
                         "reverse")
    ap.add_argument("--held-out", action="store_true",
                    help="score on the gate's 126 held-out sentences instead of the 26 benchmark ones (slower)")
    args = ap.parse_args(argv)
    if args.latents not in (STUDENT, TEACHER) and not Path(args.latents).is_file():
        ap.error(f"--latents expects {STUDENT}, {TEACHER} or an acoustic checkpoint file; got {args.latents!r}")
    print(json.dumps(evaluate(args.run, latents_from=args.latents, average=not args.last,
                                splice=args.splice, swap=args.swap,
                                sentences=HELD_OUT if args.held_out else EVAL_SENTENCES), indent=1))


if __name__ == "__main__":
    main()
