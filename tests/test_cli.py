"""The `jetvox` command line as a user runs it: WAV, raw PCM, stdin, and clear errors."""

from __future__ import annotations

import os
import subprocess
import sys
import wave
from pathlib import Path

import pytest

from tests.voicefix import provisioned_state_dir

pytestmark = pytest.mark.slow
JETVOX = [sys.executable, "-m", "jetvox.device.cli"]


def run(args: list[str], state: Path | None = None, stdin: bytes | None = None, timeout: float = 120,
        drop: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env["JETVOX_STATE_DIR"] = str(state or provisioned_state_dir())
    return subprocess.run(JETVOX + args, input=stdin, capture_output=True, env=env, timeout=timeout)


def test_say_writes_a_wav(tmp_path: Path) -> None:
    out = tmp_path / "out.wav"
    res = run(["say", "-o", str(out), "The kitchen is 21.5 °C."])
    assert res.returncode == 0, res.stderr.decode()
    with wave.open(str(out)) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, 22050)
        assert w.getnframes() > 22050 * 0.8


def test_say_raw_streams_s16le_to_stdout() -> None:
    res = run(["say", "--raw", "Door open."])
    assert res.returncode == 0, res.stderr.decode()
    assert len(res.stdout) % 2 == 0 and len(res.stdout) > 2 * 22050 * 0.3


def test_say_stdin_speaks_each_line_and_skips_bad_ones(tmp_path: Path) -> None:
    out = tmp_path / "lines.wav"
    res = run(["say", "--stdin", "-o", str(out)], stdin="Line one.\n\n😀\nLine two.\n".encode())
    assert res.returncode == 1  # one line had nothing speakable: reported, the rest spoken
    assert b"skipped line" in res.stderr
    with wave.open(str(out)) as w:
        assert w.getnframes() > 22050 * 1.0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["say", ""], b"nothing to say: the text is empty"),
        (["say", "-o", "x.wav", "--raw", "hi"], b"choose one of -o FILE and --raw"),
        (["say", "--device", "no-such-device-xyz", "hello"], b"write a file instead with -o out.wav"),
    ],
)
def test_say_errors_are_clear(args: list[str], message: bytes) -> None:
    res = run(args)
    assert res.returncode == 1
    assert message in res.stderr
    assert b"Traceback" not in res.stderr


def test_unprovisioned_voice_says_what_to_do(tmp_path: Path) -> None:
    res = run(["say", "-o", str(tmp_path / "x.wav"), "hi"], state=tmp_path)
    assert res.returncode == 1
    assert b"run `jetvox provision` first" in res.stderr


def test_bad_config_names_the_key(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("synthesis:\n  chunk_frame: 3\n")
    res = run(["say", "--config", str(cfg), "hi"])
    assert res.returncode == 2
    assert b"unknown key synthesis.chunk_frame" in res.stderr


def test_provision_errors_are_one_line_without_a_traceback(tmp_path: Path) -> None:
    """A user's mistakes in `jetvox provision` (unknown voice, broken model, bad setting) end in one clear line."""
    res = run(["provision", "--voice", "de_DE-nobody"], state=tmp_path)
    assert res.returncode == 1 and b"jetvox: voice 'de_DE-nobody' is not built in" in res.stderr
    model = tmp_path / "broken.onnx"
    model.write_bytes(b"this is not a protobuf")
    Path(f"{model}.json").write_text('{"audio": {"sample_rate": 22050}, "phoneme_id_map": {"^": [1]}}')
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"voice:\n  name: broken\n  model: {model}\n")
    res = run(["provision", "--config", str(cfg)], state=tmp_path)
    assert res.returncode == 1 and b"is not a readable ONNX model" in res.stderr
    cfg.write_text("provision:\n  int8: sometimes\n")
    res = run(["provision", "--config", str(cfg)], state=tmp_path, drop=("JETVOX_INT8",))  # the file decides
    assert res.returncode == 2 and b"provision.int8: expected one of full, quick, off" in res.stderr
    for r in (res,):
        assert b"Traceback" not in r.stderr and len(r.stderr.decode().strip().splitlines()) == 1


def test_bench_rejects_an_unknown_system_clearly(tmp_path: Path) -> None:
    res = run(["bench", "--systems", "espeak", "--limit", "1"])
    assert res.returncode == 1 and b"unknown or unavailable systems ['espeak']" in res.stderr
    assert b"Traceback" not in res.stderr
