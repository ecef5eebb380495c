"""Daemon latency: milliseconds from an MQTT publish to the first PCM chunk on the audio topic."""

from __future__ import annotations

import dataclasses
import logging
import os
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Sequence

import paho.mqtt.client as mqtt

from devtools.mosquitto import Mosquitto
from jetvox.device.config import Config
from jetvox.device.daemon.intake import no_delay
from jetvox.device.daemon.messages import SayRequest, Status
from jetvox.device.daemon.service import Daemon

log = logging.getLogger(__name__)

DEFAULT_SENTENCES = (
    "The kitchen temperature is 21.5 °C.",
    "Warning: the garage door has been open for 10 minutes.",
    "Good morning. The washing machine has finished.",
    "Battery level low.",
    "Motion detected at the front door at 7:45 PM.",
)
WARMUP = "Warming up."


class _Collector:
    """Records when the first audio chunk and the final status of each message arrive."""

    def __init__(self) -> None:
        self.first_chunk: dict[str, float] = {}
        self.final: dict[str, Status] = {}
        self._cond = threading.Condition()

    def on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        now = time.monotonic()
        kind, msg_id = msg.topic.split("/")[-2:]
        with self._cond:
            if kind == "audio":
                self.first_chunk.setdefault(msg_id, now)
            elif kind == "status":
                status = Status.from_json(bytes(msg.payload))
                if status.state in ("done", "dropped", "error"):
                    self.final[msg_id] = status
            self._cond.notify_all()

    def wait_final(self, msg_id: str, timeout: float) -> Status:
        with self._cond:
            if not self._cond.wait_for(lambda: msg_id in self.final, timeout):
                raise TimeoutError(f"no final status for {msg_id} within {timeout:.0f} s")
            return self.final[msg_id]


def measure_publish_to_first_chunk(cfg: Config, sentences: Sequence[str] = DEFAULT_SENTENCES,
                                   timeout_s: float = 120.0) -> list[float]:
    """Publish each sentence to a private mosquitto with an in-process daemon; ms to its first audio chunk.

    The daemon runs with output ``mqtt`` and the audio cache off; sentences are sent one at a time (each
    after the previous one is done), after one warm-up sentence that is not counted.

    Args:
        cfg: the configuration (voice, state dir, engine, synthesis); broker and outputs are replaced.
        sentences: texts to measure.
        timeout_s: limit for each sentence.
    """
    with tempfile.TemporaryDirectory(prefix="jetvox-bench-") as tmp:
        work = Path(tmp)
        device_id = f"bench-{os.getpid()}"
        with Mosquitto(work / "broker") as broker:
            bench_cfg = dataclasses.replace(
                cfg,
                output="mqtt",
                cache=dataclasses.replace(cfg.cache, enabled=False),
                mqtt=dataclasses.replace(
                    cfg.mqtt, broker=broker.url, device_id=device_id, prefix=None, protocol="5", client_id=None,
                    username=None, password=None, password_file=None, shared_group=None, hermes=False,
                ),
                rules=(),
            )
            daemon = Daemon(bench_cfg, run_dir=work / "run")
            collector = _Collector()
            client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"{device_id}-probe",
                                 protocol=mqtt.MQTTv5)
            client.on_message = collector.on_message
            try:
                if not daemon.start(connect_timeout=30):
                    raise RuntimeError("the daemon did not connect to the private broker")
                client.connect("127.0.0.1", broker.port)
                no_delay(client)  # as the daemon does: the probe's publish is not held behind its last PUBACK
                client.loop_start()
                prefix = daemon.topics.prefix
                subscribed = client.subscribe([(f"{prefix}/audio/+", 1), (f"{prefix}/status/+", 1)])
                if subscribed[0] != mqtt.MQTT_ERR_SUCCESS:
                    raise RuntimeError("cannot subscribe the probe client")
                time.sleep(0.2)
                results = []
                for i, text in enumerate([WARMUP, *sentences]):
                    msg_id = f"bench-{i}"
                    payload = SayRequest(text=text, id=msg_id).to_json()
                    t0 = time.monotonic()
                    client.publish(daemon.topics.say, payload, qos=1)
                    status = collector.wait_final(msg_id, timeout_s)
                    if status.state != "done":
                        raise RuntimeError(f"{text!r} ended {status.state}: {status.reason}")
                    if i > 0:
                        results.append((collector.first_chunk[msg_id] - t0) * 1000.0)
                return results
            finally:
                client.loop_stop()
                client.disconnect()
                daemon.stop()


def main() -> None:  # pragma: no cover - manual run: python -m devtools.bench_mqtt (make bench-mqtt)
    from jetvox.device import config

    logging.basicConfig(level=logging.WARNING)
    ms = measure_publish_to_first_chunk(config.load())
    print("publish -> first chunk (ms):", " ".join(f"{m:.0f}" for m in ms))
    print(f"median {statistics.median(ms):.0f} ms, min {min(ms):.0f}, max {max(ms):.0f}")


if __name__ == "__main__":  # pragma: no cover
    main()
