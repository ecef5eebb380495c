"""scripts/jetson-deps.sh, the Jetson half of `make install` (issue 11, defect 6), run with a stand-in python and nvcc.

No Jetson here: the stand-ins record what the script asks of them; the real script runs unchanged."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "jetson-deps.sh"

FAKE_PYTHON = """#!/bin/sh
echo "$*|CUDA_ROOT=${CUDA_ROOT:-}" >> "$CALLS"
case "$*" in
  *"import tensorrt"*) [ "$HAS_TRT" = 1 ] ;;
  *"pip install"*) exit 0 ;;
  *"import pycuda.driver"*) exit 0 ;;
esac
"""


def _run(tmp_path: Path, has_trt: bool, with_nvcc: bool) -> tuple[subprocess.CompletedProcess, list[str]]:
    py = tmp_path / "python"
    py.write_text(FAKE_PYTHON)
    py.chmod(py.stat().st_mode | stat.S_IEXEC)
    cuda = tmp_path / "cuda"
    (cuda / "bin").mkdir(parents=True)
    if with_nvcc:
        nvcc = cuda / "bin" / "nvcc"
        nvcc.write_text("#!/bin/sh\n")
        nvcc.chmod(0o755)
    calls = tmp_path / "calls"
    env = {"PATH": "/usr/bin:/bin", "CUDA_HOME": str(cuda), "CALLS": str(calls), "HAS_TRT": "1" if has_trt else "0"}
    res = subprocess.run(["bash", str(SCRIPT), str(py)], capture_output=True, text=True, env=env, timeout=30)
    return res, calls.read_text().splitlines() if calls.exists() else []


def test_builds_pycuda_against_jetpacks_cuda(tmp_path: Path) -> None:
    res, calls = _run(tmp_path, has_trt=True, with_nvcc=True)
    assert res.returncode == 0, res.stdout + res.stderr
    pip = [c for c in calls if "pip install" in c]
    assert pip == [f"-m pip install -q pycuda>=2022.2|CUDA_ROOT={tmp_path / 'cuda'}"]
    assert "TensorRT and pycuda ready" in res.stdout


def test_missing_nvcc_is_named_and_nothing_is_built(tmp_path: Path) -> None:
    res, calls = _run(tmp_path, has_trt=True, with_nvcc=False)
    assert res.returncode == 3
    assert "nvcc not found" in res.stdout and "cuda-toolkit" in res.stdout and "ONNX Runtime" in res.stdout
    assert not [c for c in calls if "pip install" in c]


def test_missing_tensorrt_bindings_are_named(tmp_path: Path) -> None:
    res, calls = _run(tmp_path, has_trt=False, with_nvcc=True)
    assert res.returncode == 3
    assert "python3-libnvinfer" in res.stdout and "--system-site-packages" in res.stdout
    assert not [c for c in calls if "pip install" in c]


def test_install_runs_it_on_a_jetson_only() -> None:
    text = (ROOT / "scripts" / "install.sh").read_text()
    assert 'if [ -e /etc/nv_tegra_release ]; then' in text and "scripts/jetson-deps.sh" in text
    assert os.access(SCRIPT, os.X_OK)
