"""The `jetvox` command line: provision, say, serve, bench."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Sequence

from device import config as config_mod

log = logging.getLogger(__name__)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="jetvox", description="Text-to-speech appliance for Jetson and Linux edge boxes.")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True)

    def with_config(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--config", type=Path, help="YAML configuration file (default: built-in defaults)")
        sp.add_argument("--state-dir", type=Path, help="where provisioned voices live (overrides state_dir)")
        sp.add_argument("--voice", help="voice name (overrides voice.name)")

    sp = sub.add_parser("provision", help="prepare the configured voice for this device (idempotent)")
    with_config(sp)

    sp = sub.add_parser("say", help="speak text on the default output device, or to a WAV / raw PCM")
    with_config(sp)
    sp.add_argument("text", nargs="*", help="text to speak")
    sp.add_argument("-o", "--output", type=Path, help="write a WAV file instead of playing")
    sp.add_argument("--raw", action="store_true", help="stream s16le mono PCM to stdout")
    sp.add_argument("--stdin", action="store_true", help="read lines from stdin, speaking each")
    sp.add_argument("--device", help="sounddevice output device (name or index)")
    sp.add_argument("--precision", choices=("auto", "fp32", "int8"), help="vocoder precision")
    sp.add_argument("--length-scale", type=float, help="speaking rate (above 1 is slower)")
    sp.add_argument("--volume", type=float, help="output gain")

    sp = sub.add_parser("serve", help="run the resident MQTT daemon")
    with_config(sp)
    sp.add_argument("--broker", help="mqtt://HOST:PORT or mqtts://HOST:PORT")
    sp.add_argument("--device-id", help="device id for topics (default: host name)")
    sp.add_argument("--output", choices=("speaker", "mqtt", "both"), help="where speech goes")

    sp = sub.add_parser("bench", help="first-audio latency and real-time factor beside piper-tts")
    with_config(sp)
    sp.add_argument("--json", action="store_true", help="machine-readable output")
    sp.add_argument("--wer", action="store_true", help="also transcribe with pocketsphinx and report WER")
    sp.add_argument("--repeat", type=int, default=1, help="runs per sentence (the median is kept)")
    sp.add_argument("--limit", type=int, help="only the first N sentences")
    sp.add_argument("--systems", help="comma-separated systems to run (default: all available)")
    sp.add_argument("--mqtt", action="store_true", help="also time MQTT publish to first PCM chunk (private broker)")
    return p


def _load_config(args: argparse.Namespace, **extra: object) -> config_mod.Config:
    return config_mod.load(
        args.config,
        state_dir=str(args.state_dir) if args.state_dir else None,
        voice__name=args.voice,
        **extra,
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        return _dispatch(args)
    except config_mod.ConfigError as exc:
        print(f"jetvox: config error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _dispatch(args: argparse.Namespace) -> int:
    from device.audio import AudioDeviceError
    from device.synthesis import SynthesisError
    from engines import EngineError
    from provisioning.manifest import ManifestError
    from provisioning.voices import VoiceError

    try:
        if args.command == "provision":
            from provisioning.pipeline import provision

            result = provision(_load_config(args))
            print(f"voice ready in {result.directory}")
            return 0
        if args.command == "say":
            from device.say import SayRequest, say

            cfg = _load_config(args, audio__device=args.device, engine__precision=args.precision)
            texts = _say_texts(args)
            req = SayRequest(
                texts=texts,
                wav=args.output,
                raw=args.raw,
                length_scale=args.length_scale,
                volume=args.volume,
            )
            return say(cfg, req)
        if args.command == "serve":
            from device.daemon import run_daemon

            cfg = _load_config(
                args, mqtt__broker=args.broker, mqtt__device_id=args.device_id, output=args.output
            )
            return run_daemon(cfg)
        if args.command == "bench":
            from device.bench import BenchOptions, run_bench

            opts = BenchOptions(
                json=args.json,
                wer=args.wer,
                repeat=args.repeat,
                limit=args.limit,
                systems=tuple(args.systems.split(",")) if args.systems else (),
                mqtt=args.mqtt,
            )
            return run_bench(_load_config(args), opts)
    except (SynthesisError, VoiceError, ManifestError, EngineError, AudioDeviceError) as exc:
        print(f"jetvox: {exc}", file=sys.stderr)
        return 1
    raise AssertionError(args.command)  # pragma: no cover - argparse enforces the choices


def _say_texts(args: argparse.Namespace) -> list[str] | None:
    """The texts to speak: the arguments joined, or None to read lines from stdin."""
    if args.stdin:
        if args.text:
            raise SystemExit("jetvox say: give TEXT or --stdin, not both")
        return None
    return [" ".join(args.text)]


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
