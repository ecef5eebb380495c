"""The acoustic model's inputs, built in one place: phoneme ids and (noise, length, noise_w) scales."""

from __future__ import annotations

from typing import Sequence

import numpy as np

ACOUSTIC_INPUTS = ("input", "input_lengths", "scales")
"""Input names of every acoustic model jetvox runs (the Piper VITS interface, kept by the split and the students)."""

DETERMINISTIC_SCALES = (0.0, 1.0, 0.0)
"""No noise at normal speed: the same ids always give the same latents."""


def acoustic_feeds(ids: Sequence[int], scales: Sequence[float] = DETERMINISTIC_SCALES) -> dict[str, np.ndarray]:
    """``input`` int64 [1, P], ``input_lengths`` int64 [1], ``scales`` float32 [3] for one sentence.

    Args:
        ids: the sentence's phoneme ids.
        scales: (noise_scale, length_scale, noise_w).
    """
    arr = np.asarray([ids], dtype=np.int64)
    return {
        "input": arr,
        "input_lengths": np.array([arr.shape[1]], dtype=np.int64),
        "scales": np.asarray(scales, dtype=np.float32),
    }
