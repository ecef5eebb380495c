"""The vocoder chunk schedule: how a sentence's latent frames are cut into overlapping vocoder calls.

Synthesis streams with it and INT8 calibration cuts its windows with it, so both see the same shapes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np

from jetvox.device.config import SynthesisConfig


@dataclass(frozen=True)
class Chunking:
    """Chunks grow from ``first`` frames, doubling up to ``size``, each with ``overlap`` frames of context per side."""

    first: int
    """Frames in a sentence's first chunk; each next chunk doubles, up to ``size``."""
    size: int
    """Largest chunk, in frames."""
    overlap: int
    """Context frames on each side of a chunk."""

    @classmethod
    def of(cls, cfg: SynthesisConfig) -> Chunking:
        """The schedule the configuration asks for."""
        return cls(cfg.first_chunk_frames, cfg.chunk_frames, cfg.overlap_frames)

    def windows(self, frames: int, first: int | None = None) -> list[tuple[int, int, int, int]]:
        """(a, b, start, end) per chunk: vocode z[a:b], keep the audio of frames start..end.

        Args:
            frames: the sentence's frame count.
            first: size of the first chunk instead of ``self.first``.
        """
        out = []
        start, size = 0, first or self.first
        while start < frames:
            end = min(frames, start + size)
            if frames - end < size // 2:  # no tiny tail chunk
                end = frames
            out.append((max(0, start - self.overlap), min(frames, end + self.overlap), start, end))
            start, size = end, min(2 * size, self.size)
        return out

    def vocode(
        self, run: Callable[[np.ndarray], np.ndarray], z: np.ndarray, hop: int | None = None, first: int | None = None
    ) -> Iterator[tuple[np.ndarray, bool]]:
        """Vocode ``z`` [1, C, T] chunk by chunk; yields (audio, is_last). Joined, they equal the unchunked audio.

        Args:
            run: one vocoder call, z window [1, C, n] to audio (any shape; flattened).
            z: the sentence's latent frames.
            hop: audio samples per frame; None derives it from the first call's output.
            first: size of the first chunk instead of ``self.first``.
        """
        total = z.shape[2]
        for a, b, start, end in self.windows(total, first):
            audio = run(np.ascontiguousarray(z[:, :, a:b])).reshape(-1)
            hop = hop or audio.shape[0] // (b - a)
            lo = (start - a) * hop
            yield audio[lo : lo + (end - start) * hop], end == total
