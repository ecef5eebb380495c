"""The `jetvox` command line: say, serve and bench here; layers above add theirs (provision) as plugins."""

from __future__ import annotations

import argparse
import logging
import sys
from importlib import metadata
from pathlib import Path
from typing import Callable, Sequence

from jetvox.device import config as config_mod
from jetvox.device import limits
from jetvox.engines.errors import JetvoxError

log = logging.getLogger(__name__)

COMMAND_GROUP = "jetvox.commands"
"""Entry-point group through which other jetvox packages add subcommands (provisioning adds `provision`)."""

Handler = Callable[[argparse.Namespace], int]


def add_config_options(sp: argparse.ArgumentParser) -> None:
    """The options every subcommand takes: config file, state dir, voice."""
    sp.add_argument("--config", type=Path, help="YAML configuration file (default: built-in defaults)")
    sp.add_argument("--state-dir", type=Path, help="where provisioned voices live (overrides state_dir)")
    sp.add_argument("--voice", help="voice name (overrides voice.name)")


def load_config(args: argparse.Namespace, **extra: object) -> config_mod.Config:
    """The configuration file named by ``--config`` with the common flags and ``extra`` overrides applied."""
    return config_mod.load(
        args.config,
        state_dir=str(args.state_dir) if args.state_dir else None,
        voice__name=args.voice,
        **extra,
    )


def _say(args: argparse.Namespace) -> int:
    from jetvox.device.cli.say import SayRequest, say

    cfg = load_config(args, audio__device=args.device, engine__precision=args.precision,
                      synthesis__lexicon=str(args.lexicon) if args.lexicon else None)
    req = SayRequest(texts=_say_texts(args), wav=args.output, raw=args.raw,
                     length_scale=args.length_scale, volume=args.volume, ssml=args.ssml)
    return say(cfg, req)


def _serve(args: argparse.Namespace) -> int:
    from jetvox.device.daemon.service import run_daemon

    cfg = load_config(args, mqtt__broker=args.broker, mqtt__device_id=args.device_id, output=args.output,
                      wyoming__uri=args.wyoming, wyoming__enabled=True if args.wyoming else None,
                      wyoming__zeroconf=False if args.no_zeroconf else None)
    return run_daemon(cfg)


def _bench(args: argparse.Namespace) -> int:
    from jetvox.device.evaluation.bench import BenchOptions, run_bench

    opts = BenchOptions(
        json=args.json,
        wer=args.wer,
        quality=args.quality,
        repeat=args.repeat,
        limit=args.limit,
        systems=tuple(args.systems.split(",")) if args.systems else (),
    )
    return run_bench(load_config(args), opts)


def bounded(bound: limits.Bound) -> Callable[[str], float]:
    """An argparse type: a number within ``bound`` (the same bounds as the config file and MQTT JSON)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number {bound.describe()}, got {text!r}") from None
        problem = bound.problem(value)
        if problem is not None:
            raise argparse.ArgumentTypeError(problem)
        return value

    return parse


def _add_device_commands(sub: argparse._SubParsersAction) -> None:
    sp = sub.add_parser("say", help="speak text on the default output device, or to a WAV / raw PCM")
    add_config_options(sp)
    sp.add_argument("text", nargs="*", help="text to speak")
    sp.add_argument("-o", "--output", type=Path, help="write a WAV file instead of playing")
    sp.add_argument("--raw", action="store_true", help="stream s16le mono PCM to stdout")
    sp.add_argument("--stdin", action="store_true", help="read lines from stdin, speaking each")
    sp.add_argument("--device", help="sounddevice output device (name or index)")
    sp.add_argument("--precision", choices=("auto", "fp32", "int8"), help="vocoder precision")
    sp.add_argument("--lexicon", type=Path, metavar="FILE", help="pronunciation lexicon to try (YAML)")
    sp.add_argument("--ssml", action="store_true", help="the text is SSML (text starting with <speak always is)")
    sp.add_argument("--length-scale", type=bounded(limits.LENGTH_SCALE), metavar="X",
                    help=f"speaking rate, above 1 is slower ({limits.LENGTH_SCALE.describe()})")
    sp.add_argument("--volume", type=bounded(limits.VOLUME), metavar="GAIN",
                    help=f"output gain ({limits.VOLUME.describe()})")
    sp.set_defaults(handler=_say)

    sp = sub.add_parser("serve", help="run the resident MQTT daemon")
    add_config_options(sp)
    sp.add_argument("--broker", help="mqtt://HOST:PORT or mqtts://HOST:PORT")
    sp.add_argument("--device-id", help="device id for topics (default: host name)")
    sp.add_argument("--output", choices=("speaker", "mqtt", "both"), help="where speech goes")
    sp.add_argument("--wyoming", metavar="URI", help="also serve Wyoming (Home Assistant) at tcp://HOST:PORT "
                    "(overrides wyoming.uri and turns wyoming.enabled on)")
    sp.add_argument("--no-zeroconf", action="store_true", help="do not announce the Wyoming server over mDNS")
    sp.set_defaults(handler=_serve)

    sp = sub.add_parser("bench", help="first-audio latency and real-time factor beside piper-tts")
    add_config_options(sp)
    sp.add_argument("--json", action="store_true", help="machine-readable output")
    sp.add_argument("--wer", action="store_true", help="also transcribe with pocketsphinx and report WER")
    sp.add_argument("--quality", action="store_true",
                    help="also score naturalness: DNSMOS P.808 and OVRL (speechmos, equal loudness, 16 kHz)")
    sp.add_argument("--repeat", type=int, default=1, help="runs per sentence (the median is kept)")
    sp.add_argument("--limit", type=int, help="only the first N sentences")
    sp.add_argument("--systems", help="comma-separated systems to run (default: all available; jetvox-ssml, "
                                      "the configured voice with each sentence sent as SSML, only when named)")
    sp.set_defaults(handler=_bench)


def _add_plugin_commands(sub: argparse._SubParsersAction) -> None:
    """Subcommands registered under the ``jetvox.commands`` entry points (each ``register(sub)``)."""
    for ep in sorted(metadata.entry_points(group=COMMAND_GROUP), key=lambda e: e.name):
        try:
            register = ep.load()
        except ImportError as exc:  # an optional layer that is not installed
            log.warning("jetvox command %s unavailable: %s", ep.name, exc)
            continue
        register(sub)


def build_parser() -> argparse.ArgumentParser:
    """The whole `jetvox` parser: the device's commands and every registered plugin command."""
    p = argparse.ArgumentParser(prog="jetvox", description="Text-to-speech appliance for Jetson and Linux edge boxes.")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True)
    _add_plugin_commands(sub)
    _add_device_commands(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run `jetvox`; any JetvoxError becomes one line on stderr and its exit code, never a traceback."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        handler: Handler = args.handler
        return handler(args)
    except JetvoxError as exc:
        kind = "config error: " if isinstance(exc, config_mod.ConfigError) else ""
        print(f"jetvox: {kind}{exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


def _say_texts(args: argparse.Namespace) -> list[str] | None:
    """The texts to speak: the arguments joined, or None to read lines from stdin."""
    if args.stdin:
        if args.text:
            raise SystemExit("jetvox say: give TEXT or --stdin, not both")
        return None
    return [" ".join(args.text)]


