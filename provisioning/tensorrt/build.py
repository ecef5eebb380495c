"""Build TensorRT engines from the split ONNX models, cached under a key of everything the engine depends on."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Mapping, Sequence

from jetvox.device.storage import atomic_path
from jetvox.engines.base import TensorSpec
from jetvox.engines.errors import JetvoxError
from jetvox.engines.tensorrt.common import (
    TRT_ERRORS,
    tensorrt_logger,
    tensorrt_version,
    unsupported_reason,
    version_tuple,
)
from jetvox.provisioning.steps import sha256_file
from jetvox.provisioning.tensorrt.platform import PlatformInfo, detect_platform

if TYPE_CHECKING:
    import tensorrt as trt

log = logging.getLogger(__name__)

Shape = tuple[int, ...]
ShapeRange = tuple[Shape, Shape, Shape]
"""(min, opt, max) shapes of one input."""

PRECISIONS = ("int8", "fp16", "fp32")
DEFAULT_WORKSPACE_BYTES = 1 << 30
"""Builder workspace limit: 1 GiB fits a 4 GB Orin Nano."""
CACHE_KEY_FORMAT = 1


class BuildError(JetvoxError, RuntimeError):
    """TensorRT could not parse the model or build an engine from it."""


@dataclass(frozen=True)
class Profile:
    """An optimisation profile: the min, opt and max shape of every input of one model."""

    name: str
    """Model the profile is for (one of ``ROLES``)."""
    min: Mapping[str, Shape]
    """Smallest shape each input accepts."""
    opt: Mapping[str, Shape]
    """Shape TensorRT tunes its kernels for."""
    max: Mapping[str, Shape]
    """Largest shape each input accepts (buffers are allocated for it)."""

    @classmethod
    def from_ranges(cls, name: str, ranges: Mapping[str, ShapeRange]) -> Profile:
        """A Profile from ``profiles_for``'s {input: (min, opt, max)}."""
        return cls(
            name=name,
            min={k: tuple(v[0]) for k, v in ranges.items()},
            opt={k: tuple(v[1]) for k, v in ranges.items()},
            max={k: tuple(v[2]) for k, v in ranges.items()},
        )

    def ranges(self) -> dict[str, ShapeRange]:
        """{input: (min, opt, max)}, inputs sorted by name."""
        return {k: (self.min[k], self.opt[k], self.max[k]) for k in sorted(self.min)}


DimRange = tuple[int, int, int]
"""(min, opt, max) of one named dynamic axis."""
ROLES = ("acoustic_encoder", "acoustic_decoder", "vocoder")
"""The models TensorRT builds: the acoustic model's two static-shape stages and the vocoder."""


def dim_ranges(
    role: str,
    *,
    max_phonemes: int,
    opt_phonemes: int,
    chunk_frames: int,
    max_frames: int,
    overlap_frames: int,
    max_acoustic_frames: int,
) -> dict[str, DimRange]:
    """The (min, opt, max) of each named dynamic axis of ``role``'s inputs.

    The acoustic encoder takes 1..max_phonemes phoneme ids (tuned for opt_phonemes); the acoustic decoder
    1..max_acoustic_frames frames (tuned for four frames per id of a typical sentence). The vocoder takes
    z [1, C, 1..max_frames], tuned for a streaming chunk, which is chunk_frames plus overlap_frames of context
    on each side; max_frames must cover the largest chunk and any whole sentence vocoded in one call.

    Args:
        role: one of ``ROLES``.
        max_phonemes: longest phoneme-id sequence per sentence.
        opt_phonemes: typical phoneme count.
        chunk_frames: latent frames vocoded per streaming chunk.
        max_frames: most latent frames in one vocoder call.
        overlap_frames: context frames on each side of a chunk.
        max_acoustic_frames: most frames of one sentence (``engine.max_frames``).
    """
    if not 1 <= opt_phonemes <= max_phonemes:
        raise ValueError(f"need 1 <= opt_phonemes ({opt_phonemes}) <= max_phonemes ({max_phonemes})")
    if chunk_frames < 1 or overlap_frames < 0 or max_acoustic_frames < 1:
        raise ValueError("chunk_frames and max_acoustic_frames must be positive and overlap_frames not negative")
    chunk = chunk_frames + 2 * overlap_frames
    if max_frames < chunk:
        raise ValueError(f"max_frames ({max_frames}) is smaller than one vocoder chunk ({chunk} frames)")
    if role == "acoustic_encoder":
        return {"phonemes": (1, opt_phonemes, max_phonemes)}
    if role == "acoustic_decoder":
        return {"frames": (1, min(4 * opt_phonemes, max_acoustic_frames), max_acoustic_frames)}
    if role == "vocoder":
        return {"frames": (1, chunk, max_frames)}
    raise ValueError(f"role must be one of {', '.join(ROLES)}, got {role!r}")


def profiles_for(inputs: Sequence[TensorSpec], dims: Mapping[str, DimRange]) -> dict[str, ShapeRange]:
    """{input: (min, opt, max)} of a model whose inputs are ``inputs``: fixed axes as they are, named ones from ``dims``.

    Raises BuildError for an axis that is neither fixed nor named in ``dims``: no engine with a guessed
    range is built.
    """
    out: dict[str, ShapeRange] = {}
    for spec in inputs:
        lo, opt, hi = [], [], []
        for axis, dim in enumerate(spec.shape):
            if isinstance(dim, int) and dim > 0:
                rng: DimRange = (dim, dim, dim)
            elif isinstance(dim, str) and dim in dims:
                rng = dims[dim]
            else:
                raise BuildError(
                    f"input {spec.describe()}: axis {axis} ({dim!r}) is dynamic but the profile sets only "
                    f"{sorted(dims) or 'fixed axes'}"
                )
            lo.append(rng[0])
            opt.append(rng[1])
            hi.append(rng[2])
        out[spec.name] = (tuple(lo), tuple(opt), tuple(hi))
    return out


def engine_cache_key(onnx_sha256: str, platform: PlatformInfo, precision: str, profile: Profile) -> str:
    """A short hash of everything a serialized engine is only valid for.

    The ONNX model hash, the TensorRT version, the L4T release (JetPack updates CUDA and
    cuDNN under the same TensorRT version), the GPU name and compute capability, the
    precision and the profile shapes: change any and the key changes, so a stale engine is
    never loaded.
    """
    if platform.tensorrt_version is None:
        raise BuildError("TensorRT is not installed: there is no engine to key")
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    material = {
        "format": CACHE_KEY_FORMAT,
        "onnx": onnx_sha256,
        "tensorrt": platform.tensorrt_version,
        "l4t": platform.l4t_version,
        "gpu": platform.gpu_name,
        "sm": platform.sm_version,
        "precision": precision,
        "profile": {name: [list(s) for s in shapes] for name, shapes in profile.ranges().items()},
    }
    blob = json.dumps(material, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:20]


def engine_filename(model: str, precision: str, key: str) -> str:
    """File name of a cached engine, e.g. ``vocoder.int8.<key>.engine``."""
    return f"{model}.{precision}.{key}.engine"


def _parser_errors(parser: trt.OnnxParser) -> list[str]:
    errors = []
    for i in range(parser.num_errors):
        err = parser.get_error(i)
        errors.append(f"node {err.node()}: {err.desc()}")
    return errors


def _has_qdq(network: trt.INetworkDefinition) -> bool:
    import tensorrt as trt

    quantizing = (trt.LayerType.QUANTIZE, trt.LayerType.DEQUANTIZE)
    return any(network.get_layer(i).type in quantizing for i in range(network.num_layers))


def _parse(
    builder: trt.Builder, onnx_file: Path, strongly_typed: bool, major: int
) -> tuple[trt.INetworkDefinition, trt.OnnxParser]:
    """(network, parser) of ``onnx_file``; BuildError with the parser's errors when TensorRT refuses it."""
    import tensorrt as trt

    flags = 0
    if major < 10:
        # TensorRT 8.x defaults to implicit batch; 10 is always explicit (the flag is deprecated there).
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    if strongly_typed:
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, tensorrt_logger())
    if not parser.parse_from_file(str(onnx_file)):
        errors = _parser_errors(parser) or TRT_ERRORS.take() or ["no reason given"]
        raise BuildError(f"TensorRT could not parse {onnx_file.name}:\n  " + "\n  ".join(errors))
    return network, parser


def _builder_config(
    builder: trt.Builder, precision: str, strongly_typed: bool, major_minor: tuple[int, ...], workspace_bytes: int,
    profile: Profile,
) -> trt.IBuilderConfig:
    """The builder config: precision flags, workspace limit and the one optimisation profile."""
    import tensorrt as trt

    config = builder.create_builder_config()
    # TensorRT 10 rejects precision flags on strongly typed networks (there the graph's types,
    # Q/DQ included, decide; BuilderFlag.INT8 is deprecated in 10). On 8.x, and on 10 weakly
    # typed, INT8 must be enabled for the Q/DQ layers to run in INT8.
    if not strongly_typed:
        if precision in ("fp16", "int8"):
            config.set_flag(trt.BuilderFlag.FP16)
        if precision == "int8":
            # Explicit quantisation: the graph's Q/DQ scales are used, there is no calibrator.
            config.set_flag(trt.BuilderFlag.INT8)
    if major_minor >= (8, 4):
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_bytes)
    else:  # TensorRT < 8.4 only had max_workspace_size (removed in 10)
        setattr(config, "max_workspace_size", workspace_bytes)
    opt_profile = builder.create_optimization_profile()
    for name, (lo, opt, hi) in profile.ranges().items():
        opt_profile.set_shape(name, lo, opt, hi)
    config.add_optimization_profile(opt_profile)
    return config


def _write_engine(serialized: trt.IHostMemory | None, out: Path, source: str, started: float) -> None:
    """Write the serialized engine atomically; BuildError with TensorRT's errors when there is none."""
    if serialized is None:
        seconds = time.monotonic() - started
        reason = "\n  ".join(TRT_ERRORS.take()) or "no error was logged"
        raise BuildError(f"TensorRT could not build an engine from {source} after {seconds:.0f} s:\n  {reason}")
    with atomic_path(out) as tmp:
        with tmp.open("wb") as f:
            f.write(serialized)


def _logged(progress: Callable[[str], None] | None) -> Callable[[str], None]:
    """A progress callback that also logs each line."""

    def say(line: str) -> None:
        log.info("%s", line)
        if progress is not None:
            progress(line)

    return say


def build_engine(
    onnx_path: Path | str,
    out_path: Path | str,
    *,
    precision: str,
    profile: Profile,
    workspace_bytes: int = DEFAULT_WORKSPACE_BYTES,
    timing_cache_path: Path | str | None = None,
    progress: Callable[[str], None] | None = None,
    strongly_typed: bool = False,
) -> Path:
    """Build a serialized TensorRT engine for this GPU and write it atomically to ``out_path``.

    Building takes minutes on a Jetson. INT8 comes from the Q/DQ nodes of a quantised
    ONNX graph (no calibration here); FP16 is enabled for ``fp16`` and ``int8`` so the
    layers left unquantised may run in half precision.

    Args:
        onnx_path: the ONNX model (acoustic or vocoder).
        out_path: where the engine goes; nothing is written there unless the build succeeds.
        precision: ``int8``, ``fp16`` or ``fp32``.
        profile: the optimisation profile (min/opt/max shape of every input).
        workspace_bytes: builder memory pool limit (1 GiB fits a 4 GB Orin Nano).
        timing_cache_path: kernel timing cache, read if present and saved after the build.
        progress: receives one line per stage (parsing, building, done).
        strongly_typed: TensorRT 10 only: take every precision from the graph's own types.
    """
    import tensorrt as trt

    onnx_file, out, say = Path(onnx_path), Path(out_path), _logged(progress)
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if not onnx_file.is_file():
        raise BuildError(f"ONNX model not found: {onnx_file}")
    version = tensorrt_version(trt)
    if (why := unsupported_reason(version)) is not None:
        raise BuildError(why)
    major_minor = version_tuple(version)[:2]
    if strongly_typed and major_minor[0] < 10:
        raise BuildError(f"strongly typed networks need TensorRT 10, this is {version}")

    TRT_ERRORS.clear()
    builder = trt.Builder(tensorrt_logger())
    say(f"parsing {onnx_file.name} with TensorRT {version}")
    network, _parser = _parse(builder, onnx_file, strongly_typed, major_minor[0])  # the parser owns weights
    config = _builder_config(builder, precision, strongly_typed, major_minor, workspace_bytes, profile)
    if not strongly_typed and precision == "int8" and not _has_qdq(network):
        log.warning("%s has no Q/DQ layers: an int8 build will fall back to fp16/fp32 kernels", onnx_file.name)
    cache_file = Path(timing_cache_path) if timing_cache_path is not None else None
    if cache_file is not None:
        _load_timing_cache(config, cache_file)
    say(f"building {out.name} ({precision}); this can take several minutes on a Jetson")
    started = time.monotonic()
    _write_engine(builder.build_serialized_network(network, config), out, onnx_file.name, started)
    seconds = time.monotonic() - started
    if cache_file is not None:
        _save_timing_cache(config, cache_file)
    say(f"built {out.name}: {out.stat().st_size / 1e6:.1f} MB in {seconds:.0f} s")
    return out


def _load_timing_cache(config: trt.IBuilderConfig, path: Path) -> None:
    data = b""
    if path.is_file():
        try:
            data = path.read_bytes()
        except OSError as exc:
            log.warning("timing cache %s unreadable (%s); starting a new one", path, exc)
    try:
        cache = config.create_timing_cache(data)
    except Exception as exc:  # a truncated or foreign file: TensorRT raises its own types
        log.warning("timing cache %s is unusable (%s); starting a new one", path, exc)
        data = b""
        cache = config.create_timing_cache(data)
    if not config.set_timing_cache(cache, False):
        log.warning("timing cache %s does not match this TensorRT/GPU; starting a new one", path)
        config.set_timing_cache(config.create_timing_cache(b""), False)
    elif data:
        log.info("using timing cache %s (%d bytes)", path, len(data))


def _save_timing_cache(config: trt.IBuilderConfig, path: Path) -> None:
    try:
        blob = config.get_timing_cache().serialize()
        with atomic_path(path) as tmp:
            with tmp.open("wb") as f:
                f.write(blob)
    except Exception as exc:  # the engine is built: a cache that cannot be saved is not fatal
        log.warning("could not save timing cache %s: %s", path, exc)


def ensure_engine(
    onnx_path: Path | str,
    out_dir: Path | str,
    *,
    model: str,
    precision: str,
    profile: Profile,
    platform: PlatformInfo | None = None,
    workspace_bytes: int = DEFAULT_WORKSPACE_BYTES,
    timing_cache_path: Path | str | None = None,
    progress: Callable[[str], None] | None = None,
) -> Path:
    """The engine for this model, precision, profile and device: built only when not cached.

    The file name carries engine_cache_key(), so a JetPack or TensorRT upgrade, another
    GPU or a new model hash leads to a new build, never to loading a stale engine.

    Args:
        onnx_path: the ONNX model.
        out_dir: directory of cached engines.
        model: one of ``ROLES`` (the file name's prefix).
        precision: ``int8``, ``fp16`` or ``fp32``.
        profile: the optimisation profile.
        platform: this device; None detects it.
        workspace_bytes: builder memory pool limit.
        timing_cache_path: kernel timing cache shared between builds; None keeps one per
            TensorRT version in ``out_dir``.
        progress: receives one line per stage.
    """
    onnx_file = Path(onnx_path)
    directory = Path(out_dir)
    info = platform if platform is not None else detect_platform()
    key = engine_cache_key(sha256_file(onnx_file), info, precision, profile)
    path = directory / engine_filename(model, precision, key)
    if path.is_file() and path.stat().st_size > 0:
        log.info("TensorRT engine %s is up to date", path.name)
        if progress is not None:
            progress(f"{path.name} is up to date")
        return path
    directory.mkdir(parents=True, exist_ok=True)
    cache = timing_cache_path
    if cache is None:  # timing caches are only valid for one TensorRT version
        cache = directory / f"timing.{info.tensorrt_version}.cache"
    return build_engine(
        onnx_file,
        path,
        precision=precision,
        profile=profile,
        workspace_bytes=workspace_bytes,
        timing_cache_path=cache,
        progress=progress,
    )
