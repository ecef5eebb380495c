"""`make verify-device`: provision this Jetson's engines, load them as the daemon does, and judge them against ONNX Runtime FP32."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from pathlib import Path
from typing import Any, Mapping, Sequence

from jetvox.device.config import Config
from jetvox.device.config import load as load_config
from jetvox.device.evaluation.sentences import EVAL_SENTENCES
from jetvox.device.voice.loader import load_voice
from jetvox.engines.errors import JetvoxError
from jetvox.provisioning.pipeline import provision
from jetvox.provisioning.tensorrt.compare import Limits, compare

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_MISMATCH = 1
EXIT_NO_TENSORRT = 2


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m jetvox.provisioning.tensorrt.verify_device",
        description="Build the TensorRT engines `jetvox serve` will load, run them as it does, and compare "
                    "every part with the ONNX Runtime FP32 reference.",
    )
    p.add_argument("--config", type=Path, default=None, help="the device's config (default: built-in defaults)")
    p.add_argument("--state-dir", type=Path, default=None)
    p.add_argument("--voice", default=None, help="voice to verify (default: the configured one)")
    p.add_argument("--sentences", type=int, default=len(EVAL_SENTENCES),
                   help=f"how many of the {len(EVAL_SENTENCES)} built-in sentences to compare")
    p.add_argument("--json", type=Path, default=None, help="also write the report here")
    return p.parse_args(argv)


def _tensorrt_version() -> str | None:
    """TensorRT's version when TensorRT and pycuda are both importable; else None, having said why."""
    try:
        import tensorrt as trt

        from jetvox.engines.tensorrt import tensorrt_version

        version = tensorrt_version(trt)
        import pycuda.driver  # noqa: F401 - only checking it is there
    except ImportError as exc:
        print(
            f"verify-device: TensorRT is not usable here ({exc}).\n"
            "Run this on a Jetson with JetPack's TensorRT Python bindings (python3-libnvinfer) "
            "and pycuda (make install, or pip install -e '.[jetson]').",
            file=sys.stderr,
        )
        return None
    return version


def _engine_failures(report: Mapping[str, Any]) -> list[str]:
    """What provisioning could not build (every planned engine must exist)."""
    if not report.get("available"):
        return [f"TensorRT is not available to provisioning: {report.get('reason', 'no reason given')}"]
    out = [f"{role}: {info['error']}" for role, info in report.get("engines", {}).items() if "error" in info]
    if not report.get("engines"):
        out.append("provisioning planned no TensorRT engine")
    return out


def verify(cfg: Config, sentences: Sequence[str]) -> dict[str, Any]:
    """Provision, load with TensorRT as the daemon does, compare with ONNX Runtime FP32; the report.

    Args:
        cfg: the device's configuration.
        sentences: what to speak in the comparison.
    """
    say = lambda line: print(f"  {line}", flush=True)  # noqa: E731
    result = provision(cfg, progress=say)
    report: dict[str, Any] = {"voice": result.manifest.voice, "platform": result.manifest.tensorrt.get("platform"),
                              "engines": result.manifest.tensorrt.get("engines", {})}
    failures = _engine_failures(result.manifest.tensorrt)
    if failures:
        return {**report, "failures": failures, "passed": False}
    # exactly what `jetvox serve` opens, except that a fallback to ONNX Runtime is an error here
    forced = dataclasses.replace(cfg, engine=dataclasses.replace(cfg.engine, backend="tensorrt"))
    cpu = dataclasses.replace(cfg, engine=dataclasses.replace(cfg.engine, backend="onnxruntime"))
    device = load_voice(forced)
    reference = load_voice(cpu, precision="fp32")
    try:
        report["backends"] = {"acoustic": device.acoustic.backend, "vocoder": device.vocoder.backend}
        print(f"loaded as the daemon does: acoustic {device.acoustic.backend}, vocoder {device.vocoder.backend} "
              f"({device.precision})", flush=True)
        comparison = compare(reference, device, sentences, cfg.synthesis, Limits(), say)
    finally:
        device.close()
        reference.close()
    return {**report, **comparison.to_json()}


def _print(report: dict[str, Any]) -> None:
    f = report.get("figures")
    if f:
        print(
            f"encoder: {f['changed_durations']:.2%} of {f['phonemes']} durations changed, frames {f['frame_change']:+.2%} | "
            f"decoder log-mel {f['decoder_log_mel']:.4f} | vocoder log-mel {f['vocoder_log_mel']:.4f} "
            f"(bound {f['log_mel_bound']:.4f}) | WER {f['wer_chain']:.3f} vs FP32 {f['wer_reference']:.3f} | "
            f"P.808 {f['naturalness_chain']['p808']:.3f} vs FP32 {f['naturalness_reference']['p808']:.3f}",
            flush=True,
        )
    for failure in report["failures"]:
        print(f"verify-device: FAIL {failure}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit status.

    Args:
        argv: command-line arguments (None: sys.argv[1:]).
    """
    args = _parse(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    version = _tensorrt_version()
    if version is None:
        return EXIT_NO_TENSORRT
    try:
        cfg = load_config(args.config, voice__name=args.voice, state_dir=str(args.state_dir) if args.state_dir else None)
        report = verify(cfg, EVAL_SENTENCES[: max(1, args.sentences)])
    except JetvoxError as exc:
        print(f"verify-device: {exc}", file=sys.stderr)
        return EXIT_MISMATCH
    _print(report)
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")
    if report["failures"]:
        return EXIT_MISMATCH
    print(f"verify-device: OK, TensorRT {version}: every engine within its limits of ONNX Runtime FP32")
    return EXIT_OK


if __name__ == "__main__":  # run as `python -m jetvox.provisioning.tensorrt.verify_device` (a script path would shadow `platform`)
    sys.exit(main())
