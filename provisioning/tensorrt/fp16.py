"""FP16 evidence on the CPU: value ranges and an FP16-rounded run of every model a TensorRT build consumes."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from jetvox.device.config import Config
from jetvox.device.config import load as load_config
from jetvox.device.evaluation.sentences import EVAL_SENTENCES
from jetvox.device.synthesis.feeds import acoustic_feeds
from jetvox.device.voice.loader import Voice, load_voice, model_entries
from jetvox.engines.onnxrt import OnnxRuntimeEngine
from jetvox.engines.staged import StagedAcoustic
from jetvox.provisioning.stages import probe_values
from jetvox.provisioning.tensorrt.compare import Comparison, Limits, compare

log = logging.getLogger(__name__)

FP16_MAX = 65504.0
"""Largest finite float16."""
FLOAT_TYPES = (TensorProto.FLOAT, TensorProto.DOUBLE)


def float_ranges(model: onnx.ModelProto, feeds: Mapping[str, np.ndarray]) -> dict[str, float]:
    """Largest magnitude of every float tensor, initializers and constant subgraphs included, for one run.

    The graph runs unoptimised with every intermediate exposed, so a constant subgraph a TensorRT build
    could fold in half precision is measured too (no tensor is skipped for being computed from constants).
    """
    out = {i.name: float(np.max(np.abs(numpy_helper.to_array(i)), initial=0.0))
           for i in model.graph.initializer if i.data_type in FLOAT_TYPES}
    for name, arr in probe_values(model, feeds, constants=True).items():
        if arr.dtype.kind == "f" and arr.size:
            out[name] = float(np.max(np.abs(arr)))
    return out


def fp16_rounded(model: onnx.ModelProto, feeds: Mapping[str, np.ndarray]) -> onnx.ModelProto:
    """``model`` with every float weight, input and intermediate rounded to float16 (overflow becomes inf).

    Each op still computes in float32 (as TensorRT's FP16 kernels accumulate), but everything it reads and
    writes holds only float16 values, constant subgraphs included: the worst case of an FP16 build, where
    TensorRT would put every layer in half precision. Q/DQ pairs keep their meaning (their float sides are
    rounded like the rest). ``feeds`` (one run) tell which tensors are float.
    """
    out = onnx.ModelProto()
    out.CopyFrom(model)
    g = out.graph
    floats = {k for k, v in probe_values(model, feeds).items() if v.dtype == np.float32}
    inferred = onnx.shape_inference.infer_shapes(model).graph.value_info
    floats |= {vi.name for vi in inferred if vi.type.tensor_type.elem_type == TensorProto.FLOAT}
    for init in g.initializer:
        if init.data_type == TensorProto.FLOAT:
            arr = numpy_helper.to_array(init).astype(np.float16).astype(np.float32)
            init.CopyFrom(numpy_helper.from_array(arr, init.name))
    nodes: list[onnx.NodeProto] = []

    def rounding(src: str, dst: str) -> list[onnx.NodeProto]:
        return [helper.make_node("Cast", [src], [f"{dst}__half"], to=TensorProto.FLOAT16),
                helper.make_node("Cast", [f"{dst}__half"], [dst], to=TensorProto.FLOAT)]

    inputs = {i.name for i in g.input if i.type.tensor_type.elem_type == TensorProto.FLOAT}
    for name in inputs:  # graph inputs keep their names: consumers read a rounded copy
        nodes += rounding(name, f"{name}__rounded")
    for node in g.node:
        node.input[:] = [f"{i}__rounded" if i in inputs else i for i in node.input]
        produced = [o for o in node.output if o in floats or (node.op_type == "Constant" and _float_value(node))]
        node.output[:] = [f"{o}__exact" if o in produced else o for o in node.output]
        nodes.append(node)
        for o in produced:
            nodes += rounding(f"{o}__exact", o)
    del g.node[:]
    g.node.extend(nodes)
    return out


def _float_value(node: onnx.NodeProto) -> bool:
    value = next((a.t for a in node.attribute if a.name == "value"), None)
    return value is not None and value.data_type == TensorProto.FLOAT


def _rounded_engine(path: Path, feeds: Mapping[str, np.ndarray]) -> OnnxRuntimeEngine:
    tmp = path.with_name(f".fp16-{path.name}")
    onnx.save(fp16_rounded(onnx.load(str(path)), feeds), str(tmp))
    try:
        return OnnxRuntimeEngine(tmp, providers=["CPUExecutionProvider"])
    finally:
        tmp.unlink(missing_ok=True)


def simulated_voice(voice: Voice, cfg: Config, precision: str = "auto") -> Voice:
    """``voice`` with its encoder, decoder and vocoder replaced by FP16-rounded runs (the regulator stays FP32)."""
    staged = voice.acoustic
    if not isinstance(staged, StagedAcoustic):
        raise ValueError(f"voice {voice.name} is not staged; re-run `jetvox provision`")
    probe_ids = voice.phonemizer.sentence_ids("The kitchen temperature is twenty one degrees.")
    board = staged.regulate(staged.encode(acoustic_feeds(probe_ids)))
    keys = _keys(voice, precision)
    entries = voice.manifest.staged(keys["acoustic"]) or {}
    d = voice.directory
    enc_feeds = {s.name: board[s.name] for s in staged.stages[0].inputs}
    dec_feeds = {s.name: board[s.name] for s in staged.stages[2].inputs}
    encoder = _rounded_engine(d / entries["encoder"].file, enc_feeds)
    decoder = _rounded_engine(d / entries["decoder"].file, dec_feeds)
    z = staged.decode(board)[:, :, : 2 * cfg.synthesis.chunk_frames]
    vocoder = _rounded_engine(d / voice.manifest.model(keys["vocoder"]).file, {"z": z})
    regulator = OnnxRuntimeEngine(d / entries["regulator"].file, providers=["CPUExecutionProvider"])
    return dataclasses.replace(voice, acoustic=StagedAcoustic(encoder, regulator, decoder, staged.max_frames),
                               vocoder=vocoder)


def _keys(voice: Voice, precision: str) -> dict[str, str]:
    """The manifest entries ``voice`` was loaded from (acoustic, vocoder)."""
    return model_entries(voice.manifest, precision, backend="onnxruntime")


def evidence(cfg: Config, sentences: Sequence[str], say: Callable[[str], None] = lambda line: None,
             limits: Limits = Limits(), precision: str | None = None) -> dict[str, Any]:
    """The FP16 simulation of the configured voice against its FP32 run, and the largest value of each model.

    Args:
        cfg: the configuration (voice, state dir, chunking).
        sentences: what to speak.
        say: progress callback.
        limits: the bounds the simulation must meet.
        precision: ``fp32`` simulates the FP32 graphs (an FP16 build on a GPU without fast INT8); None the
            models the gate chose (its INT8 Q/DQ graphs, whose float parts are rounded too).
    """
    cpu = dataclasses.replace(cfg, engine=dataclasses.replace(cfg.engine, backend="onnxruntime"))
    reference = load_voice(cpu, precision="fp32")
    device = load_voice(cpu, precision=precision)  # the models a TensorRT build would get
    chosen = precision or cfg.engine.precision
    simulated = simulated_voice(device, cfg, chosen)
    try:
        result: Comparison = compare(reference, simulated, sentences, cfg.synthesis, limits, say)
        peaks = peak_values(device, sentences[0], chosen)
    finally:
        for v in (reference, device, simulated):
            v.close()
    return {"voice": device.name, **_keys(device, chosen), "peaks": peaks, **result.to_json()}


def peak_values(voice: Voice, sentence: str, precision: str = "auto") -> dict[str, float]:
    """Largest float magnitude in each model a TensorRT build consumes (encoder, decoder, vocoder) for one sentence."""
    staged = voice.acoustic
    assert isinstance(staged, StagedAcoustic)
    board = staged.regulate(staged.encode(acoustic_feeds(voice.phonemizer.sentence_ids(sentence))))
    keys = _keys(voice, precision)
    entries = voice.manifest.staged(keys["acoustic"]) or {}
    out = {}
    for stage, engine in (("encoder", staged.stages[0]), ("decoder", staged.stages[2])):
        model = onnx.load(str(voice.directory / entries[stage].file))
        out[stage] = max(float_ranges(model, {s.name: board[s.name] for s in engine.inputs}).values())
    vocoder = onnx.load(str(voice.directory / voice.manifest.model(keys["vocoder"]).file))
    out["vocoder"] = max(float_ranges(vocoder, {"z": staged.decode(board)}).values())
    return out


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m jetvox.provisioning.tensorrt.fp16", description=__doc__)
    ap.add_argument("--config", type=Path, default=None)
    ap.add_argument("--voice", default=None, help="provisioned voice (default: the configured one)")
    ap.add_argument("--state-dir", type=Path, default=None)
    ap.add_argument("--limit", type=int, default=len(EVAL_SENTENCES), help="first N of the 26 built-in sentences")
    ap.add_argument("--json", type=Path, default=None, help="also write the report here")
    ap.add_argument("--precision", choices=("auto", "fp32"), default="auto",
                    help="auto: the models the quality gates chose; fp32: the FP32 graphs")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    cfg = load_config(args.config, voice__name=args.voice,
                      state_dir=str(args.state_dir) if args.state_dir else None)
    report = evidence(cfg, EVAL_SENTENCES[: args.limit], say=lambda line: print(line, file=sys.stderr, flush=True),
                      precision=None if args.precision == "auto" else args.precision)
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n", encoding="utf-8")
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
