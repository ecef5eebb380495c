"""Weight averaging ("model soup") of student checkpoints of one lineage into a new run directory."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any, Sequence

import torch

from jetvox.device.storage import atomic_path, atomic_write_text
from jetvox.provisioning.distill.aligned import weights_digest
from jetvox.provisioning.distill.export import weights_key
from jetvox.provisioning.distill.train import CKPT, LOSS_LOG

log = logging.getLogger(__name__)


class SoupError(ValueError):
    """The checkpoints cannot be averaged (different students, sizes or weights)."""


def _weights(state: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The weights ``export.load_student`` would take: the moving average where the run keeps one."""
    return state[weights_key(state)]


def _load(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise SoupError(f"checkpoint {path} not found (expected a `train` ckpt.pt)")
    state = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(state, dict) or "config" not in state or "model" not in state:
        raise SoupError(f"{path} is not a `train` checkpoint (expected the keys config and model)")
    return state


def average(paths: Sequence[Path], weights: Sequence[float] | None = None) -> dict[str, Any]:
    """A checkpoint whose weights are the weighted mean of ``paths``' (uniform unless ``weights`` are given).

    Every checkpoint must hold the same student (``what``) of the same size with the same weight names and
    shapes: averaging is meaningful along one lineage (a run and the runs fine-tuned from it), where the weights
    stay in one basin. The new checkpoint takes the last one's config and step, the largest ``seconds`` (each
    checkpoint of a lineage counts the time before it) and records the soup in ``config["changes"]``.

    Args:
        paths: the checkpoints (at least two).
        weights: one non-negative weight per checkpoint; normalised to sum 1.
    """
    if len(paths) < 2:
        raise SoupError(f"a soup needs at least two checkpoints, got {len(paths)}")
    w = [1.0] * len(paths) if weights is None else [float(x) for x in weights]
    if len(w) != len(paths) or any(not x >= 0 for x in w) or sum(w) <= 0:
        raise SoupError(f"expected {len(paths)} non-negative weights with a positive sum, got {list(w)}")
    w = [x / sum(w) for x in w]
    states = [_load(Path(p)) for p in paths]
    first, last = states[0], states[-1]
    want = {k: tuple(v.shape) for k, v in _weights(first).items()}
    for path, state in zip(paths[1:], states[1:]):
        for key in ("what", "model"):
            if state["config"].get(key) != first["config"].get(key):
                raise SoupError(f"{path}: {key} {state['config'].get(key)!r} differs from {paths[0]}'s "
                                f"{first['config'].get(key)!r}")
        got = {k: tuple(v.shape) for k, v in _weights(state).items()}
        if got != want:
            diff = sorted(set(got.items()) ^ set(want.items()))[:3]
            raise SoupError(f"{path}: weights differ in name or shape from {paths[0]}'s, e.g. {diff}")
    mixed = {}
    for name, tensor in _weights(first).items():
        if tensor.is_floating_point():
            total = torch.zeros_like(tensor, dtype=torch.float64)
            for x, s in zip(w, states):
                total += x * _weights(s)[name].double()
            mixed[name] = total.to(tensor.dtype)
        else:
            mixed[name] = tensor.clone()  # counters such as BatchNorm's: taken from the first
    soup = {"of": [{"path": str(p), "step": int(s["step"]), "weights": weights_digest(_weights(s))}
                   for p, s in zip(paths, states)], "mix": [round(x, 6) for x in w]}
    config = dict(last["config"])
    config["changes"] = [*config.get("changes", []), {"step": int(last["step"]), "soup": soup}]
    return {"config": config, "step": int(last["step"]), "seconds": max(float(s["seconds"]) for s in states),
            "hardware": last.get("hardware"), "utterances": max(int(s.get("utterances") or 0) for s in states),
            "model": mixed}


def write_run(state: dict[str, Any], out: Path) -> Path:
    """Write the soup as a run directory (``ckpt.pt``, an empty loss log, ``summary.json``), each file atomically."""
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / CKPT) as tmp:
        torch.save(state, tmp)
    if not (out / LOSS_LOG).is_file():
        atomic_write_text(out / LOSS_LOG, "")  # no steps were trained here
    soup = state["config"]["changes"][-1]["soup"]
    atomic_write_text(out / "summary.json", json.dumps(
        {"what": state["config"]["what"], "step": state["step"], "soup": soup,
         "weights": weights_digest(state["model"])}, indent=2) + "\n")
    return out / CKPT


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("checkpoints", type=Path, nargs="+", help="train checkpoints (ckpt.pt) of one lineage")
    ap.add_argument("--out", type=Path, required=True, help="run directory to write (ckpt.pt, summary.json)")
    ap.add_argument("--weights", type=float, nargs="+", default=None, help="one per checkpoint (default: equal)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        state = average(args.checkpoints, args.weights)
    except SoupError as exc:
        print(f"soup: {exc}", file=sys.stderr)
        return 2
    path = write_run(state, args.out)
    log.info("averaged %d %s checkpoints into %s", len(args.checkpoints), state["config"]["what"], path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
