"""Float audio to and from signed 16-bit PCM, the one conversion every output and metric uses."""

from __future__ import annotations

import numpy as np

FULL_SCALE = 32767.0
"""The int16 value of float 1.0."""


def to_pcm16(audio: np.ndarray) -> np.ndarray:
    """Float samples in [-1, 1] (clipped beyond) to little-endian int16."""
    return np.round(np.clip(audio, -1.0, 1.0) * FULL_SCALE).astype("<i2")


def pcm16_bytes(audio: np.ndarray) -> bytes:
    """Float samples to s16le bytes."""
    return to_pcm16(audio).tobytes()


def from_pcm16(pcm: bytes) -> np.ndarray:
    """s16le bytes to float32 samples in [-1, 1]."""
    return np.frombuffer(pcm, dtype="<i2").astype(np.float32) / FULL_SCALE
