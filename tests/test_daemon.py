"""The daemon against a real mosquitto: speech out, no message lost or doubled, priorities, bad input, systemd."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

from devtools.mosquitto import Mosquitto
from jetvox.device.daemon.messages import Topics
from tests.mqttfix import WAIT_S, Probe, daemon_settings

pytestmark = pytest.mark.slow

PREFIX = "jetvox/test"
LONG = ("The washing machine has finished its cycle and the laundry is ready. "
        "Please remember to take the bins out tonight, collection is early tomorrow morning. "
        "The living room window is still open and it will rain this evening.")


def say(probe: Probe, text: str, prefix: str = PREFIX, **fields: Any) -> None:
    probe.publish(f"{prefix}/say", json.dumps({"text": text, **fields}) if fields else text)


def pcm(chunks: list[bytes]) -> np.ndarray:
    return np.frombuffer(b"".join(chunks), dtype="<i2").astype(np.float32) / 32767.0


def test_text_in_pcm_out_is_intelligible(broker: Mosquitto, state_dir: Path, inproc_daemon: Callable,
                                         probe_factory: Callable) -> None:
    quality = pytest.importorskip("jetvox.device.evaluation.quality")
    probe = probe_factory(broker, [f"{PREFIX}/#"])
    inproc_daemon(daemon_settings(state_dir, broker))
    refs = ["The front door is open.", "Please close the garage door before you leave the house."]
    for i, text in enumerate(refs):
        say(probe, text, id=f"w{i}")
    hyps = []
    for i, text in enumerate(refs):
        done = probe.final(f"w{i}")
        assert done.state == "done", done
        chunks = probe.audio(f"w{i}")
        assert len(chunks) == done.chunks and done.sample_rate == 22050
        audio = pcm(chunks)
        assert abs(len(audio) / 22050 - done.audio_s) < 0.01
        assert done.first_audio_ms is not None and done.first_audio_ms > 0
        assert probe.states(f"w{i}") == ["queued", "started", "done"]
        hyps.append(quality.transcribe(audio, 22050))
    wer = quality.word_error_rate(refs, hyps)
    assert wer <= 0.5, f"WER {wer:.2f}: {hyps}"


def test_kill9_loses_nothing_and_speaks_each_message_once(broker: Mosquitto, state_dir: Path,
                                                          daemon_process: Callable, probe_factory: Callable,
                                                          tmp_path: Path) -> None:
    probe = probe_factory(broker, [f"{PREFIX}/#"])
    settings = daemon_settings(state_dir, broker)
    first = daemon_process("first", settings)
    probe.wait_online(PREFIX)
    ids = [f"k{i}" for i in range(4)]
    for i, msg_id in enumerate(ids):
        say(probe, f"Message number {i + 1}. " + LONG[: 60 + 20 * i], id=msg_id)
    probe.wait_for(lambda: len(probe.audio("k0")) >= 1, WAIT_S, "k0 audio")
    first.kill9()  # mid-utterance, with the rest spooled (acknowledged to the broker) and not yet spoken
    assert not any(s.state == "done" for msg_id in ids[1:] for s in probe.statuses(msg_id))
    restarted = time.monotonic()
    daemon_process("second", settings)
    probe.wait_online(PREFIX, after=restarted)
    for msg_id in ids:
        assert probe.final(msg_id, timeout=120).state == "done"
    # A repeat of a finished id is recognised (journalled across the restart): answered, not spoken again.
    seen = len(probe.states("k1"))
    say(probe, "Message number one again.", id="k1")
    say(probe, "Sentinel.", id="sentinel")
    assert probe.final("sentinel").state == "done"
    for msg_id in ids:
        spoken = [s for s in probe.statuses(msg_id) if s.state == "done" and not s.duplicate]
        assert len(spoken) == 1, (msg_id, probe.states(msg_id))
    repeat = probe.statuses("k1")[seen:]
    assert [(s.state, s.duplicate) for s in repeat] == [("done", True)], repeat
    assert "already spoken" in (repeat[0].reason or "")
    assert not probe.audio("k1")[probe.statuses("k1")[seen - 1].chunks or 0:]  # no second audio


def test_broker_restart_mid_stream_loses_nothing(broker: Mosquitto, state_dir: Path, inproc_daemon: Callable,
                                                 probe_factory: Callable) -> None:
    probe = probe_factory(broker, [f"{PREFIX}/#"], client_id="probe-restart", persistent=True)
    inproc_daemon(daemon_settings(state_dir, broker))
    ids = ["r0", "r1", "r2"]
    for i, msg_id in enumerate(ids):
        say(probe, f"Restart test {i + 1}. " + LONG[: 80 + 30 * i], id=msg_id)
    probe.wait_for(lambda: len(probe.audio("r0")) >= 1, WAIT_S, "r0 audio")
    broker.restart(down_s=1.0)
    finals = {msg_id: probe.final(msg_id, timeout=120) for msg_id in ids}
    assert all(st.state == "done" for st in finals.values()), finals
    for msg_id in ids:
        # the same done status may arrive twice (a QoS 1 resend), but only one distinct one per message
        done = {(s.ts, s.chunks) for s in probe.statuses(msg_id) if s.state == "done"}
        assert len(done) == 1, (msg_id, probe.states(msg_id))
    say(probe, "After the restart.", id="after")
    assert probe.final("after").state == "done"


def test_priorities_cut_off_and_ttl(broker: Mosquitto, state_dir: Path, inproc_daemon: Callable,
                                    probe_factory: Callable) -> None:
    probe = probe_factory(broker, [f"{PREFIX}/#"])
    inproc_daemon(daemon_settings(state_dir, broker))
    say(probe, LONG * 3, id="busy-low", priority="low")
    probe.wait_for(lambda: "started" in probe.states("busy-low"), WAIT_S, "busy-low started")
    say(probe, "Normal one.", id="n1")
    say(probe, "Low two.", id="l2", priority="low")
    say(probe, "Stale one.", id="stale", ttl_s=0.01)
    say(probe, "High one.", id="h1", priority="high")
    say(probe, "Alert one.", id="a1", priority="alert")
    cut = probe.final("busy-low")
    assert cut.state == "dropped" and "cut off by alert a1" in (cut.reason or ""), cut
    for msg_id in ("a1", "h1", "n1", "l2"):
        assert probe.final(msg_id).state == "done"
    stale = probe.final("stale")
    assert stale.state == "dropped" and "expired" in (stale.reason or ""), stale
    started = [s.id for s in probe.statuses() if s.state == "started"]
    assert started == ["busy-low", "a1", "h1", "n1", "l2"], started


def test_malformed_payloads_get_error_statuses_and_the_daemon_keeps_serving(
        broker: Mosquitto, state_dir: Path, inproc_daemon: Callable, probe_factory: Callable) -> None:
    probe = probe_factory(broker, [f"{PREFIX}/#"])
    inproc_daemon(daemon_settings(state_dir, broker))
    bad: list[tuple[bytes | str, str]] = [
        (b"\xff\xfe\xfd not text", "not valid UTF-8"),
        ('{"text": "broken', "not valid JSON"),
        ('{"text": 42}', "text: expected a string"),
        ('{"text": "hi", "priority": 5}', "priority: expected one of"),
        ('{"text": "hi", "volume": "loud"}', "volume: expected a number"),
        (b"x" * (10 * 1024 * 1024), "payload is 10485760 bytes"),
        (b"", "text is empty"),
        ('{"text": "   "}', "text is empty"),
        ('{"text": "!!! ???"}', "nothing speakable"),
    ]
    for payload, _ in bad:
        probe.publish(f"{PREFIX}/say", payload)
    probe.wait_for(lambda: len([s for s in probe.statuses() if s.state == "error"]) >= len(bad), WAIT_S,
                   "an error status for each bad payload")
    reasons = [s.reason or "" for s in probe.statuses() if s.state == "error"]
    for _, fragment in bad:
        assert any(fragment in r for r in reasons), (fragment, reasons)
    say(probe, "Still here.", id="ok")
    assert probe.final("ok").state == "done"


def test_dedupe_while_queued_and_cache_hit(broker: Mosquitto, state_dir: Path, inproc_daemon: Callable,
                                           probe_factory: Callable) -> None:
    probe = probe_factory(broker, [f"{PREFIX}/#"])
    inproc_daemon(daemon_settings(state_dir, broker, cache={"enabled": True, "max_mb": 8}))
    text = "Cache test."
    say(probe, LONG, id="first")
    say(probe, text, id="c1")
    say(probe, text, id="c1")  # same id while queued: attached, not spoken twice
    say(probe, text, id="c2")  # same text, new id: from the cache
    assert probe.final("c2").state == "done"
    assert probe.states("c1").count("done") == 1
    c1, c2 = probe.final("c1"), probe.final("c2")
    assert c1.cached is False and c2.cached is True
    assert b"".join(probe.audio("c1")) == b"".join(probe.audio("c2"))


def test_speaker_failure_does_not_lose_the_message(broker: Mosquitto, state_dir: Path, inproc_daemon: Callable,
                                                   probe_factory: Callable) -> None:
    probe = probe_factory(broker, [f"{PREFIX}/#"])
    inproc_daemon(daemon_settings(state_dir, broker, audio={"device": "no-such-sound-device", "retry_s": 0.2}))
    say(probe, "Speaker and MQTT.", id="both", output="both")
    done = probe.final("both")
    assert done.state == "done" and done.outputs == ("mqtt",) and "no-such-sound-device" in (done.speaker_error or "")
    assert probe.audio("both")
    # speaker only: the message waits for the device (retried every retry_s) until its TTL runs out
    say(probe, "Speaker only.", id="only", output="speaker", ttl_s=1.0)
    dropped = probe.final("only")
    assert dropped.state == "dropped" and "sound device" in (dropped.reason or ""), dropped
    say(probe, "Next.", id="next")
    assert probe.final("next").state == "done"


def test_sensor_rule_and_hermes(broker: Mosquitto, state_dir: Path, inproc_daemon: Callable,
                                probe_factory: Callable) -> None:
    probe = probe_factory(broker, [f"{PREFIX}/#", "hermes/#"])
    rules = [{"topic": "home/+/temperature", "above": 30, "template": "Temperature in {topic[1]} is {value} °C",
              "min_interval_s": 60, "priority": "high"}]
    inproc_daemon(daemon_settings(state_dir, broker, rules=rules, mqtt={"hermes": True, "site_id": "hall"}))
    probe.publish("home/kitchen/temperature", json.dumps({"value": 25.0}))
    probe.publish("home/kitchen/temperature", json.dumps({"value": 31.5}))
    probe.publish("home/kitchen/temperature", json.dumps({"value": 32.5}))  # within min_interval_s
    probe.wait_for(lambda: any(s.state == "done" and s.id.startswith("rule-") for s in probe.statuses()),
                   WAIT_S, "the rule's message spoken")
    rule_ids = {s.id for s in probe.statuses() if s.id.startswith("rule-")}
    assert len(rule_ids) == 1
    probe.publish(Topics.HERMES_SAY, json.dumps({"text": "Hello from Hermes.", "id": "h-1", "siteId": "hall",
                                                 "sessionId": "s-9"}))
    probe.publish(Topics.HERMES_SAY, json.dumps({"text": "Not for us.", "id": "h-2", "siteId": "attic"}))
    probe.wait_for(lambda: bool(probe.topic_messages(Topics.HERMES_SAY_FINISHED)), WAIT_S, "sayFinished")
    finished = json.loads(probe.topic_messages(Topics.HERMES_SAY_FINISHED)[0].payload)
    assert finished == {"id": "h-1", "siteId": "hall", "sessionId": "s-9"}
    wav = probe.topic_messages("hermes/audioServer/hall/playBytes/h-1")
    assert len(wav) == 1 and wav[0].payload[:4] == b"RIFF"
    assert not probe.statuses("h-2")


def test_mqtt_311_protocol(broker: Mosquitto, state_dir: Path, inproc_daemon: Callable,
                           probe_factory: Callable) -> None:
    probe = probe_factory(broker, [f"{PREFIX}/#"])
    inproc_daemon(daemon_settings(state_dir, broker, mqtt={"protocol": "3.1.1"}))
    say(probe, "Protocol three one one.")
    probe.wait_for(lambda: any(s.state == "done" for s in probe.statuses()), WAIT_S, "done")


def test_sd_notify_ready_watchdog_and_clean_stop(broker: Mosquitto, state_dir: Path, daemon_process: Callable,
                                                 probe_factory: Callable, tmp_path: Path) -> None:
    sock_path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(sock_path))
    sock.settimeout(1.0)
    probe = probe_factory(broker, [f"{PREFIX}/#"])
    proc = daemon_process("notify", daemon_settings(state_dir, broker),
                          env={"NOTIFY_SOCKET": str(sock_path), "WATCHDOG_USEC": "2000000"})
    got: list[bytes] = []
    deadline = time.monotonic() + WAIT_S

    def collect_until(pred: Callable[[], bool]) -> None:
        while not pred():
            assert time.monotonic() < deadline, f"sd_notify messages so far: {got}\n{proc.log()}"
            try:
                got.append(sock.recv(4096))
            except socket.timeout:
                pass

    collect_until(lambda: any(b"READY=1" in m for m in got))
    ready_at = len(got)
    assert any(m.startswith(b"STATUS=loading voice") for m in got[:ready_at])
    probe.wait_online(PREFIX, timeout=5)  # READY came after connecting (online is published before READY)
    # with WATCHDOG_USEC=2 s the synthesis thread pings at least every second while idle
    t0 = time.monotonic()
    collect_until(lambda: sum(m == b"WATCHDOG=1" for m in got[ready_at:]) >= 3)
    assert time.monotonic() - t0 < 5
    say(probe, "Watchdog test.", id="wd")
    assert probe.final("wd").state == "done"
    assert proc.terminate() == 0, proc.log()
    collect_until(lambda: any(m.startswith(b"STOPPING=1") for m in got))
    probe.wait_for(lambda: probe.topic_messages(f"{PREFIX}/availability")[-1].payload == b"offline", 10,
                   "offline on clean stop")
    sock.close()


def test_sigterm_leaves_queued_messages_at_the_broker(broker: Mosquitto, state_dir: Path,
                                                      daemon_process: Callable, probe_factory: Callable) -> None:
    probe = probe_factory(broker, [f"{PREFIX}/#"])
    settings = daemon_settings(state_dir, broker)
    first = daemon_process("first", settings)
    probe.wait_online(PREFIX)
    say(probe, LONG * 3, id="t0")
    say(probe, "Queued behind.", id="t1")
    probe.wait_for(lambda: "started" in probe.states("t0"), WAIT_S, "t0 started")
    assert first.terminate() == 0, first.log()
    assert "done" not in probe.states("t1")
    restarted = time.monotonic()
    daemon_process("second", settings)
    probe.wait_online(PREFIX, after=restarted)
    assert probe.final("t1", timeout=120).state == "done"
    assert probe.states("t0").count("done") == 1


def test_demo_script(state_dir: Path, tmp_path: Path) -> None:
    import os
    import subprocess
    import sys
    import wave

    out = tmp_path / "demo.wav"
    root = Path(__file__).resolve().parent.parent
    res = subprocess.run([sys.executable, "-m", "devtools.demo", "--out", str(out), "--no-play", "--timeout", "120"],
                         env={**os.environ, "JETVOX_STATE_DIR": str(state_dir)}, capture_output=True, text=True,
                         timeout=180, cwd=root)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "publish to first chunk" in res.stdout
    with wave.open(str(out)) as w:
        assert w.getframerate() == 22050 and w.getnframes() > 22050 * 2


def test_bench_publish_to_first_chunk(state_dir: Path) -> None:
    from devtools.bench_mqtt import measure_publish_to_first_chunk
    from jetvox.device import config

    ms = measure_publish_to_first_chunk(config.load(state_dir=str(state_dir)), ["Door open.", "Battery low."])
    assert len(ms) == 2 and all(0 < m < 30000 for m in ms), ms


SLOW_LOAD = """
import hashlib, sys, time
import jetvox.device.daemon.service as service
def slow_load(cfg):
    if sys.argv[1] == "python":
        time.sleep(600)  # a load that takes long in Python code: the signal interrupts it
    else:
        hashlib.pbkdf2_hmac("sha256", b"x", b"y", 10**9)  # stuck in native code that never looks at signals
service.load_voice = slow_load
from jetvox.device.cli import main
sys.exit(main(["serve", "--config", sys.argv[2]]))
"""


@pytest.mark.parametrize("where", ["python", "native"])
def test_sigterm_while_the_voice_loads_stops_within_10_s(where: str, broker: Mosquitto, state_dir: Path,
                                                         tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys

    import yaml

    cfg = tmp_path / "jetvox.yaml"
    cfg.write_text(yaml.safe_dump(daemon_settings(state_dir, broker)))
    log_path = tmp_path / "daemon.log"
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen([sys.executable, "-c", SLOW_LOAD, where, str(cfg)], stdout=log_file,
                                stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while b"logging to" not in log_path.read_bytes() and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1.0)
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(20)
        took = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
    log = log_path.read_text()
    assert took < 10, f"SIGTERM took {took:.1f} s: {log}"
    if where == "python":
        assert rc == 0 and "stopped while loading the voice" in log, log
    else:  # the hard exit after 9 s
        assert rc == 1 and "still stopping 9 s after the signal" in log, log
    assert "Traceback" not in log, log


def test_an_unwritable_state_dir_is_a_clear_config_error(tmp_path: Path, broker: Mosquitto) -> None:
    import subprocess
    import sys

    import yaml

    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    cfg = tmp_path / "jetvox.yaml"
    cfg.write_text(yaml.safe_dump(daemon_settings(blocker / "state", broker)))
    run = subprocess.run([sys.executable, "-m", "jetvox.device.cli", "serve", "--config", str(cfg)],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 2, run.stderr
    assert "config error: state_dir: cannot write" in run.stderr and "Traceback" not in run.stderr, run.stderr


def test_per_message_sentence_silence_is_exact_in_the_pcm(broker: Mosquitto, state_dir: Path,
                                                          inproc_daemon: Callable, probe_factory: Callable) -> None:
    probe = probe_factory(broker, [f"{PREFIX}/#"])
    inproc_daemon(daemon_settings(state_dir, broker))
    text = "The garage door is open. The kitchen light is on."
    for msg_id, silence in (("quiet0", 0.0), ("quiet1", 1.25)):
        say(probe, text, id=msg_id, sentence_silence=silence)
    lengths = {}
    for msg_id in ("quiet0", "quiet1"):
        assert probe.final(msg_id).state == "done"
        lengths[msg_id] = len(pcm(probe.audio(msg_id)))
    # deterministic synthesis (noise 0): the only difference is the silence between the two sentences
    assert abs((lengths["quiet1"] - lengths["quiet0"]) - 1.25 * 22050) <= 1, lengths
    say(probe, text, id="too-long", sentence_silence=11)
    bad = probe.final("too-long")
    assert bad.state == "error" and "sentence_silence: must be between 0 and 10" in (bad.reason or ""), bad


def test_a_message_may_choose_any_provisioned_voice(broker: Mosquitto, state_dir: Path, inproc_daemon: Callable,
                                                     probe_factory: Callable) -> None:
    probe = probe_factory(broker, [f"{PREFIX}/#"])
    daemon = inproc_daemon(daemon_settings(state_dir, broker, synthesis={"noise_scale": 0.0, "noise_w": 0.0,
                                                                         "max_voices": 2}))
    text = "The front door is open."
    say(probe, text, id="v-default")
    say(probe, text, id="v-teacher", voice="en_US-joe-medium")
    say(probe, text, id="v-again", voice="en_US-joe-medium")
    say(probe, text, id="v-missing", voice="no-such-voice")
    say(probe, text, id="v-bad", voice="../etc")
    done = {m: probe.final(m) for m in ("v-default", "v-teacher", "v-again", "v-missing", "v-bad")}
    assert (done["v-default"].state, done["v-default"].voice) == ("done", "joe-fast")
    assert (done["v-teacher"].state, done["v-teacher"].voice) == ("done", "en_US-joe-medium")
    assert (done["v-again"].state, done["v-again"].voice) == ("done", "en_US-joe-medium")
    a, b = pcm(probe.audio("v-default")), pcm(probe.audio("v-teacher"))
    assert len(a) != len(b) or not np.allclose(a, b), "two voices, the same audio"
    assert done["v-missing"].state == "error"
    assert "no-such-voice is not provisioned on this device (provisioned: en_US-joe-medium, joe-fast)" in (
        done["v-missing"].reason or ""), done["v-missing"]
    assert done["v-bad"].state == "error" and "voice: expected a voice name" in (done["v-bad"].reason or "")
    assert daemon.worker.voices.loaded == ["joe-fast", "en_US-joe-medium"]  # kept for the next message


def test_a_20000_character_message_is_spoken_to_its_last_chunk(broker: Mosquitto, state_dir: Path,
                                                               inproc_daemon: Callable, probe_factory: Callable) -> None:
    probe = probe_factory(broker, [f"{PREFIX}/#"])
    inproc_daemon(daemon_settings(state_dir, broker))
    base = "Sensor {} reports that the washing machine has finished and the laundry is ready to hang up. "
    text = "".join(base.format(i) for i in range(300))[:20000]
    say(probe, text, id="novel", ttl_s=5)  # the TTL bounds the wait in the queue, not the speaking
    done = probe.final("novel", timeout=600)
    assert done.state == "done", done
    chunks = probe.audio("novel")
    assert len(chunks) == done.chunks
    assert abs(len(pcm(chunks)) / 22050 - (done.audio_s or 0)) < 0.01
    assert (done.audio_s or 0) > 600  # about 20 minutes of speech, all of it
    tail = pcm(chunks[-1:])
    assert float(np.sqrt(np.mean(tail**2))) > 0.005  # the last chunk holds the end of the speech, not silence


def test_the_lexicon_is_reread_on_sighup_and_a_broken_one_stops_the_start(broker: Mosquitto, state_dir: Path,
                                                                          daemon_process: Callable,
                                                                          probe_factory: Callable,
                                                                          tmp_path: Path) -> None:
    import signal

    lexicon = tmp_path / "lexicon.yaml"
    lexicon.write_text("words:\n  alpha: aa\n")
    probe = probe_factory(broker, [f"{PREFIX}/#"])
    d = daemon_process("lex", daemon_settings(state_dir, broker, synthesis={"lexicon": str(lexicon)}))
    probe.wait_online(PREFIX)
    say(probe, "Alpha.", id="lex1")
    short = probe.final("lex1").audio_s or 0
    stat = lexicon.stat()
    lexicon.write_text("words:\n  alpha: 77\n")  # "seventy-seven": same size, same time stamp below
    os_utime = __import__("os").utime
    os_utime(lexicon, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # the same time stamp: only SIGHUP can tell
    assert d.proc is not None
    d.proc.send_signal(signal.SIGHUP)
    time.sleep(0.5)
    say(probe, "Alpha.", id="lex2")
    longer = probe.final("lex2").audio_s or 0
    assert longer > short + 0.2, (short, longer)
    assert "received SIGHUP; reloading the pronunciation lexicon" in d.log()
    lexicon.write_text("words:\n  alpha: {sey: x}\n")
    bad = daemon_process("lexbad", daemon_settings(state_dir, broker, device_id="lexbad",
                                                  synthesis={"lexicon": str(lexicon)}))
    assert bad.proc is not None and bad.proc.wait(60) == 2
    assert f"{lexicon}:2: alpha: unknown key 'sey'" in bad.log() and "Traceback" not in bad.log(), bad.log()
