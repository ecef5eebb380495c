"""The text frontend: normalisation of sensor text, sentence splitting, espeak-ng phonemes."""

FRONTEND_VERSION = 1
"""Bump when the normaliser or the phonemiser produce other output for the same text: the INT8
calibration corpus and the audio cache are keyed by it (and by the espeak-ng/piper versions), not by source hashes."""
