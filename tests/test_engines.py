"""The Engine protocol's boundary checks and the ONNX Runtime backend, on tiny real ONNX models."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from jetvox.engines import Engine, EngineError, TensorSpec, check_feeds, open_engine
from jetvox.engines.onnxrt import SPIN_KEY, OnnxRuntimeEngine, choose_providers


def _scale_model(path: Path) -> Path:
    """y[1, C, T] = x * 2 for C = 4."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, "T"])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, "T"])
    two = helper.make_tensor("two", TensorProto.FLOAT, [], [2.0])
    graph = helper.make_graph([helper.make_node("Mul", ["x", "two"], ["y"])], "g", [x], [y], [two])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


@pytest.fixture()
def model(tmp_path: Path) -> Path:
    return _scale_model(tmp_path / "scale.onnx")


SPECS = [TensorSpec("x", "float32", (1, 4, "T"))]


def test_check_feeds_accepts_dynamic_axis() -> None:
    check_feeds(SPECS, {"x": np.zeros((1, 4, 7), np.float32)})


@pytest.mark.parametrize(
    ("feeds", "message"),
    [
        ({}, "expected inputs ['x'], got []"),
        ({"x": np.zeros((1, 4, 7), np.float32), "extra": np.zeros(1)}, "got ['extra', 'x']"),
        ({"x": np.zeros((1, 4, 7), np.float64)}, "expected dtype float32, got float64"),
        ({"x": np.zeros((4, 7), np.float32)}, "expected rank 3, got shape (4, 7)"),
        ({"x": np.zeros((1, 5, 7), np.float32)}, "axis 1 must be 4, got shape (1, 5, 7)"),
        ({"x": np.zeros((1, 4, 0), np.float32)}, "axis 2 is empty"),
        ({"x": [[[0.0]]]}, "expected a numpy array, got list"),
    ],
)
def test_check_feeds_rejects_with_a_clear_message(feeds: dict, message: str) -> None:
    with pytest.raises(EngineError, match=message.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)").replace("]", r"\]")):
        check_feeds(SPECS, feeds)


def test_onnxruntime_engine_runs_and_reports_specs(model: Path) -> None:
    with OnnxRuntimeEngine(model) as eng:
        assert isinstance(eng, Engine)
        assert eng.inputs == [TensorSpec("x", "float32", (1, 4, "T"))]
        assert eng.outputs[0].name == "y"
        out = eng.infer({"x": np.ones((1, 4, 3), np.float32)})
        np.testing.assert_array_equal(out["y"], np.full((1, 4, 3), 2.0, np.float32))
        assert eng.providers == ["CPUExecutionProvider"]
    with pytest.raises(EngineError, match="closed"):
        eng.infer({"x": np.ones((1, 4, 3), np.float32)})


def test_idle_threads_do_not_spin_unless_asked(model: Path) -> None:
    """Sessions that take turns on the same cores must not busy-wait (the voice's acoustic and vocoder do)."""

    def spinning(engine: object) -> str:
        return engine._session.get_session_options().get_session_config_entry(SPIN_KEY)  # type: ignore[attr-defined]

    with open_engine(model) as quiet, open_engine(model, spin=True) as busy:
        assert (spinning(quiet), spinning(busy)) == ("0", "1")


def test_missing_or_broken_model_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(EngineError, match="model file not found"):
        OnnxRuntimeEngine(tmp_path / "nope.onnx")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(EngineError, match="could not load"):
        OnnxRuntimeEngine(bad)


def test_providers_default_to_cpu_and_unknown_ones_are_refused() -> None:
    assert choose_providers()[-1] == "CPUExecutionProvider"
    with pytest.raises(EngineError, match="not installed"):
        choose_providers(["NoSuchExecutionProvider"])


def test_open_engine_backends(model: Path, tmp_path: Path) -> None:
    with open_engine(model) as eng:
        assert eng.backend == "onnxruntime"
    with pytest.raises(EngineError, match="no TensorRT engine was built"):
        open_engine(model, backend="tensorrt")
    with pytest.raises(EngineError, match="backend must be"):
        open_engine(model, backend="cuda")
