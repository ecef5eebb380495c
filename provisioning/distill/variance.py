"""Global-variance compensation: the acoustic student's latents stretched, per channel, to the teacher's spread."""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import onnx
from onnx import helper, numpy_helper

from jetvox.device.config import default_state_dir
from jetvox.device.storage import atomic_path
from jetvox.device.text.normalize import prepare
from jetvox.device.text.phonemes import Phonemizer
from jetvox.engines.onnxrt import ort_session
from jetvox.provisioning.distill.interface import InterfaceError, check_interface
from jetvox.provisioning.distill.gate import DEFAULT_SCALES
from jetvox.provisioning.distill.teacher_data import teacher_dir
from jetvox.provisioning.int8.calibration import generate_sentences, latent

log = logging.getLogger(__name__)

FIT_SENTENCES = 150
"""Generated IoT sentences the compensation is fitted on (none of them a gate or benchmark sentence)."""
FIT_SEED = 777
"""Seed of those sentences (INT8 calibration draws its own with another seed)."""
TEACHER_SCALES = (0.0, 1.0, 0.0)  # the teacher without noise: what the student was trained to predict
SCALE_NAME, SHIFT_NAME = "variance.scale", "variance.shift"
FLAT, SCALED = "z__flat", "z__scaled"  # z before the compensation, and after its Mul


@dataclass(frozen=True)
class Compensation:
    """z' = z * scale + shift per latent channel: the student's mean kept, its spread made the teacher's."""

    scale: np.ndarray
    """float32 [C]: the teacher's mean per-sentence standard deviation over the student's, per channel."""
    shift: np.ndarray
    """float32 [C]: mean * (1 - scale), so each channel's mean over the fitting sentences stays where it was."""
    sentences: int
    """Sentences fitted on."""
    pieces: int
    """Pieces (sentences split for synthesis) fitted on."""

    def to_json(self) -> dict[str, Any]:
        s = self.scale
        return {"sentences": self.sentences, "pieces": self.pieces, "seed": FIT_SEED,
                "scale_mean": round(float(s.mean()), 4), "scale_min": round(float(s.min()), 4),
                "scale_max": round(float(s.max()), 4)}


def fit(teacher: Path, student_acoustic: Path, phoneme_id_map: dict[str, Any], espeak_voice: str,
        count: int = FIT_SENTENCES, say: Callable[[str], None] = lambda line: None) -> Compensation:
    """The compensation of ``student_acoustic`` against the teacher's noise-free latents.

    Global variance (as statistical parametric synthesis restores it): a model trained to regress the teacher's
    latents predicts them a little flatter over time than they are, which the vocoder hears as dullness.

    Args:
        teacher: the teacher's provisioned (split) directory, holding ``acoustic.onnx``.
        student_acoustic: the student's acoustic ONNX model (the teacher's interface).
        phoneme_id_map: the voice's phoneme id map.
        espeak_voice: espeak-ng voice for phonemes.
        count: sentences to fit on.
        say: progress callback.
    """
    phon = Phonemizer(espeak_voice, phoneme_id_map)
    t_sess, s_sess = ort_session(teacher / "acoustic.onnx"), ort_session(student_acoustic)
    t_var: list[np.ndarray] = []
    s_var: list[np.ndarray] = []
    s_sums: list[np.ndarray] = []
    frames = 0
    sentences = generate_sentences(count, seed=FIT_SEED)
    for n, text in enumerate(sentences, 1):
        for piece in prepare(text):
            ids = phon.sentence_ids(piece)
            if not ids:
                continue
            zt, zs = latent(t_sess, ids, TEACHER_SCALES)[0], latent(s_sess, ids, DEFAULT_SCALES)[0]
            if zt.shape[0] != zs.shape[0]:
                raise InterfaceError(f"latent channels differ: teacher {zt.shape[0]}, student {zs.shape[0]}")
            t_var.append(zt.var(axis=1))
            s_var.append(zs.var(axis=1))
            s_sums.append(zs.sum(axis=1, dtype=np.float64))
            frames += zs.shape[1]
        if n % 25 == 0 or n == len(sentences):
            say(f"global variance: {n}/{len(sentences)} sentences")
    if not s_sums:
        raise ValueError("no sentence gave phonemes to fit the compensation on")
    scale = np.sqrt(np.mean(t_var, axis=0) / np.maximum(np.mean(s_var, axis=0), 1e-12)).astype(np.float32)
    mean = (np.sum(s_sums, axis=0) / frames).astype(np.float32)
    return Compensation(scale, (mean * (1 - scale)).astype(np.float32), len(sentences), len(s_sums))


def apply(path: Path, comp: Compensation) -> None:
    """Append ``z * scale + shift`` to the acoustic model at ``path`` (in place, atomically); refuses a second time."""
    channels = comp.scale.shape[0]
    append_after_z(path, "compensated", FLAT,
                   [numpy_helper.from_array(comp.scale.reshape(1, channels, 1), SCALE_NAME),
                    numpy_helper.from_array(comp.shift.reshape(1, channels, 1), SHIFT_NAME)],
                   [helper.make_node("Mul", [FLAT, SCALE_NAME], [SCALED]),
                    helper.make_node("Add", [SCALED, SHIFT_NAME], ["z"])])


def append_after_z(path: Path, done: str, renamed: str, initializers: list[onnx.TensorProto],
                   nodes: list[onnx.NodeProto]) -> None:
    """Rename the acoustic model's output ``z`` to ``renamed`` and append ``nodes`` (computing ``z`` from it) with
    their ``initializers``, in place and atomically; a model that has one of them already is ``done`` and refused."""
    model = onnx.load(str(path))
    graph = model.graph
    names = {i.name for i in initializers}
    if any(i.name in names for i in graph.initializer):
        raise InterfaceError(f"{path.name} is {done} already")
    producer = next((n for n in graph.node if "z" in n.output), None)
    if producer is None:
        raise InterfaceError(f"{path.name} has no node producing z")
    producer.output[list(producer.output).index("z")] = renamed
    graph.initializer.extend(initializers)
    graph.node.extend(nodes)
    save_checked(model, path)


def read(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """The ``(scale, shift)`` per channel, float32 [C] each, that ``apply`` wrote into the acoustic model at ``path``."""
    found = {i.name: numpy_helper.to_array(i) for i in onnx.load(str(path)).graph.initializer
             if i.name in (SCALE_NAME, SHIFT_NAME)}
    if len(found) != 2:
        raise InterfaceError(f"{path} has no global-variance compensation (expected the initializers "
                             f"{SCALE_NAME} and {SHIFT_NAME}; found {sorted(found) or 'neither'})")
    return (found[SCALE_NAME].reshape(-1).astype(np.float32), found[SHIFT_NAME].reshape(-1).astype(np.float32))


def digest(comp: tuple[np.ndarray, np.ndarray]) -> str:
    """A short sha256 of a ``read`` compensation's scale and shift, to record which one a run's latents carry."""
    return hashlib.sha256(comp[0].tobytes() + comp[1].tobytes()).hexdigest()[:16]


def remove(path: Path) -> None:
    """Take ``apply``'s nodes out of the acoustic model at ``path`` again (in place, atomically): the model as trained,
    with whatever was appended after the compensation (the hybrid's sharpening) now fed by it directly."""
    model = onnx.load(str(path))
    graph = model.graph
    ours = [n for n in graph.node if FLAT in n.input or SCALED in n.input]
    if len(ours) != 2 or not any(i.name == SCALE_NAME for i in graph.initializer):
        raise InterfaceError(f"{path.name} has no global-variance compensation")
    output = next(n for n in ours if SCALED in n.input).output[0]  # "z", or what a later step renamed it to
    for node in ours:
        graph.node.remove(node)
    for init in [i for i in graph.initializer if i.name in (SCALE_NAME, SHIFT_NAME)]:
        graph.initializer.remove(init)
    producer = next(n for n in graph.node if FLAT in n.output)
    producer.output[list(producer.output).index(FLAT)] = output
    save_checked(model, path)


def save_checked(model: onnx.ModelProto, path: Path) -> None:
    """Check ``model`` and write it over ``path``, replaced only once the result has the teacher's interface."""
    onnx.checker.check_model(model)
    with atomic_path(path) as tmp:
        onnx.save(model, str(tmp))
        check_interface(tmp, "acoustic")


def compensate(teacher: Path, student_acoustic: Path, phoneme_id_map: dict[str, Any], espeak_voice: str,
               count: int = FIT_SENTENCES, say: Callable[[str], None] = lambda line: None) -> Compensation:
    """Fit the compensation and write it into ``student_acoustic``; returns it (for the training record)."""
    comp = fit(teacher, student_acoustic, phoneme_id_map, espeak_voice, count, say)
    apply(student_acoustic, comp)
    log.info("global variance: %s", comp.to_json())
    return comp


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m jetvox.provisioning.distill.variance", description=__doc__)
    ap.add_argument("acoustic", type=Path, help="the student's acoustic.onnx (changed in place)")
    ap.add_argument("--voice-json", type=Path, required=True, help="the voice's Piper .onnx.json or voice.json")
    ap.add_argument("--teacher", type=Path, default=None, help="the teacher's split models (default: provisioned)")
    ap.add_argument("--sentences", type=int, default=FIT_SENTENCES)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    config = json.loads(args.voice_json.read_text(encoding="utf-8"))
    teacher = args.teacher or teacher_dir(default_state_dir())
    if not (teacher / "acoustic.onnx").is_file():
        print(f"error: no teacher acoustic model in {teacher}; run `jetvox provision --voice en_US-joe-medium`",
              file=sys.stderr)
        return 2
    comp = compensate(teacher, args.acoustic, config["phoneme_id_map"], config["espeak"]["voice"], args.sentences,
                      say=lambda line: print(line, file=sys.stderr, flush=True))
    print(json.dumps(comp.to_json(), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
