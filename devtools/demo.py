"""`make demo`: a sensor reading through a private mosquitto and the real daemon to demo.wav, then played."""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import tempfile
import threading
import time
import wave
from pathlib import Path

import paho.mqtt.client as mqtt
import yaml

from devtools.mosquitto import Mosquitto
from jetvox.device import config
from jetvox.device.daemon.messages import Status

DEVICE_ID = "demo"
PREFIX = f"jetvox/{DEVICE_ID}"
SENSOR_TOPIC = "home/kitchen/temperature"
READING = {"value": 31.5, "humidity": 62}
RULE = {
    "topic": "home/+/temperature",
    "field": "value",
    "above": 30,
    "template": "Attention: the {topic[1]} temperature is {value} °C and humidity is {humidity}%.",
    "min_interval_s": 60,
    "priority": "high",
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", type=Path, default=Path("demo.wav"), help="WAV file to write")
    ap.add_argument("--no-play", action="store_true", help="do not play the result")
    ap.add_argument("--timeout", type=float, default=180.0, help="seconds to wait for the daemon")
    args = ap.parse_args()
    state_dir = config.load().state_dir  # where `make provision` put the voice
    with tempfile.TemporaryDirectory(prefix="jetvox-demo-") as tmp:
        work = Path(tmp)
        demo_cfg = work / "jetvox-demo.yaml"
        demo_cfg.write_text(yaml.safe_dump({
            "state_dir": str(state_dir),
            "cache": {"enabled": False},
            "rules": [RULE],
            "logging": {"level": "INFO", "journald": False},
        }, allow_unicode=True))
        with Mosquitto(work / "broker") as broker:
            print(f"demo: private mosquitto on {broker.url}")
            jetvox = Path(sys.executable).with_name("jetvox")
            cmd = [str(jetvox)] if jetvox.exists() else [sys.executable, "-m", "jetvox.device.cli"]
            cmd += ["serve", "--config", str(demo_cfg), "--broker", broker.url, "--device-id", DEVICE_ID,
                    "--output", "mqtt"]
            log_path = work / "daemon.log"
            with open(log_path, "wb") as log:
                daemon = subprocess.Popen(cmd, stdout=log, stderr=log)
            try:
                code = run(broker, daemon, args.out, args.timeout, log_path)
                if code == 0 and not args.no_play:
                    play(args.out)
                return code
            finally:
                if daemon.poll() is None:
                    daemon.send_signal(signal.SIGTERM)
                    try:
                        daemon.wait(30)
                    except subprocess.TimeoutExpired:
                        daemon.kill()
                        daemon.wait(10)


def run(broker: Mosquitto, daemon: subprocess.Popen, out: Path, timeout: float, log_path: Path) -> int:
    """Publish the reading once the daemon is online; write the PCM it answers with to ``out``."""
    cond = threading.Condition()
    online = threading.Event()
    chunks: dict[str, list[tuple[float, bytes]]] = {}
    final: dict[str, Status] = {}

    def on_message(client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        with cond:
            if msg.topic == f"{PREFIX}/availability":
                if msg.payload == b"online":
                    online.set()
            elif "/audio/" in msg.topic:
                chunks.setdefault(msg.topic.rsplit("/", 1)[1], []).append((time.monotonic(), bytes(msg.payload)))
            elif "/status/" in msg.topic:
                status = Status.from_json(bytes(msg.payload))
                if status.state in ("done", "dropped", "error"):
                    final[status.id] = status
            cond.notify_all()

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="jetvox-demo-probe", protocol=mqtt.MQTTv5)
    client.on_message = on_message
    client.connect("127.0.0.1", broker.port)
    client.subscribe(f"{PREFIX}/#", qos=1)
    client.loop_start()
    try:
        print("demo: starting `jetvox serve` (loading the voice)...")
        deadline = time.monotonic() + timeout
        while not online.wait(0.5):
            if daemon.poll() is not None or time.monotonic() > deadline:
                print(f"demo: the daemon did not come up:\n{log_path.read_text(errors='replace')[-3000:]}",
                      file=sys.stderr)
                return 1
        print(f"demo: publishing {json.dumps(READING)} to {SENSOR_TOPIC}")
        t0 = time.monotonic()
        client.publish(SENSOR_TOPIC, json.dumps(READING), qos=1)
        with cond:
            if not cond.wait_for(lambda: bool(final), max(1.0, deadline - time.monotonic())):
                print(f"demo: no answer from the daemon:\n{log_path.read_text(errors='replace')[-3000:]}",
                      file=sys.stderr)
                return 1
            msg_id, status = next(iter(final.items()))
            received = list(chunks.get(msg_id, []))
        if status.state != "done" or not received:
            print(f"demo: message {msg_id} ended {status.state}: {status.reason}", file=sys.stderr)
            return 1
        pcm = b"".join(c for _, c in received)
        with wave.open(str(out), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(status.sample_rate or 22050)
            w.writeframes(pcm)
        print(f"demo: wrote {out}: {status.audio_s} s of audio in {status.chunks} MQTT chunks; "
              f"publish to first chunk {(received[0][0] - t0) * 1000:.0f} ms "
              f"(daemon: first audio {status.first_audio_ms} ms after it started)")
    finally:
        client.loop_stop()
        client.disconnect()
    return 0


def play(path: Path) -> None:
    """Play the WAV on the default sound device, if there is one."""
    import numpy as np

    from jetvox.device.audio.sinks import AudioDeviceError, SpeakerSink

    with wave.open(str(path)) as w:
        rate = w.getframerate()
        audio = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float32) / 32767.0
    try:
        sink = SpeakerSink(rate)
        sink.write(audio)
        sink.close()
    except (AudioDeviceError, OSError) as exc:
        print(f"demo: (no sound device here: listen to {path}) [{exc}]")


if __name__ == "__main__":
    sys.exit(main())
