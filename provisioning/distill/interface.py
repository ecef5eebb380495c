"""The teacher split's model interface, which every exported or rewritten student model must keep."""

from __future__ import annotations

from pathlib import Path
from typing import Union

from jetvox.engines.errors import JetvoxError
from jetvox.engines.onnxrt import ort_session
from jetvox.provisioning.distill.models import LATENT

Spec = tuple[tuple[str, str, list[Union[str, int]]], ...]
# (name, elem type, shape) exactly as provisioning.split writes the teacher's models.
ACOUSTIC_INPUTS: Spec = (("input", "int64", ["batch_size", "phonemes"]), ("input_lengths", "int64", ["batch_size"]),
                   ("scales", "float32", [3]))
ACOUSTIC_OUTPUTS: Spec = (("z", "float32", [1, LATENT, "frames"]), ("durations", "float32", [1, "phonemes"]))
VOCODER_INPUTS: Spec = (("z", "float32", [1, LATENT, "frames"]),)
VOCODER_OUTPUTS: Spec = (("audio", "float32", [1, "samples"]),)
INTERFACES = {"acoustic": (ACOUSTIC_INPUTS, ACOUSTIC_OUTPUTS), "vocoder": (VOCODER_INPUTS, VOCODER_OUTPUTS)}


class InterfaceError(JetvoxError, ValueError):
    """An exported model's inputs or outputs differ from the teacher split's."""


def check_interface(path: Path, role: str) -> None:
    """Raise InterfaceError unless ONNX Runtime sees the teacher split's names, dtypes and shapes for ``role``."""
    sess = ort_session(path)
    ort_types = {"tensor(float)": "float32", "tensor(int64)": "int64"}
    want_in, want_out = INTERFACES[role]
    for got, want, what in ((sess.get_inputs(), want_in, "inputs"), (sess.get_outputs(), want_out, "outputs")):
        seen = [(a.name, ort_types.get(a.type, a.type), list(a.shape)) for a in got]
        expected = [(n, t, list(s)) for n, t, s in want]
        if seen != expected:
            raise InterfaceError(f"{path.name} {what}: expected {expected}, got {seen}")
