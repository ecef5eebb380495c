"""Export trained students to ONNX with exactly the teacher split's interface, and check them with ONNX Runtime."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper

from jetvox.engines.onnxrt import ort_session
from jetvox.provisioning.distill.interface import INTERFACES, InterfaceError, check_interface
from jetvox.provisioning.distill.models import HOP, LATENT, N_FFT, InverseSTFT, StudentVocoder
from jetvox.provisioning.distill.train import CKPT, TrainConfig, build_model

log = logging.getLogger(__name__)

OPSET = 17


FP16_MIN_ELEMENTS = 1024
"""Float initializers at least this large are stored as float16 with a Cast back to float32 (folded at load)."""


def weights_key(state: dict, average: bool = True) -> str:
    """Which weights of a checkpoint are the run's: ``ema`` (the moving average) where kept and wanted, else ``model``."""
    return "ema" if average and "ema" in state else "model"


def load_student(run_dir: Path, average: bool = True) -> tuple[torch.nn.Module, TrainConfig, dict]:
    """The trained model of a run directory, in eval mode, with its config and checkpoint metadata.

    Args:
        run_dir: a training run's directory (holding ``ckpt.pt``).
        average: take the weights' moving average where the run keeps one (``TrainConfig.ema``); else the last
            step's weights. ``meta["weights"]`` says which were taken.
    """
    state = torch.load(Path(run_dir) / CKPT, map_location="cpu", weights_only=False)
    cfg = TrainConfig(**state["config"])
    model = build_model(cfg)
    which = weights_key(state, average)
    model.load_state_dict(state[which])
    model.eval()
    meta = {k: state[k] for k in ("step", "seconds", "utterances", "hardware") if k in state}
    return model, cfg, {**meta, "weights": "average" if which == "ema" else "last"}


def fix_io(path: Path, role: str) -> None:
    """Name the dynamic axes (and fixed sizes) of the graph's inputs and outputs exactly as the teacher's."""
    model = onnx.load(str(path))
    ins, outs = INTERFACES[role]
    types = {"float32": onnx.TensorProto.FLOAT, "int64": onnx.TensorProto.INT64}
    for vis, spec in ((model.graph.input, ins), (model.graph.output, outs)):
        for vi, (name, dtype, shape) in zip(vis, spec):
            vi.CopyFrom(helper.make_tensor_value_info(name, types[dtype], shape))
    model.graph.name = f"jetvox-student-{role}"
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


BASIS_SPLIT = 32
"""The basis's sample index is split as ``n = BASIS_SPLIT * a + b``, so its phases come from two small tables."""


def _basis_nodes(name: str, layout: str, n_fft: int, bins: int) -> tuple[list, list]:
    """Nodes (and small constants) that compute the inverse-STFT basis into ``name``.

    ``exp(2 pi i k n / n_fft)`` with ``n = 32 a + b`` is the product of ``exp(2 pi i k 32 a / n_fft)`` and
    ``exp(2 pi i k b / n_fft)``: two [bins, 32] cosine and sine tables (computed exactly in float64, 260 KB)
    are combined with the angle-sum identities. Every value in the subgraph lies within [-1, 1], so a
    TensorRT build in FP16 can hold any of it (an earlier form computed ``k n`` up to 523,776, beyond
    FP16's 65,504). Plain float ops, folded into one constant when a runtime loads the model.
    """
    if n_fft % BASIS_SPLIT:
        raise ValueError(f"n_fft ({n_fft}) must be a multiple of {BASIS_SPLIT}")
    groups = n_fft // BASIS_SPLIT
    k = np.arange(bins, dtype=np.float64)[:, None]
    outer = 2 * np.pi * k * (BASIS_SPLIT * np.arange(groups))[None, :] / n_fft  # [bins, groups]
    inner = 2 * np.pi * k * np.arange(BASIS_SPLIT)[None, :] / n_fft  # [bins, 32]
    n = np.arange(n_fft, dtype=np.float64)
    window = (0.5 - 0.5 * np.cos(n * 2 * np.pi / n_fft)).astype(np.float32)
    edge = ((k == 0) | (k == bins - 1)).astype(np.float64)
    coef = ((2.0 - edge) / n_fft).astype(np.float32)
    p = f"{name}__"
    consts = [
        numpy_helper.from_array(np.cos(outer).astype(np.float32)[:, :, None], f"{p}cos_a"),
        numpy_helper.from_array(np.sin(outer).astype(np.float32)[:, :, None], f"{p}sin_a"),
        numpy_helper.from_array(np.cos(inner).astype(np.float32)[:, None, :], f"{p}cos_b"),
        numpy_helper.from_array(np.sin(inner).astype(np.float32)[:, None, :], f"{p}sin_b"),
        numpy_helper.from_array(window[None, :], f"{p}window"),
        numpy_helper.from_array(np.concatenate([coef, -coef]), f"{p}coef"),
        numpy_helper.from_array(np.array([bins, n_fft], dtype=np.int64), f"{p}shape"),
    ]
    mk = helper.make_node
    nodes = [  # cos(x + y) = cos x cos y - sin x sin y; sin(x + y) = sin x cos y + cos x sin y
        mk("Mul", [f"{p}cos_a", f"{p}cos_b"], [f"{p}cc"]),
        mk("Mul", [f"{p}sin_a", f"{p}sin_b"], [f"{p}ss"]),
        mk("Mul", [f"{p}sin_a", f"{p}cos_b"], [f"{p}sc"]),
        mk("Mul", [f"{p}cos_a", f"{p}sin_b"], [f"{p}cs"]),
        mk("Sub", [f"{p}cc", f"{p}ss"], [f"{p}cos3"]),  # [bins, groups, 32]
        mk("Add", [f"{p}sc", f"{p}cs"], [f"{p}sin3"]),
        mk("Reshape", [f"{p}cos3", f"{p}shape"], [f"{p}cos"]),  # [bins, n_fft], n = 32 a + b
        mk("Reshape", [f"{p}sin3", f"{p}shape"], [f"{p}sin"]),
        mk("Concat", [f"{p}cos", f"{p}sin"], [f"{p}trig"], axis=0),
        mk("Mul", [f"{p}trig", f"{p}coef"], [f"{p}scaled"]),
        mk("Mul", [f"{p}scaled", f"{p}window"], [f"{p}rows"]),  # [2 * bins, n_fft]
    ]
    if layout == "rows":
        nodes[-1].output[0] = name
    elif layout == "columns":
        nodes.append(mk("Transpose", [f"{p}rows"], [name], perm=[1, 0]))
    else:  # "conv": [2 * bins, 1, n_fft]
        consts.append(numpy_helper.from_array(np.array([1], dtype=np.int64), f"{p}axis1"))
        nodes.append(mk("Unsqueeze", [f"{p}rows", f"{p}axis1"], [name]))
    return nodes, consts


def compact(path: Path) -> None:
    """Shrink an exported student in place without changing what it computes beyond float16 weight rounding.

    The inverse-STFT basis (4 MB of cosines) becomes a small subgraph, and large float32 weights are stored
    as float16 with a Cast to float32: runtimes fold both back into float32 constants when they load the
    model, so inference cost is unchanged. Raises if the result no longer passes the ONNX checker.
    """
    model = onnx.load(str(path))
    graph = model.graph
    layouts = {}  # (layout, n_fft) -> the basis as the exporter may have stored it, for each window a vocoder uses
    for subframes in (1, 2, 4):
        n_fft = N_FFT // subframes
        with torch.no_grad():
            rows = InverseSTFT(n_fft, HOP // subframes).basis(n_fft // 2 + 1)[0][:, 0, :].numpy()
        layouts.update({("rows", n_fft): rows, ("columns", n_fft): rows.T, ("conv", n_fft): rows[:, None, :]})
    head: list = []
    keep: list = []

    def rewrite(name: str, arr: np.ndarray) -> bool:
        """Queue a replacement producing ``name``; False leaves the constant as it is."""
        found = next((k for k, ref in layouts.items()
                      if arr.shape == ref.shape and np.allclose(arr, ref, atol=1e-6)), None)
        if found is not None:
            layout, n_fft = found
            nodes, consts = _basis_nodes(name, layout, n_fft, n_fft // 2 + 1)
            head.extend(nodes)
            keep.extend(consts)
            return True
        if arr.dtype == np.float32 and arr.size >= FP16_MIN_ELEMENTS:
            keep.append(numpy_helper.from_array(arr.astype(np.float16), f"{name}__fp16"))
            head.append(helper.make_node("Cast", [f"{name}__fp16"], [name], to=TensorProto.FLOAT))
            return True
        return False

    for init in graph.initializer:
        if not rewrite(init.name, numpy_helper.to_array(init)):
            keep.append(init)
    body = []
    for node in graph.node:
        value = next((a.t for a in node.attribute if a.name == "value"), None) if node.op_type == "Constant" else None
        if value is None or not rewrite(node.output[0], numpy_helper.to_array(value)):
            body.append(node)
    del graph.initializer[:]
    graph.initializer.extend(keep)
    del graph.node[:]
    graph.node.extend(head + body)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def store_int8(path: Path, prefix: str = "", keep: tuple[str, ...] = ()) -> int:
    """Store ``compact``'s float16 weight matrices (two or more axes, names starting with ``prefix`` and containing
    none of ``keep``) as INT8 with one float32 scale per output channel, in place; returns how many.

    Each becomes ``Cast`` to float32 times its scale, plain constants that runtimes fold back at load (unlike a
    DequantizeLinear, which they keep as a quantised layer), so inference still runs in float32 and only the
    file shrinks.
    """
    model = onnx.load(str(path))
    graph = model.graph
    consumers: dict[str, list[str]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node.op_type)
    casts = {n.input[0]: n for n in graph.node if n.op_type == "Cast" and n.input[0].endswith("__fp16")}
    stored = 0
    for init in list(graph.initializer):
        cast = casts.get(init.name)
        weight = numpy_helper.to_array(init).astype(np.float32)
        if cast is None or weight.ndim < 2 or not init.name.startswith(prefix) or any(k in init.name for k in keep):
            continue
        name = cast.output[0]
        # a MatMul's weight [in, out] has its output channels last; a Conv's, a Gather's (rows) first
        axis = weight.ndim - 1 if set(consumers.get(name, [])) == {"MatMul"} else 0
        others = tuple(a for a in range(weight.ndim) if a != axis)
        peak = np.abs(weight).max(axis=others, keepdims=True)
        scale = np.where(peak > 0, peak / 127.0, 1.0).astype(np.float32)
        q = np.clip(np.round(weight / scale), -127, 127).astype(np.int8)
        graph.initializer.remove(init)
        graph.initializer.extend([numpy_helper.from_array(q, f"{name}__int8"),
                                  numpy_helper.from_array(scale, f"{name}__scale")])
        at = list(graph.node).index(cast)
        graph.node.remove(cast)
        graph.node.insert(at, helper.make_node("Mul", [f"{name}__wide", f"{name}__scale"], [name]))
        graph.node.insert(at, helper.make_node("Cast", [f"{name}__int8"], [f"{name}__wide"], to=TensorProto.FLOAT))
        stored += 1
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return stored


def wrap_phase(path: Path, subframes: int) -> float:
    """Bring a vocoder's head phase biases into [-pi, pi) in place; returns the largest magnitude before.

    The phase is read only through cos and sin, so the graph computes the same angles. ``split_head`` moved each
    subframe's phase to its window's start with a bias that grows with the bin (to about 1,000 rad), which an
    FP16 engine holds only to 0.5 rad: a fixed phase error per bin. Wrapped, the bias is stored as float32 (after
    the float16 rounding ``compact`` gave it, so the angles are those of the model the gate measured).
    """
    model = onnx.load(str(path))
    graph = model.graph
    init = next((i for i in graph.initializer if i.name in ("head.bias", "head.bias__fp16")), None)
    if init is None:
        raise InterfaceError(f"{path.name}: no head.bias initializer to wrap")
    bias = numpy_helper.to_array(init).astype(np.float64)
    if bias.ndim != 1 or bias.size % (2 * subframes):
        raise InterfaceError(f"{path.name}: head.bias of {bias.size} values is not {subframes} x (magnitude, phase)")
    spectra = bias.reshape(subframes, 2, -1)
    largest = float(np.abs(spectra[:, 1]).max())
    spectra[:, 1] = np.remainder(spectra[:, 1] + np.pi, 2 * np.pi) - np.pi
    graph.initializer.remove(init)
    graph.initializer.append(numpy_helper.from_array(spectra.reshape(-1).astype(np.float32), "head.bias"))
    cast = [n for n in graph.node if n.op_type == "Cast" and list(n.output) == ["head.bias"]]
    for node in cast:
        graph.node.remove(node)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return largest


def export(model: torch.nn.Module, role: str, path: Path) -> Path:
    """Write ``model`` (a StudentVocoder or StudentAcoustic) to ``path`` as ONNX and check its interface.

    Args:
        model: the trained student.
        role: ``vocoder`` or ``acoustic``.
        path: output ``.onnx`` file.
    """
    model.eval()
    for module in model.modules():
        if isinstance(module, InverseSTFT):
            module.freeze()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp-{path.name}")
    with torch.no_grad():
        if role == "vocoder":
            args: tuple = (torch.randn(1, LATENT, 40),)
            names_in, names_out = ["z"], ["audio"]
            axes = {"z": {2: "frames"}, "audio": {1: "samples"}}
        elif role == "acoustic":
            ids = torch.randint(1, 100, (1, 25))
            args = (ids, torch.tensor([25]), torch.tensor([0.667, 1.0, 0.8]))
            names_in, names_out = ["input", "input_lengths", "scales"], ["z", "durations"]
            axes = {"input": {0: "batch_size", 1: "phonemes"}, "input_lengths": {0: "batch_size"},
                    "z": {2: "frames"}, "durations": {1: "phonemes"}}
        else:
            raise ValueError(f"role must be vocoder or acoustic, got {role!r}")
        torch.onnx.export(model, args, str(tmp), input_names=names_in, output_names=names_out,
                          dynamic_axes=axes, opset_version=OPSET, dynamo=False,
                          do_constant_folding=True)
    fix_io(tmp, role)
    compact(tmp)
    if isinstance(model, StudentVocoder):
        largest = wrap_phase(tmp, model.cfg.subframes)
        log.info("head phase biases wrapped into [-pi, pi) (largest was %.1f rad)", largest)
    tmp.replace(path)
    check_interface(path, role)
    log.info("exported %s to %s (%.1f MB)", role, path, path.stat().st_size / 1e6)
    return path


def run_vocoder(path: Path, z: np.ndarray) -> np.ndarray:
    """Vocode z [1, 192, T] with ONNX Runtime (CPU); returns audio [T * 256]."""
    sess = ort_session(path)
    return sess.run(["audio"], {"z": z.astype(np.float32)})[0][0]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--vocoder-run", type=Path, required=True)
    ap.add_argument("--acoustic-run", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True, help="directory for acoustic.onnx and vocoder.onnx")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    for role, run in (("vocoder", args.vocoder_run), ("acoustic", args.acoustic_run)):
        model, _, meta = load_student(run)
        export(model, role, args.out / f"{role}.onnx")
        log.info("%s: step %s", role, meta.get("step"))


if __name__ == "__main__":
    main()
