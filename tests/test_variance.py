"""Tests for the global-variance compensation of the acoustic student (provisioning.distill.variance)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest

pytest.importorskip("torch", reason="the distillation extra (pip install .[train]) is not installed")

from jetvox.engines.onnxrt import ort_session  # noqa: E402
from jetvox.provisioning.distill.interface import InterfaceError  # noqa: E402
from jetvox.provisioning.distill.gate import DEFAULT_SCALES as SCALES  # noqa: E402
from jetvox.provisioning.distill.hybrid import SHARP_NAME  # noqa: E402
from jetvox.provisioning.distill.variance import Compensation, apply, fit, main, read, remove  # noqa: E402
from jetvox.provisioning.int8.calibration import latent  # noqa: E402

SHIPPED = Path(__file__).resolve().parent.parent / "device" / "voice" / "shipped" / "joe-fast"
IDS = [1, 0, 20, 0, 59, 0, 24, 0, 27, 0, 2]


def _voice() -> dict:
    return json.loads((SHIPPED / "voice.json").read_text(encoding="utf-8"))


def _uncompensated(tmp_path: Path) -> Path:
    """A copy of the shipped student acoustic model with its compensation taken out (the student as trained)."""
    path = tmp_path / "acoustic.onnx"
    shutil.copyfile(SHIPPED / "acoustic.onnx", path)
    remove(path)  # checks the interface of what it writes
    return path


def test_the_shipped_acoustic_model_is_compensated_and_remove_undoes_it(tmp_path: Path) -> None:
    """The shipped acoustic model is the trained one plus the compensation in voice.json's record; `remove` takes
    that out and leaves what follows it (the hybrid's sharpening) in place."""
    feeds = {"input": np.array([IDS]), "input_lengths": np.array([len(IDS)]), "scales": np.array(SCALES, np.float32)}
    shipped = ort_session(SHIPPED / "acoustic.onnx").run(None, feeds)
    trained = ort_session(_uncompensated(tmp_path)).run(None, feeds)
    record = _voice()["jetvox"]["training"]["variance"]
    scale, shift = read(SHIPPED / "acoustic.onnx")
    assert record["sentences"] == 150 and record["scale_min"] == pytest.approx(float(scale.min()), abs=1e-4)
    assert record["scale_mean"] == pytest.approx(float(scale.mean()), abs=1e-4)
    assert not np.allclose(shipped[0], trained[0], atol=1e-3)
    # the sharpening (x + a * (x - its 5-frame mean)) is linear per channel and keeps a constant, so it commutes
    # with the compensation: either way the shipped latents are the trained ones scaled and shifted
    np.testing.assert_allclose(shipped[0], trained[0] * scale[None, :, None] + shift[None, :, None], rtol=1e-4,
                               atol=1e-4)
    np.testing.assert_array_equal(shipped[1], trained[1])  # durations untouched
    with pytest.raises(InterfaceError, match="no global-variance compensation"):
        remove(tmp_path / "acoustic.onnx")
    graph = onnx.load(str(tmp_path / "acoustic.onnx")).graph
    sharpened = any(i.name == SHARP_NAME for i in graph.initializer)
    assert sharpened == ("sharpen" in _voice()["jetvox"]["training"]["acoustic"])  # kept where it was shipped


def test_the_compensation_scales_each_channel_and_keeps_durations(tmp_path: Path) -> None:
    path = _uncompensated(tmp_path)
    with pytest.raises(InterfaceError, match="no global-variance compensation"):
        read(path)
    before = ort_session(path).run(None, {"input": np.array([IDS]), "input_lengths": np.array([len(IDS)]),
                                          "scales": np.array(SCALES, np.float32)})
    rng = np.random.default_rng(0)
    comp = Compensation(rng.uniform(0.8, 1.5, 192).astype(np.float32), rng.normal(0, 0.1, 192).astype(np.float32),
                        sentences=1, pieces=1)
    apply(path, comp)
    after = ort_session(path).run(None, {"input": np.array([IDS]), "input_lengths": np.array([len(IDS)]),
                                         "scales": np.array(SCALES, np.float32)})
    np.testing.assert_allclose(after[0], before[0] * comp.scale[None, :, None] + comp.shift[None, :, None],
                               rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(after[1], before[1])  # durations untouched
    scale, shift = read(path)  # what vocoder training pairs apply (teacher_pairs.make_pairs)
    np.testing.assert_array_equal(scale, comp.scale)
    np.testing.assert_array_equal(shift, comp.shift)
    with pytest.raises(InterfaceError, match="compensated already"):
        apply(path, comp)


def test_fit_recovers_the_spread_a_teacher_has_over_the_student(tmp_path: Path) -> None:
    """A 'teacher' that is the student with every channel stretched 1.5x: the fit finds 1.5 and keeps the mean."""
    student = _uncompensated(tmp_path)
    teacher = tmp_path / "teacher"
    teacher.mkdir()
    shutil.copyfile(student, teacher / "acoustic.onnx")
    apply(teacher / "acoustic.onnx", Compensation(np.full(192, 1.5, np.float32), np.zeros(192, np.float32), 0, 0))
    voice = _voice()
    lines: list[str] = []
    comp = fit(teacher, student, voice["phoneme_id_map"], voice["espeak"]["voice"], count=4, say=lines.append)
    np.testing.assert_allclose(comp.scale, 1.5, rtol=1e-3)
    assert comp.sentences == 4 and comp.pieces >= 4 and lines[-1] == "global variance: 4/4 sentences"
    z = latent(ort_session(student), IDS, SCALES)[0]
    assert comp.to_json()["scale_mean"] == pytest.approx(1.5, abs=1e-3)
    assert comp.shift.shape == (z.shape[0],) and np.all(np.isfinite(comp.shift))
    same = fit(student.parent, student, voice["phoneme_id_map"], voice["espeak"]["voice"], count=2)
    np.testing.assert_allclose(same.scale, 1.0, rtol=1e-4)  # against itself: nothing to compensate
    np.testing.assert_allclose(same.shift, 0.0, atol=1e-4)


def test_the_command_names_a_missing_teacher(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _uncompensated(tmp_path)
    code = main([str(path), "--voice-json", str(SHIPPED / "voice.json"), "--teacher", str(tmp_path / "nowhere")])
    assert code == 2 and "run `jetvox provision --voice en_US-joe-medium`" in capsys.readouterr().err
