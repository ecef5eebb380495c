"""An acoustic model run as its static-shape stages: encoder, length regulator (ONNX Runtime), decoder."""

from __future__ import annotations

import logging
from typing import Mapping

import numpy as np

from jetvox.engines.base import Engine, EngineBase, EngineError, check_feeds

log = logging.getLogger(__name__)

DURATIONS = "durations"
Z = "z"


class StagedAcoustic(EngineBase):
    """Phoneme ids to ``z`` and ``durations`` through three engines, with the acoustic model's interface.

    The encoder's and decoder's shapes follow their inputs (phonemes, frames), so TensorRT runs them with
    static shapes inside their profiles; the regulator, where the frame count comes from the durations'
    values, runs on ONNX Runtime. A sentence whose durations add up to more than ``max_frames`` (the
    decoder profile's maximum) has them scaled down to fit, with a warning, instead of failing.
    """

    def __init__(self, encoder: Engine, regulator: Engine, decoder: Engine, max_frames: int) -> None:
        """Compose the stages.

        Args:
            encoder: ids to phoneme-rate tensors, ``durations`` among them.
            regulator: those to frame-rate tensors.
            decoder: frame-rate tensors to ``z``.
            max_frames: most frames the decoder takes in one call.
        """
        if max_frames < 1:
            raise EngineError(f"max_frames must be at least 1, got {max_frames}")
        self.stages = (encoder, regulator, decoder)
        self.max_frames = max_frames
        self.inputs = tuple(encoder.inputs)
        durations = next((s for s in encoder.outputs if s.name == DURATIONS), None)
        z = next((s for s in decoder.outputs if s.name == Z), None)
        if durations is None or z is None:
            raise EngineError("staged acoustic model: the encoder must output durations and the decoder z")
        self.outputs = (z, durations)
        self.backend = "+".join(s.backend for s in self.stages)

    def infer(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        board = self.regulate(self.encode(feeds))
        z = self.decode(board)
        return {Z: z, DURATIONS: board[DURATIONS]}

    def encode(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The feeds and the encoder's outputs (durations scaled down to fit ``max_frames``)."""
        check_feeds(self.inputs, feeds)
        encoder = self.stages[0]
        board: dict[str, np.ndarray] = dict(feeds)
        board.update(encoder.infer(_take(board, encoder)))
        frames = float(board[DURATIONS].sum())
        if frames > self.max_frames:
            log.warning("a sentence of %d frames exceeds the decoder's %d: spoken faster to fit", frames, self.max_frames)
            board[DURATIONS] = _rescaled(board[DURATIONS], self.max_frames / frames)
        return board

    def regulate(self, board: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """``board`` with the regulator's frame-rate tensors added."""
        regulator = self.stages[1]
        return {**board, **regulator.infer(_take(board, regulator))}

    def decode(self, board: Mapping[str, np.ndarray]) -> np.ndarray:
        """``z`` [1, C, frames] from the regulator's tensors in ``board``."""
        decoder = self.stages[2]
        return decoder.infer(_take(board, decoder))[Z]

    def close(self) -> None:
        for stage in self.stages:
            stage.close()


def _rescaled(durations: np.ndarray, scale: float) -> np.ndarray:
    """Durations scaled by ``scale`` < 1, rounded so that their running sums stay in step (none lost to rounding)."""
    ends = np.floor(np.cumsum(durations.astype(np.float64), axis=-1) * scale)
    return np.diff(ends, axis=-1, prepend=0.0).astype(durations.dtype)


def _take(board: Mapping[str, np.ndarray], engine: Engine) -> dict[str, np.ndarray]:
    missing = [s.name for s in engine.inputs if s.name not in board]
    if missing:
        raise EngineError(f"staged acoustic model: no stage before this one computes {missing}")
    return {s.name: board[s.name] for s in engine.inputs}
