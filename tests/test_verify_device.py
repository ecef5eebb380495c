"""Issue 11, defect 5: `make verify-device` builds exactly the engines the daemon loads and fails beyond its limits.

TensorRT and a GPU cannot run here: tests/trt_fake.py stands in for tensorrt and pycuda, and its engines
built from real ONNX files run those files with ONNX Runtime. So this proves the path (provisioning's plan,
the stage engines, loading them as `jetvox serve` does, each comparison and its limit), not TensorRT's numerics.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from jetvox.device import config
from jetvox.device.evaluation.sentences import EVAL_SENTENCES
from jetvox.engines.tensorrt import CudaWorker
from jetvox.provisioning.tensorrt import verify_device

try:
    from tests import trt_fake
except ImportError:  # tests/ itself on sys.path
    import trt_fake  # type: ignore[no-redef]

pytestmark = pytest.mark.slow


@pytest.fixture(params=["10.3.0", "8.6.2"], ids=["trt10.3", "trt8.6"])
def fakes(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[trt_fake.Fakes]:
    f = trt_fake.make_fakes(request.param)
    f.gpu.auto_complete = True
    f.install(monkeypatch)
    yield f
    if CudaWorker._shared is not None:
        CudaWorker._shared.shutdown()


def test_verify_device_passes_engines_that_match_and_fails_ones_that_do_not(
    fakes: trt_fake.Fakes, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = config.load(state_dir=str(tmp_path), voice__name="joe-fast", provision__int8="off")
    report = verify_device.verify(cfg, EVAL_SENTENCES[:2])
    assert report["passed"], report["failures"]
    engines = report["engines"]
    assert set(engines) == {"acoustic_encoder", "acoustic_decoder", "vocoder"}  # no engine of the whole model
    assert all("engine" in e and e["precision"] == "fp16" for e in engines.values())
    assert report["backends"] == {"acoustic": "tensorrt+onnxruntime+tensorrt", "vocoder": "tensorrt"}
    f = report["figures"]
    assert f["changed_durations"] == 0 and f["decoder_log_mel"] < 1e-6 and f["vocoder_log_mel"] < 1e-6
    built = {c.args[0] for c in fakes.rec.named("parse_from_file")}
    assert {Path(p).name for p in built} == {"acoustic.encoder.onnx", "acoustic.decoder.onnx", "vocoder.onnx"}

    fakes.gpu.output_error = 0.05  # every engine now adds noise at 5% of its outputs' peak
    report = verify_device.verify(cfg, EVAL_SENTENCES[:2])
    assert not report["passed"]
    text = "\n".join(report["failures"])
    assert "encoder: " in text and "vocoder: log-mel distance" in text and "word error rate" in text
    assert "naturalness: DNSMOS P.808" in text
    assert report["figures"]["decoder_log_mel"] > 100 * f["decoder_log_mel"]

    argv = ["--state-dir", str(tmp_path), "--voice", "joe-fast", "--sentences", "1", "--json", str(tmp_path / "r.json")]
    assert verify_device.main(argv) == verify_device.EXIT_MISMATCH
    assert "verify-device: FAIL" in capsys.readouterr().err and (tmp_path / "r.json").is_file()


def test_verify_device_fails_when_an_engine_could_not_be_built(fakes: trt_fake.Fakes, tmp_path: Path) -> None:
    fakes.gpu.build_fails = True
    cfg = config.load(state_dir=str(tmp_path), voice__name="joe-fast", provision__int8="off")
    report = verify_device.verify(cfg, EVAL_SENTENCES[:1])
    assert not report["passed"]
    assert sum("could not build" in line for line in report["failures"]) == 3
