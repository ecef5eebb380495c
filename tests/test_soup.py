"""Tests for the weight averaging of student checkpoints (provisioning.distill.soup)."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import pytest

torch = pytest.importorskip("torch", reason="the distillation extra (pip install .[train]) is not installed")

from jetvox.provisioning.distill.aligned import load_acoustic  # noqa: E402
from jetvox.provisioning.distill.export import export, load_student  # noqa: E402
from jetvox.provisioning.distill.models import AcousticConfig, StudentAcoustic  # noqa: E402
from jetvox.provisioning.distill.soup import SoupError, average, main, write_run  # noqa: E402

TINY = AcousticConfig(vocab=256, dim=16, enc_layers=1, dec_dilations=(1, 2))


def _ckpt(path: Path, seed: int, step: int, seconds: float, cfg: AcousticConfig = TINY, ema: bool = False) -> Path:
    torch.manual_seed(seed)
    model = StudentAcoustic(cfg)
    config = {"what": "acoustic", "steps": step, "model": asdict(cfg), "changes": []}
    state = {"config": config, "step": step, "seconds": seconds, "utterances": 10 * seed, "model": model.state_dict()}
    if ema:
        state["ema"] = {k: v + 1.0 for k, v in model.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return path


def test_the_soup_is_the_weighted_mean_and_says_what_it_mixed(tmp_path: Path) -> None:
    a, b = _ckpt(tmp_path / "a.pt", 1, 100, 50.0), _ckpt(tmp_path / "b.pt", 2, 300, 120.0)
    wa, wb = (torch.load(p, weights_only=False)["model"] for p in (a, b))
    soup = average([a, b], [1, 3])
    for name, tensor in soup["model"].items():
        assert torch.allclose(tensor, 0.25 * wa[name] + 0.75 * wb[name], atol=1e-6), name
    assert soup["step"] == 300 and soup["seconds"] == 120.0 and soup["utterances"] == 20
    record = soup["config"]["changes"][-1]
    assert record["step"] == 300 and record["soup"]["mix"] == [0.25, 0.75]
    assert [x["step"] for x in record["soup"]["of"]] == [100, 300]
    assert record["soup"]["of"][0]["weights"] != record["soup"]["of"][1]["weights"]


def test_a_written_soup_loads_and_exports_as_a_run(tmp_path: Path) -> None:
    a, b = _ckpt(tmp_path / "a.pt", 1, 100, 50.0), _ckpt(tmp_path / "b.pt", 2, 300, 120.0)
    ckpt = write_run(average([a, b]), tmp_path / "soup")
    model, _ = load_acoustic(ckpt)
    student, cfg, meta = load_student(tmp_path / "soup")
    assert cfg.what == "acoustic" and meta["step"] == 300 and cfg.changes[-1]["soup"]["mix"] == [0.5, 0.5]
    assert (tmp_path / "soup" / "losses.jsonl").read_text() == ""  # no steps trained in the soup itself
    mean = 0.5 * (torch.load(a, weights_only=False)["model"]["out.weight"]
                  + torch.load(b, weights_only=False)["model"]["out.weight"])
    assert torch.allclose(model.state_dict()["out.weight"], mean, atol=1e-6)
    assert export(student, "acoustic", tmp_path / "acoustic.onnx").is_file()


def test_the_averaged_weights_are_the_ones_export_takes(tmp_path: Path) -> None:
    a, b = _ckpt(tmp_path / "a.pt", 1, 100, 50.0, ema=True), _ckpt(tmp_path / "b.pt", 2, 300, 120.0, ema=True)
    soup = average([a, b])
    ea, eb = (torch.load(p, weights_only=False)["ema"] for p in (a, b))
    assert torch.allclose(soup["model"]["out.bias"], 0.5 * (ea["out.bias"] + eb["out.bias"]), atol=1e-6)


def test_different_students_or_sizes_are_refused(tmp_path: Path) -> None:
    a = _ckpt(tmp_path / "a.pt", 1, 100, 50.0)
    wider = _ckpt(tmp_path / "w.pt", 2, 300, 120.0, cfg=AcousticConfig(vocab=256, dim=24, enc_layers=1,
                                                                         dec_dilations=(1, 2)))
    with pytest.raises(SoupError, match="model"):
        average([a, wider])
    other = tmp_path / "v.pt"
    state = torch.load(a, weights_only=False)
    state["config"] = {**state["config"], "what": "vocoder"}
    torch.save(state, other)
    with pytest.raises(SoupError, match="what 'vocoder' differs"):
        average([a, other])
    with pytest.raises(SoupError, match="at least two"):
        average([a])
    with pytest.raises(SoupError, match="non-negative weights"):
        average([a, a], [1, -1])


def test_cli_reports_a_missing_checkpoint_without_a_traceback(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    a = _ckpt(tmp_path / "a.pt", 1, 100, 50.0)
    assert main([str(a), str(tmp_path / "nope.pt"), "--out", str(tmp_path / "soup")]) == 2
    err = capsys.readouterr().err
    assert "nope.pt not found" in err and "Traceback" not in err
    assert not (tmp_path / "soup").exists()
    assert main([str(a), str(a), "--out", str(tmp_path / "soup")]) == 0
    assert (tmp_path / "soup" / "ckpt.pt").is_file()
