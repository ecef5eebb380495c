"""What this device is: Jetson model, L4T/JetPack, TensorRT, GPU and memory, each probe tolerating absence."""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PlatformInfo:
    """The facts about a device that decide how (and whether) TensorRT engines are built."""

    model: str | None
    """Board model from the device tree, e.g. ``NVIDIA Jetson Orin Nano Developer Kit``."""
    is_jetson: bool
    """True on an NVIDIA Jetson (device-tree model or an L4T release file)."""
    l4t_version: str | None
    """L4T (Jetson Linux) release, e.g. ``35.4.1`` or ``36.3.0``."""
    jetpack_version: str | None
    """JetPack release from the ``nvidia-jetpack`` package, e.g. ``5.1.2``."""
    tensorrt_version: str | None
    """``tensorrt.__version__``, or None when TensorRT is not installed."""
    gpu_name: str | None
    """CUDA device 0's name (``Orin`` on Jetson Orin), or None without pycuda or a GPU."""
    sm_version: str | None
    """Compute capability of device 0, e.g. ``8.7`` (Orin)."""
    fast_int8: bool | None
    """TensorRT's ``platform_has_fast_int8`` (None without TensorRT)."""
    fast_fp16: bool | None
    """TensorRT's ``platform_has_fast_fp16`` (None without TensorRT)."""
    total_memory_bytes: int | None
    """MemTotal from /proc/meminfo; on a Jetson the GPU shares this memory."""


def _read_text(path: Path) -> str | None:
    try:
        return path.read_bytes().decode("utf-8", errors="replace")
    except OSError:
        return None


def jetson_model(root: Path) -> str | None:
    """The device-tree model string (NULs stripped), or None."""
    text = _read_text(root / "proc" / "device-tree" / "model")
    if text is None:
        return None
    model = text.replace("\x00", "").strip()
    return model or None


def l4t_version(root: Path) -> str | None:
    """``35.4.1`` from ``/etc/nv_tegra_release`` (``# R35 (release), REVISION: 4.1, ...``), or None."""
    text = _read_text(root / "etc" / "nv_tegra_release")
    if text is None:
        return None
    match = re.search(r"R(\d+)\s*\(\w+\),\s*REVISION:\s*([\d.]+)", text)
    if match is None:
        return None
    major, revision = match.group(1), match.group(2).strip(".")
    return f"{major}.{revision}"


def jetpack_version(dpkg_query: str = "dpkg-query") -> str | None:
    """The installed ``nvidia-jetpack`` package version without its build suffix, or None."""
    exe = shutil.which(dpkg_query)
    if exe is None:
        return None
    try:
        out = subprocess.run(
            [exe, "-W", "-f=${Version}", "nvidia-jetpack"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    version = out.stdout.strip()
    if out.returncode != 0 or not version:
        return None
    return version.split("-", 1)[0]


def total_memory_bytes(root: Path) -> int | None:
    """MemTotal from ``/proc/meminfo`` in bytes, or None."""
    text = _read_text(root / "proc" / "meminfo")
    if text is None:
        return None
    match = re.search(r"^MemTotal:\s*(\d+)\s*kB", text, re.MULTILINE)
    return int(match.group(1)) * 1024 if match else None


def tensorrt_facts() -> tuple[str | None, bool | None, bool | None]:
    """(version, fast_int8, fast_fp16) from TensorRT, or Nones when it is not installed."""
    try:
        import tensorrt as trt

        from jetvox.engines.tensorrt import tensorrt_logger, tensorrt_version

        version = tensorrt_version(trt)
    except ImportError:
        return None, None, None
    try:
        builder = trt.Builder(tensorrt_logger())
        return version, bool(builder.platform_has_fast_int8), bool(builder.platform_has_fast_fp16)
    except Exception as exc:  # no GPU, driver mismatch: TensorRT raises its own types
        log.warning("TensorRT %s is installed but could not create a builder: %s", version, exc)
        return version, None, None


def gpu_facts() -> tuple[str | None, str | None]:
    """(name, compute capability ``major.minor``) of CUDA device 0 through pycuda, or Nones."""
    try:
        import pycuda.driver as cuda
    except ImportError:
        return None, None
    try:
        cuda.init()
        device = cuda.Device(0)
        major, minor = device.compute_capability()
        return device.name(), f"{major}.{minor}"
    except Exception as exc:  # pycuda.driver.Error: no device, no driver
        log.warning("pycuda is installed but found no usable GPU: %s", exc)
        return None, None


def detect_platform(
    root: Path | str = "/",
    *,
    use_dpkg: bool | None = None,
    probe_tensorrt: bool = True,
    probe_gpu: bool = True,
) -> PlatformInfo:
    """Probe this device; every probe that cannot run yields None instead of failing.

    Args:
        root: filesystem root holding ``proc/`` and ``etc/`` (tests point it at a fake tree).
        use_dpkg: ask dpkg for the ``nvidia-jetpack`` version; None means only when ``root`` is ``/``.
        probe_tensorrt: import TensorRT for its version and fast INT8/FP16 (creates a builder).
        probe_gpu: ask pycuda for device 0's name and compute capability.
    """
    base = Path(root)
    model = jetson_model(base)
    l4t = l4t_version(base)
    if use_dpkg is None:
        use_dpkg = base.resolve() == Path("/")
    jetpack = jetpack_version() if use_dpkg else None
    trt_version, fast_int8, fast_fp16 = tensorrt_facts() if probe_tensorrt else (None, None, None)
    gpu_name, sm = gpu_facts() if probe_gpu else (None, None)
    info = PlatformInfo(
        model=model,
        is_jetson=l4t is not None or (model is not None and "jetson" in model.lower()),
        l4t_version=l4t,
        jetpack_version=jetpack,
        tensorrt_version=trt_version,
        gpu_name=gpu_name,
        sm_version=sm,
        fast_int8=fast_int8,
        fast_fp16=fast_fp16,
        total_memory_bytes=total_memory_bytes(base),
    )
    log.debug("platform: %s", info)
    return info
