"""`jetvox provision`: split of the real default voice, manifest, idempotence, atomic writes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import onnx
import pytest

from jetvox.device import config
from jetvox.device.storage import atomic_path
from jetvox.device.voice import manifest as mf
from jetvox.device.voice.sources import VoiceError, resolve_voice
from jetvox.engines.base import TensorSpec
from jetvox.provisioning.pipeline import provision

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def voice_copy(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The default voice copied under another name, so tests may provision it from scratch."""
    src = resolve_voice("en_US-joe-medium")
    d = tmp_path_factory.mktemp("voice")
    model, cfg = d / "toyjoe.onnx", d / "toyjoe.onnx.json"
    shutil.copy(src.model, model)
    shutil.copy(src.config_path, cfg)
    return model, cfg


def _cfg(state: Path, model: Path) -> config.Config:
    return config.load(state_dir=str(state), voice__name="toyjoe", voice__model=str(model))


def test_provision_writes_models_and_manifest_then_is_a_noop(tmp_path: Path, voice_copy) -> None:
    model, _ = voice_copy
    lines: list[str] = []
    first = provision(_cfg(tmp_path, model), progress=lines.append)
    assert first.ran[:2] == ("split", "verify-split")
    assert any("verify-split 4/4" in line for line in lines), "progress is shown"
    man = mf.read_manifest(first.directory)
    assert man.sample_rate == 22050 and man.hop_length == 256 and man.latent_channels == 192
    assert man.split_check["max_abs_error"] <= 1e-4
    assert man.models["vocoder"].inputs == (TensorSpec(name="z", dtype="float32", shape=(1, 192, "frames")),)
    assert man.phoneme_id_map["^"] == [1]
    assert man.source.model_sha256 and "onnxruntime" in man.versions
    assert mf.Manifest.from_json(man.to_json()) == man  # the typed manifest round-trips its JSON
    mtime = (first.directory / "manifest.json").stat().st_mtime_ns
    again = provision(_cfg(tmp_path, model), progress=lines.append)
    assert again.ran == ()
    assert (first.directory / "manifest.json").stat().st_mtime_ns == mtime
    assert "voice already provisioned; nothing to do" in lines[-1]


def test_tampered_output_is_rebuilt(tmp_path: Path, voice_copy) -> None:
    model, _ = voice_copy
    res = provision(_cfg(tmp_path, model), progress=lambda _m: None)
    (res.directory / "vocoder.onnx").write_bytes(b"garbage")
    again = provision(_cfg(tmp_path, model), progress=lambda _m: None)
    assert "split" in again.ran
    onnx.checker.check_model(str(res.directory / "vocoder.onnx"))


def test_interrupted_write_leaves_no_partial_file(tmp_path: Path, voice_copy, monkeypatch) -> None:
    model, _ = voice_copy
    real_save = onnx.save
    calls = {"n": 0}

    def dying_save(proto, path, *a, **kw):  # write half a file, then "lose power"
        calls["n"] += 1
        real_save(proto, path, *a, **kw)
        Path(path).write_bytes(Path(path).read_bytes()[:1000])
        raise KeyboardInterrupt("simulated kill during write")

    monkeypatch.setattr(onnx, "save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        provision(_cfg(tmp_path, model), progress=lambda _m: None)
    d = mf.voice_dir(tmp_path, "toyjoe")
    assert calls["n"] == 1
    assert not (d / "acoustic.onnx").exists() and not (d / "manifest.json").exists()
    assert not list(d.glob(".tmp-*")), "temporary files are removed"
    monkeypatch.setattr(onnx, "save", real_save)
    res = provision(_cfg(tmp_path, model), progress=lambda _m: None)
    assert res.ran[:2] == ("split", "verify-split")


def test_leftover_temp_files_are_cleaned(tmp_path: Path, voice_copy) -> None:
    model, _ = voice_copy
    d = mf.voice_dir(tmp_path, "toyjoe")
    d.mkdir(parents=True)
    (d / ".tmp-vocoder.onnx.abc").write_bytes(b"half")
    lines: list[str] = []
    provision(_cfg(tmp_path, model), progress=lines.append)
    assert not list(d.glob(".tmp-*"))
    assert any("removed 1 partial file" in line for line in lines)


def test_atomic_path_keeps_old_file_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "f.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("new but unfinished")
            raise RuntimeError("boom")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.txt"]


def test_unreadable_voices_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(VoiceError, match="voice model not found"):
        resolve_voice("x", tmp_path / "missing.onnx")
    (tmp_path / "v.onnx").write_bytes(b"x")
    with pytest.raises(VoiceError, match="voice config not found"):
        resolve_voice("x", tmp_path / "v.onnx")
    (tmp_path / "v.onnx.json").write_text("{not json")
    with pytest.raises(VoiceError, match="unreadable"):
        resolve_voice("x", tmp_path / "v.onnx")
    (tmp_path / "v.onnx.json").write_text(json.dumps({"audio": {}}))
    with pytest.raises(VoiceError, match="no 'phoneme_id_map' section"):
        resolve_voice("x", tmp_path / "v.onnx")
    with pytest.raises(VoiceError, match="not built in"):
        resolve_voice("de_DE-nobody")


def test_manifest_errors_tell_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(mf.ManifestError, match="run `jetvox provision` first"):
        mf.read_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text("{")
    with pytest.raises(mf.ManifestError, match="unreadable"):
        mf.read_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text('{"format": 1, "voice": "v"}')
    with pytest.raises(mf.ManifestError, match="lacks 'source'"):
        mf.read_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text('{"format": 0}')
    with pytest.raises(mf.ManifestError, match="format 0, expected 1"):
        mf.read_manifest(tmp_path)
