"""Export trained students to ONNX with exactly the teacher split's interface, and check them with ONNX Runtime."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Union

import numpy as np
import torch

from provisioning.distill.models import LATENT, InverseSTFT
from provisioning.distill.train import CKPT, TrainConfig, build_model

log = logging.getLogger(__name__)

OPSET = 17
Spec = tuple[tuple[str, str, list[Union[str, int]]], ...]
# (name, elem type, shape) exactly as provisioning.split writes the teacher's models.
ACOUSTIC_INPUTS: Spec = (("input", "int64", ["batch_size", "phonemes"]), ("input_lengths", "int64", ["batch_size"]),
                   ("scales", "float32", [3]))
ACOUSTIC_OUTPUTS: Spec = (("z", "float32", [1, LATENT, "frames"]), ("durations", "float32", [1, "phonemes"]))
VOCODER_INPUTS: Spec = (("z", "float32", [1, LATENT, "frames"]),)
VOCODER_OUTPUTS: Spec = (("audio", "float32", [1, "samples"]),)
INTERFACES = {"acoustic": (ACOUSTIC_INPUTS, ACOUSTIC_OUTPUTS), "vocoder": (VOCODER_INPUTS, VOCODER_OUTPUTS)}


class InterfaceError(ValueError):
    """An exported model's inputs or outputs differ from the teacher split's."""


def load_student(run_dir: Path) -> tuple[torch.nn.Module, TrainConfig, dict]:
    """The trained model of a run directory, in eval mode, with its config and checkpoint metadata."""
    state = torch.load(Path(run_dir) / CKPT, map_location="cpu", weights_only=False)
    cfg = TrainConfig(**state["config"])
    model = build_model(cfg)
    model.load_state_dict(state["model"])
    model.eval()
    meta = {k: state[k] for k in ("step", "seconds", "utterances", "hardware") if k in state}
    return model, cfg, meta


def _fix_io(path: Path, role: str) -> None:
    """Name the dynamic axes (and fixed sizes) of the graph's inputs and outputs exactly as the teacher's."""
    import onnx
    from onnx import helper

    model = onnx.load(str(path))
    ins, outs = INTERFACES[role]
    types = {"float32": onnx.TensorProto.FLOAT, "int64": onnx.TensorProto.INT64}
    for vis, spec in ((model.graph.input, ins), (model.graph.output, outs)):
        for vi, (name, dtype, shape) in zip(vis, spec):
            vi.CopyFrom(helper.make_tensor_value_info(name, types[dtype], shape))
    model.graph.name = f"jetvox-student-{role}"
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def export(model: torch.nn.Module, role: str, path: Path) -> Path:
    """Write ``model`` (a StudentVocoder or StudentAcoustic) to ``path`` as ONNX and check its interface.

    Args:
        model: the trained student.
        role: ``vocoder`` or ``acoustic``.
        path: output ``.onnx`` file.
    """
    model.eval()
    for module in model.modules():
        if isinstance(module, InverseSTFT):
            module.freeze()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp-{path.name}")
    with torch.no_grad():
        if role == "vocoder":
            args: tuple = (torch.randn(1, LATENT, 40),)
            names_in, names_out = ["z"], ["audio"]
            axes = {"z": {2: "frames"}, "audio": {1: "samples"}}
        elif role == "acoustic":
            ids = torch.randint(1, 100, (1, 25))
            args = (ids, torch.tensor([25]), torch.tensor([0.667, 1.0, 0.8]))
            names_in, names_out = ["input", "input_lengths", "scales"], ["z", "durations"]
            axes = {"input": {0: "batch_size", 1: "phonemes"}, "input_lengths": {0: "batch_size"},
                    "z": {2: "frames"}, "durations": {1: "phonemes"}}
        else:
            raise ValueError(f"role must be vocoder or acoustic, got {role!r}")
        torch.onnx.export(model, args, str(tmp), input_names=names_in, output_names=names_out,
                          dynamic_axes=axes, opset_version=OPSET, dynamo=False,
                          do_constant_folding=True)
    _fix_io(tmp, role)
    tmp.replace(path)
    check_interface(path, role)
    log.info("exported %s to %s (%.1f MB)", role, path, path.stat().st_size / 1e6)
    return path


def check_interface(path: Path, role: str) -> None:
    """Raise InterfaceError unless ONNX Runtime sees the teacher split's names, dtypes and shapes for ``role``."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    ort_types = {"tensor(float)": "float32", "tensor(int64)": "int64"}
    want_in, want_out = INTERFACES[role]
    for got, want, what in ((sess.get_inputs(), want_in, "inputs"), (sess.get_outputs(), want_out, "outputs")):
        seen = [(a.name, ort_types.get(a.type, a.type), list(a.shape)) for a in got]
        expected = [(n, t, list(s)) for n, t, s in want]
        if seen != expected:
            raise InterfaceError(f"{path.name} {what}: expected {expected}, got {seen}")


def run_vocoder(path: Path, z: np.ndarray) -> np.ndarray:
    """Vocode z [1, 192, T] with ONNX Runtime (CPU); returns audio [T * 256]."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(["audio"], {"z": z.astype(np.float32)})[0][0]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--vocoder-run", type=Path, required=True)
    ap.add_argument("--acoustic-run", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True, help="directory for acoustic.onnx and vocoder.onnx")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    for role, run in (("vocoder", args.vocoder_run), ("acoustic", args.acoustic_run)):
        model, _, meta = load_student(run)
        export(model, role, args.out / f"{role}.onnx")
        log.info("%s: step %s", role, meta.get("step"))


if __name__ == "__main__":
    main()
