"""The time-domain student vocoder: reading a Piper decoder, pruning it, streaming it and training it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the distillation extra (pip install .[train]) is not installed")

from jetvox.provisioning.distill import hifigan  # noqa: E402
from jetvox.provisioning.distill.export import export  # noqa: E402
from jetvox.provisioning.distill.models import HOP  # noqa: E402
from jetvox.provisioning.distill.train import TeacherDecoder, TrainConfig, train  # noqa: E402
from tests.test_distill import OVERLAP, _chunked, _fake_cache  # noqa: E402

SMALL = hifigan.HifiConfig(channels=(24, 16, 12, 8))


class _PiperNames(torch.nn.Module):
    """Runs a HifiVocoder with its weights named as in a Piper voice's decoder (``dec.conv_pre``, ``dec.ups.N``,
    ``dec.resblocks.N.convs.M``, ``dec.conv_post``)."""

    def __init__(self, model: hifigan.HifiVocoder) -> None:
        super().__init__()
        self.dec = torch.nn.Module()
        self.dec.conv_pre, self.dec.ups, self.dec.conv_post = model.pre, model.ups, model.post
        self.dec.resblocks = torch.nn.ModuleList(block for stage in model.res for block in stage)  # type: ignore[attr-defined]
        self.run = [model]  # a list, not a submodule: only the names above are exported

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.run[0](z)


def _piper_decoder_onnx(path: Path, seed: int = 0) -> hifigan.HifiVocoder:
    """A random decoder exported to ``path`` in Piper's weight names; returns it."""
    torch.manual_seed(seed)
    model = hifigan.HifiVocoder(SMALL).eval()
    torch.onnx.export(_PiperNames(model), (torch.zeros(1, 192, 12),), str(path), input_names=["z"],
                      output_names=["audio"], dynamic_axes={"z": {2: "frames"}}, opset_version=17, dynamo=False)
    return model


def test_a_piper_decoder_is_read_with_its_shape_and_computes_the_same_audio(tmp_path: Path) -> None:
    import onnxruntime as ort

    model = _piper_decoder_onnx(tmp_path / "vocoder.onnx")
    cfg, state = hifigan.teacher_decoder(tmp_path / "vocoder.onnx")
    assert cfg == SMALL
    again = hifigan.HifiVocoder(cfg)
    again.load_state_dict(state)
    z = np.random.default_rng(1).standard_normal((1, 192, 20)).astype(np.float32)
    expected = ort.InferenceSession(str(tmp_path / "vocoder.onnx"), providers=["CPUExecutionProvider"]).run(
        None, {"z": z})[0].reshape(-1)
    with torch.no_grad():
        np.testing.assert_allclose(again.eval()(torch.from_numpy(z)).numpy().reshape(-1), expected, atol=1e-5)
        np.testing.assert_allclose(model(torch.from_numpy(z)).numpy().reshape(-1), expected, atol=1e-5)


def test_a_model_that_is_not_a_piper_decoder_is_refused_by_name(tmp_path: Path) -> None:
    torch.onnx.export(torch.nn.Conv1d(192, 1, 3), (torch.zeros(1, 192, 4),), str(tmp_path / "other.onnx"),
                      input_names=["z"], opset_version=17, dynamo=False)
    with pytest.raises(ValueError, match="expected a Piper HiFi-GAN decoder"):
        hifigan.teacher_decoder(tmp_path / "other.onnx")


def test_pruning_keeps_the_strongest_channels_and_all_of_them_changes_nothing(tmp_path: Path) -> None:
    model = _piper_decoder_onnx(tmp_path / "vocoder.onnx")
    energy = [torch.tensor([0.1, 3.0, 2.0, 0.5]), torch.tensor([1.0, 0.0, 5.0])]
    assert [k.tolist() for k in hifigan.kept_channels(energy, (2, 1))] == [[1, 2], [2]]
    with pytest.raises(ValueError, match="must keep 1..N"):
        hifigan.kept_channels(energy, (5, 1))
    z = torch.randn(2, 192, 16)
    whole, keep = hifigan.pruned_teacher(tmp_path / "vocoder.onnx", SMALL.channels, [z])
    with torch.no_grad():
        torch.testing.assert_close(whole(z), model(z))
    small, keep = hifigan.pruned_teacher(tmp_path / "vocoder.onnx", (12, 8, 6, 4), [z])
    assert small.cfg.channels == (12, 8, 6, 4) and [len(k) for k in keep] == [12, 8, 6, 4]
    energy = hifigan.stage_energy(model, [z])
    for e, k in zip(energy, keep):  # no dropped channel carries more energy than a kept one
        dropped = torch.ones(len(e), dtype=torch.bool)
        dropped[k] = False
        assert not dropped.any() or e[dropped].max() <= e[k].min()
    with torch.no_grad():  # the kept channels start as the teacher's own computation on them
        _, mine = small.stages(z)
        _, theirs = model.stages(z)
        torch.testing.assert_close(mine[0], theirs[0][:, keep[0]])
        assert float(hifigan.stage_distance(mine[:1], theirs[:1], keep[:1])) < 1e-10
        assert float(hifigan.stage_distance(mine, theirs, keep)) > 0  # later stages miss the dropped channels


def test_the_default_size_streams_in_chunks_exactly_as_whole(tmp_path: Path) -> None:
    import onnxruntime as ort

    assert hifigan.HifiConfig().receptive_frames() <= OVERLAP
    torch.manual_seed(0)
    path = export(hifigan.HifiVocoder(), "vocoder", tmp_path / "vocoder.onnx")  # random weights
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    z = np.random.default_rng(2).standard_normal((1, 192, 120)).astype(np.float32)
    full = sess.run(["audio"], {"z": z})[0][0]
    assert full.shape == (120 * HOP,)
    for first, size in ((8, 32), (20, 25)):
        np.testing.assert_allclose(_chunked(sess, z, first, size), full, atol=1e-4)


def test_receptive_field_is_what_its_config_says() -> None:
    """A change at one frame moves the audio no further than ``receptive_frames`` either side."""
    torch.manual_seed(0)
    cfg = hifigan.HifiConfig(channels=(8, 8, 8, 8))
    model = hifigan.HifiVocoder(cfg).eval()
    z = torch.randn(1, 192, 60)
    bumped = z.clone()
    bumped[:, :, 30] += 5.0
    with torch.no_grad():
        diff = (model(bumped) - model(z)).abs().reshape(-1, HOP).amax(1)
    moved = torch.nonzero(diff > 1e-7).reshape(-1)
    reach = max(30 - int(moved.min()), int(moved.max()) - 30)
    assert 0 < reach <= cfg.receptive_frames()


def test_a_pruned_run_starts_as_the_teacher_cut_down_trains_on_its_stages_and_resumes(tmp_path: Path) -> None:
    """``train --prune-teacher``: the first checkpoint is the pruned teacher; the stages' distance is logged and
    the kept channels travel with every checkpoint, so a resumed run holds the same channels to the teacher."""
    _piper_decoder_onnx(tmp_path / "vocoder.onnx")
    cache = _fake_cache(tmp_path / "cache")
    run = tmp_path / "run"
    cfg = TrainConfig(what="vocoder", steps=2, batch=2, segment=8, context=4, ckpt_every=2, log_every=1, lr=1e-4)
    summary = train(cfg, cache, run, teacher=TeacherDecoder(tmp_path / "vocoder.onnx", (12, 8, 6, 4), 1.0))
    state = torch.load(run / "ckpt.pt", weights_only=False)
    assert summary["steps"] == 2 and state["config"]["model"]["kind"] == hifigan.KIND
    assert state["config"]["stage_weight"] == 1.0 and [len(k) for k in state["teacher_channels"]] == [12, 8, 6, 4]
    lines = [json.loads(x) for x in (run / "losses.jsonl").read_text().splitlines()]
    assert all(np.isfinite(x["stages"]) and x["stages"] > 0 for x in lines)
    keep = [k.clone() for k in state["teacher_channels"]]
    again = train(TrainConfig(what="vocoder", steps=3), cache, run, resume=True,
                  teacher=TeacherDecoder(tmp_path / "vocoder.onnx"))
    state = torch.load(run / "ckpt.pt", weights_only=False)
    assert again["steps"] == 3 and all(torch.equal(a, b) for a, b in zip(keep, state["teacher_channels"]))
    with pytest.raises(ValueError, match="needs the teacher's vocoder.onnx"):
        train(TrainConfig(what="vocoder", steps=4), cache, run, resume=True)


def test_prune_flags_are_checked_before_anything_runs(capsys: pytest.CaptureFixture[str]) -> None:
    from jetvox.provisioning.distill.train import main

    for argv, expected in ((["--prune-teacher", "64,x"], "expects channels per stage"),
                           (["--stage-weight", "1"], "given with --prune-teacher"),
                           (["--prune-teacher", "8,8,8,8", "--stage-weight", "-1"], "non-negative")):
        with pytest.raises(SystemExit):
            main(["--what", "vocoder", "--steps", "1", *argv])
        assert expected in capsys.readouterr().err
