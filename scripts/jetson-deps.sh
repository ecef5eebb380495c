#!/usr/bin/env bash
# On a Jetson: let the venv use JetPack's TensorRT and build pycuda against JetPack's CUDA.
# Usage: scripts/jetson-deps.sh VENV_PYTHON   (install.sh calls it when /etc/nv_tegra_release exists)
# Exits 0 when the TensorRT path is ready; 3 when it is not (the appliance then runs on ONNX Runtime),
# with a message saying what is missing and how to add it.
set -uo pipefail
PY=${1:?usage: jetson-deps.sh VENV_PYTHON}
CUDA_HOME=${CUDA_HOME:-/usr/local/cuda}
say() { echo "jetson-deps: $*"; }

if ! "$PY" -c 'import tensorrt, sys; sys.exit(0 if hasattr(tensorrt, "Runtime") else 1)' 2>/dev/null; then
  say "JetPack's TensorRT Python bindings are not visible to $PY."
  say "install them (sudo apt-get install python3-libnvinfer) and create the venv with --system-site-packages;"
  say "until then jetvox runs on ONNX Runtime"
  exit 3
fi

NVCC=$(command -v nvcc || true)
[ -n "$NVCC" ] || { [ -x "$CUDA_HOME/bin/nvcc" ] && NVCC="$CUDA_HOME/bin/nvcc"; }
if [ -z "$NVCC" ]; then
  say "nvcc not found (looked on PATH and in $CUDA_HOME/bin): pycuda must be compiled against JetPack's CUDA."
  say "install the CUDA toolkit (sudo apt-get install nvidia-jetpack, or cuda-toolkit-12-6), then run:"
  say "  $0 $PY"
  say "until then jetvox runs on ONNX Runtime"
  exit 3
fi

say "building pycuda with $NVCC"
export CUDA_ROOT CUDA_HOME PATH
CUDA_ROOT=$(dirname "$(dirname "$NVCC")")
PATH="$CUDA_ROOT/bin:$PATH"
if ! "$PY" -m pip install -q 'pycuda>=2022.2'; then
  say "pip could not build pycuda (see above); jetvox runs on ONNX Runtime until it is installed"
  exit 3
fi
"$PY" -c 'import pycuda.driver' || { say "pycuda was installed but does not import"; exit 3; }
say "TensorRT and pycuda ready"
