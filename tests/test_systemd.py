"""The systemd units: they verify, the daemon's hardening rates 3.0 or better, and install.sh stages them."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
UNITS = ROOT / "systemd"
ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze is not installed (apt package systemd)")


def unit(name: str) -> dict[str, list[str]]:
    """``Key`` -> values of a unit file (sections merged; enough for these checks)."""
    out: dict[str, list[str]] = {}
    for line in (UNITS / name).read_text().splitlines():
        line = line.strip()
        if line and not line.startswith(("#", ";", "[")) and "=" in line:
            key, _, value = line.partition("=")
            out.setdefault(key, []).append(value)
    return out


def test_daemon_unit_contract() -> None:
    u = unit("jetvox.service")
    assert u["Type"] == ["notify"] and u["Restart"] == ["on-failure"] and int(u["WatchdogSec"][0]) > 0
    assert u["NotifyAccess"] == ["main"]
    assert u["StateDirectory"] == ["jetvox"] and "JETVOX_STATE_DIR=/var/lib/jetvox" in u["Environment"]
    assert "jetvox-provision.service" in u["Requires"][0] and "jetvox-provision.service" in u["After"][0]
    assert set(u["SupplementaryGroups"][0].split()) >= {"audio", "video", "render"}
    allowed = " ".join(u["DeviceAllow"])
    for dev in ("char-alsa", "/dev/nvmap", "/dev/nvhost-ctrl", "/dev/nvhost-ctrl-gpu", "char-nvidia-frontend"):
        assert dev in allowed
    assert u["DevicePolicy"] == ["closed"] and u["User"] == ["jetvox"]
    assert u["ExecStart"][0].startswith("/opt/jetvox/venv/bin/jetvox serve --config /etc/jetvox/jetvox.yaml")


def test_provision_unit_contract() -> None:
    u = unit("jetvox-provision.service")
    assert u["Type"] == ["oneshot"] and "jetvox.service" in u["Before"][0]
    assert u["ExecStart"][0].startswith("/opt/jetvox/venv/bin/jetvox provision")
    assert u["StateDirectory"] == ["jetvox"] and "JETVOX_STATE_DIR=/var/lib/jetvox" in u["Environment"]


@needs_analyze
def test_units_verify(tmp_path: Path) -> None:
    # verify checks that ExecStart exists: point it at this venv's jetvox instead of /opt/jetvox
    exe = Path(sys.executable).parent / "jetvox"
    if not exe.exists():
        pytest.skip(f"no jetvox console script next to {sys.executable}")
    for name in ("jetvox.service", "jetvox-provision.service"):
        text = (UNITS / name).read_text().replace("/opt/jetvox/venv/bin/jetvox", str(exe))
        (tmp_path / name).write_text(text)
    res = subprocess.run([ANALYZE, "verify", str(tmp_path / "jetvox.service"), str(tmp_path / "jetvox-provision.service")],
                         capture_output=True, text=True, timeout=60)
    problems = [line for line in res.stderr.splitlines() if "sysinit.target" not in line]
    assert res.returncode == 0 and not problems, res.stderr


def exposure(name: str) -> float:
    res = subprocess.run([ANALYZE, "security", "--offline=true", str(UNITS / name)], capture_output=True,
                         text=True, timeout=60, env={**os.environ, "SYSTEMD_COLORS": "0"})
    m = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", res.stdout + res.stderr)
    assert m, res.stdout + res.stderr
    return float(m.group(1))


@needs_analyze
def test_security_rating() -> None:
    try:
        rating = exposure("jetvox.service")
    except AssertionError as exc:
        if "offline" in str(exc) and "unrecognized" in str(exc):
            pytest.skip("this systemd-analyze has no --offline (systemd < 250)")
        raise
    assert rating <= 3.0, f"jetvox.service exposure {rating}"
    assert exposure("jetvox-provision.service") <= 3.0


def test_install_script_stages_everything_and_keeps_an_existing_config(tmp_path: Path) -> None:
    env = {**os.environ, "DESTDIR": str(tmp_path), "JETVOX_SKIP_VENV": "1"}
    script = ROOT / "scripts" / "install.sh"
    res = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "opt/jetvox/src/device/daemon/service.py").is_file()
    assert not (tmp_path / "opt/jetvox/src/.venv").exists()
    for name in ("jetvox.service", "jetvox-provision.service"):
        assert (tmp_path / "etc/systemd/system" / name).read_text() == (UNITS / name).read_text()
    conf = tmp_path / "etc/jetvox/jetvox.yaml"
    assert conf.read_text() == (ROOT / "config/jetvox.example.yaml").read_text()
    conf.write_text("output: mqtt\n")
    res = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and "keeping the existing" in res.stdout, res.stdout + res.stderr
    assert conf.read_text() == "output: mqtt\n"
