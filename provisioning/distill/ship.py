"""Export the trained students, run the gate, and ship them as the joe-fast voice only if they pass."""

from __future__ import annotations

import argparse
import json
import logging
import platform
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from jetvox.device.config import default_state_dir
from jetvox.device.storage import atomic_write_text
from jetvox.device.voice.sources import SHIPPED_DIR, resolve_voice
from jetvox.provisioning.distill.corpus import DEFAULT_SIZE, SEED
from jetvox.provisioning.distill import hybrid as hybrid_acoustic
from jetvox.provisioning.distill.export import export, load_student, store_int8
from jetvox.provisioning.distill.gate import GateResult, run_gate
from jetvox.provisioning.distill.teacher_data import (
    TEACHER,
    cache_dir,
    cached_paths,
    teacher_dir,
)
from jetvox.provisioning.distill.train import runs_dir
from jetvox.provisioning.distill.variance import Compensation, compensate

log = logging.getLogger(__name__)

VOICE_NAME = "joe-fast"
SHIP_DIR = SHIPPED_DIR / VOICE_NAME
RESULTS_DIR = Path(__file__).resolve().parent / "results"
GATE_HISTORY = RESULTS_DIR / "gate_history.json"
"""Every gate run of the students, passed or not, oldest first (issue 10: the old figures are kept)."""


def record_gate(history: Path, run: str, gate: GateResult) -> None:
    """Append one gate run, labelled ``run``, to the history file (written whole and replaced atomically)."""
    record = json.loads(history.read_text(encoding="utf-8")) if history.is_file() else {"runs": []}
    record["runs"] = [*record.get("runs", []), {"run": run, **asdict(gate)}]
    atomic_write_text(history, json.dumps(record, indent=2, ensure_ascii=False) + "\n")


def teacher_config() -> dict[str, Any]:
    """The teacher's Piper ``.onnx.json`` content."""
    return dict(resolve_voice(TEACHER).config)


def _checkpoint_and_losses(run_dir: Path) -> tuple[dict[str, Any], dict[str, float]]:
    """A run's checkpoint and the last line of its loss log (rounded, without step, rate and time)."""
    import torch

    state = torch.load(run_dir / "ckpt.pt", map_location="cpu", weights_only=False)
    lines = (run_dir / "losses.jsonl").read_text(encoding="utf-8").splitlines()
    last = json.loads(lines[-1]) if lines else {}
    return state, {k: round(v, 4) for k, v in last.items() if k not in ("step", "lr", "seconds")}


def _hybrid_summary(run_dir: Path) -> dict[str, Any]:
    """What the shipped manifest records of a hybrid run: its steps, settings, student shape and last loss."""
    state, losses = _checkpoint_and_losses(run_dir)
    return {"kind": "hybrid (the teacher's text encoder, the student's durations and decoder)",
            **state["config"], "steps": int(state["step"]), "model": state["student_config"],
            "final_losses": losses, "sharpen": hybrid_acoustic.SHARPEN, "reproduce": "make distill-hybrid"}


def _run_summary(run_dir: Path) -> dict[str, Any]:
    state, losses = _checkpoint_and_losses(run_dir)
    cfg = state["config"]
    return {
        "steps": int(state["step"]), "seconds": round(float(state["seconds"]), 1), "hardware": state.get("hardware"),
        "utterances": state.get("utterances"), "seed": cfg["seed"], "batch": cfg["batch"], "lr": cfg["lr"],
        "lr_phases": cfg.get("phases") or [{"until": cfg["steps"], "lr": cfg["lr"]}],
        "model": cfg["model"], "final_losses": losses,
        **({"adversarial": cfg.get("gan", {})} if cfg.get("adversarial") else {}),
        **({"aligned_fraction": cfg["aligned_fraction"], "aligned_acoustic": cfg.get("aligned_acoustic")}
           if cfg.get("aligned_fraction") else {}),
        **({"weights": f"moving average (decay {cfg['ema']})"} if "ema" in state else {}),
        "changes": cfg.get("changes", []),
    }


def cache_stats(cache: Path) -> dict[str, Any]:
    """Utterances and hours of teacher audio in the teacher-data cache."""
    samples = 0
    paths = cached_paths(cache)
    for p in paths:
        with np.load(p) as f:
            samples += int(f["wav"].shape[0])
    return {"teacher_utterances": len(paths), "teacher_audio_hours": round(samples / 22050 / 3600, 3)}


def _export_pair(vocoder_run: Path, acoustic_run: Path, teacher: Path, staging: Path, config: dict[str, Any],
                 variance: bool, hybrid: bool, int8_weights: bool) -> tuple[Compensation | None, int]:
    """Export both models into ``staging`` as ``ship`` describes; (the compensation or None, matrices stored INT8)."""
    model, _, _ = load_student(vocoder_run)
    export(model, "vocoder", staging / "vocoder.onnx")
    comp = None
    if hybrid:
        comp = hybrid_acoustic.export_voice(hybrid_acoustic.build(acoustic_run), teacher, staging / "acoustic.onnx",
                                            hybrid_acoustic.SHARPEN)
    else:
        model, _, _ = load_student(acoustic_run)
        export(model, "acoustic", staging / "acoustic.onnx")
        if variance:
            comp = compensate(teacher, staging / "acoustic.onnx", config["phoneme_id_map"], config["espeak"]["voice"])
    stored = 0
    if int8_weights:
        stored = store_int8(staging / "vocoder.onnx")
        if hybrid:
            stored += store_int8(staging / "acoustic.onnx", hybrid_acoustic.STORE_PREFIX, hybrid_acoustic.STORE_KEEP)
        log.info("%d weight matrices stored as INT8", stored)
    return comp, stored


def _label(training: dict[str, Any], vocoder_name: str, hybrid: bool, trial: bool, note: str | None) -> str:
    """The gate history's name for one run: verdict, steps of both models, note."""
    passed = training["gate"]["passed"]
    verdict = f"trial, {'passed' if passed else 'failed'}" if trial else "SHIPPED" if passed else "not shipped"
    steps = (f"vocoder {training['vocoder']['steps']} ({vocoder_name}) / "
             f"{'hybrid ' if hybrid else ''}acoustic {training['acoustic']['steps']}")
    return f"{verdict}: {steps}" + (f"; {note}" if note else "")


def ship(vocoder_run: Path, acoustic_run: Path, teacher: Path, corpus_size: int, cache: Path | None = None,
         force_dir: Path | None = None, note: str | None = None, history: Path | None = GATE_HISTORY,
         reproduce: str = "make distill", variance: bool = True, hybrid: bool = False,
         int8_weights: bool = False, sentences: tuple[str, ...] | None = None) -> dict[str, Any]:
    """Export both students, gate them against the teacher, and write them to SHIP_DIR (pass) or RESULTS_DIR (fail).

    Args:
        vocoder_run: training run directory of the vocoder.
        acoustic_run: training run directory of the acoustic model.
        teacher: the teacher's provisioned (split) directory.
        corpus_size: sentences in the training corpus (for the record).
        cache: the teacher-data cache (counted for the record).
        force_dir: write here instead (tests).
        note: free text for the record (e.g. how a run deviated from ``make distill``).
        history: the gate history this run is appended to, passed or not (None: not recorded).
        reproduce: the commands that train these students again, for the record.
        variance: fit the acoustic student's global-variance compensation (``variance.py``) before the gate
            (the shipped pair has it since the twenty-eighth session; False ships the students as trained).
        hybrid: ``acoustic_run`` is a hybrid run (``hybrid.py``): exported with the teacher's text encoder in front,
            compensated and sharpened, exactly as ``make distill-3h`` feeds its vocoder (``variance`` is implied).
        int8_weights: store the vocoder's weight matrices, and a hybrid's text encoder's but its last projection,
            as INT8 (``export.store_int8``): smaller files, float32 inference; the gate measures what is stored.
        sentences: the gate's sentences (default: its 126 held-out ones).
    """
    config = teacher_config()
    staging = (force_dir or RESULTS_DIR) / ".staging"
    shutil.rmtree(staging, ignore_errors=True)
    comp, stored = _export_pair(vocoder_run, acoustic_run, teacher, staging, config, variance, hybrid, int8_weights)
    gate = run_gate(teacher, staging, config["phoneme_id_map"], config["espeak"]["voice"], sentences)

    training = {
        "corpus_sentences": corpus_size,
        "corpus_seed": SEED,
        **(cache_stats(cache) if cache else {}),
        "reproduce": reproduce,
        "machine": f"{platform.machine()} CPU, {platform.system()} {platform.release()}",
        "vocoder": _run_summary(vocoder_run),
        "acoustic": _hybrid_summary(acoustic_run) if hybrid else _run_summary(acoustic_run),
        **({"variance": comp.to_json()} if comp else {}),
        **({"weights_stored": f"{stored} matrices as INT8, one scale per output channel"} if stored else {}),
        "gate": asdict(gate),
        **({"note": note} if note else {}),
    }
    if history is not None:
        record_gate(history, _label(training, vocoder_run.name, hybrid, force_dir is not None, note), gate)
    dest = force_dir or (SHIP_DIR if gate.passed else RESULTS_DIR)
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("acoustic.onnx", "vocoder.onnx"):
        shutil.copyfile(staging / name, dest / name)
    shutil.rmtree(staging, ignore_errors=True)
    voice = dict(config)
    voice["jetvox"] = {"student": True, "teacher": TEACHER, "passed_gate": gate.passed, "training": training}
    (dest / ("voice.json" if gate.passed else "training.json")).write_text(
        json.dumps(voice if gate.passed else voice["jetvox"], indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    if gate.passed:
        log.info("students passed the gate: shipped as voice %s in %s", VOICE_NAME, dest)
    else:
        log.warning("students FAILED the gate (%s): not shipped; kept in %s", "; ".join(gate.reasons), dest)
    return voice["jetvox"]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=Path, default=None, help="directory holding the vocoder/ and acoustic/ runs")
    ap.add_argument("--corpus-size", type=int, default=DEFAULT_SIZE)
    ap.add_argument("--note", default=None, help="free text stored with the training record")
    ap.add_argument("--reproduce", default="make distill", help="the commands that train these students again")
    ap.add_argument("--no-variance", dest="variance", action="store_false",
                    help="ship the acoustic student as trained, without its global-variance compensation")
    ap.add_argument("--vocoder-run", type=Path, default=None,
                    help="the vocoder's run directory (default: RUNS/vocoder-gan where it exists, else RUNS/vocoder)")
    ap.add_argument("--acoustic-run", type=Path, default=None,
                    help="the acoustic model's run directory (default: RUNS/acoustic), e.g. a soup (soup.py)")
    ap.add_argument("--hybrid-run", type=Path, default=None,
                    help="ship a hybrid acoustic model (hybrid.py) from this run instead of --acoustic-run")
    ap.add_argument("--out", type=Path, default=None,
                    help="write the models and their record here, passed or not, instead of shipping (a trial)")
    ap.add_argument("--int8-weights", action="store_true",
                    help="store the weight matrices as INT8 (smaller files; the gate measures what is stored)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    runs = args.runs or runs_dir(default_state_dir())
    gan = runs / "vocoder-gan"
    vocoder = args.vocoder_run or (gan if (gan / "ckpt.pt").is_file() else runs / "vocoder")
    cache = cache_dir(default_state_dir())  # counted for the record where this machine still has it
    if args.hybrid_run and args.acoustic_run:
        ap.error("give --acoustic-run or --hybrid-run, not both")
    if args.hybrid_run and not args.variance:
        ap.error("--no-variance does not apply to a hybrid: it is compensated as its vocoder was trained")
    acoustic = args.hybrid_run or args.acoustic_run or runs / "acoustic"
    try:
        out = ship(vocoder, acoustic, teacher_dir(default_state_dir()), args.corpus_size,
                   cache if cache.is_dir() else None, force_dir=args.out, note=args.note, reproduce=args.reproduce,
                   variance=args.variance, hybrid=args.hybrid_run is not None, int8_weights=args.int8_weights)
    except (FileNotFoundError, ValueError) as exc:  # a run or teacher missing; InterfaceError is a ValueError
        raise SystemExit(f"ship: {exc}") from None
    print(json.dumps(out["training"]["gate"], indent=2))


if __name__ == "__main__":
    main()
