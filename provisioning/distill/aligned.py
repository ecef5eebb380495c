"""The student acoustic model's teacher-forced latents, aligned with the teacher's audio, for vocoder fine-tuning."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import numpy as np
import torch

from jetvox.provisioning.distill import teacher_data
from jetvox.provisioning.distill.models import StudentAcoustic, acoustic_config

log = logging.getLogger(__name__)


def weights_digest(state: dict[str, torch.Tensor]) -> str:
    """A short sha256 of a model's weights (names, shapes and values), to record which model made the latents."""
    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach().cpu().contiguous()
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()[:16]


def load_acoustic(path: Path) -> tuple[StudentAcoustic, str]:
    """The acoustic student of a checkpoint (a run's ``ckpt.pt`` or a slim one in results/), in eval mode, and its
    weights' digest."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"acoustic checkpoint {path} not found (expected a `train --what acoustic` ckpt.pt)")
    state = torch.load(path, map_location="cpu", weights_only=False)
    if state.get("config", {}).get("what") != "acoustic":
        raise ValueError(f"{path} is a {state.get('config', {}).get('what')!r} checkpoint; expected 'acoustic'")
    model = StudentAcoustic(acoustic_config(state["config"]["model"]))
    model.load_state_dict(state["model"])
    model.eval()
    return model, weights_digest(state["model"])


def eligible(item: teacher_data.Item) -> bool:
    """Whether the item's audio was vocoded from its noise-0 latent, whose frames the teacher's durations cover
    exactly (so the student's teacher-forced latent lines up with the audio frame by frame)."""
    return item.wav_from == "z0" and item.durations_cover_z0


@torch.no_grad()
def aligned_latents(items: list[teacher_data.Item], model: StudentAcoustic,
                    compensation: tuple[np.ndarray, np.ndarray] | None = None) -> list[np.ndarray | None]:
    """Per item, the student's latent [192, T0] from the teacher's durations (float16), or None when not eligible;
    with a global-variance ``compensation`` (``variance.read``: scale and shift per channel) applied, as in use.

    As HiFi-GAN fine-tunes on ground-truth-aligned mels: the vocoder learns to turn the acoustic student's smoother
    latents, the ones it is given in use, into the teacher's audio.
    """
    from tqdm import tqdm

    out: list[np.ndarray | None] = []
    for item in tqdm(items, desc="aligned student latents", mininterval=5):
        if not eligible(item):
            out.append(None)
            continue
        ids = torch.from_numpy(item.ids.astype(np.int64))[None]
        mask = torch.ones(1, 1, ids.shape[1])
        durations = torch.from_numpy(item.durations.astype(np.float32))[None]
        z = model.forward_train(ids, mask, durations, item.z0.shape[1])[0][0].numpy()
        if compensation is not None:
            z = z * compensation[0][:, None] + compensation[1][:, None]
        out.append(z.astype(np.float16))
    log.info("aligned latents for %d of %d utterances", sum(z is not None for z in out), len(out))
    return out
