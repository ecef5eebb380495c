"""Daemon configuration: the example file, typed loading, errors that name the key, flag overrides."""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path

import pytest
import yaml

from jetvox.device import config
from jetvox.device.cli import main

EXAMPLE = Path(__file__).resolve().parent.parent / "config" / "jetvox.example.yaml"


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "jetvox.yaml"
    p.write_text(text)
    return p


def test_example_config_loads_and_documents_every_key() -> None:
    cfg = config.load(EXAMPLE)
    assert cfg.rules == ()  # an installed config announces nothing by itself
    text = EXAMPLE.read_text()
    data = yaml.safe_load(text)

    def check(cls: type, node: dict, path: str) -> None:
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if f.name == "state_dir":  # machine-specific: shown commented out
                assert "# state_dir:" in text
                continue
            assert f.name in node, f"{path}{f.name} missing from the example config"
            if dataclasses.is_dataclass(hints[f.name]):
                check(hints[f.name], node[f.name], f"{path}{f.name}.")

    check(config.Config, data, "")
    # every key line is preceded by a comment line
    lines = text.splitlines()
    for i, line in enumerate(lines):
        stripped = line.strip()
        if stripped and not stripped.startswith(("#", "-")) and ":" in stripped and not stripped.endswith(":") \
                and not lines[i - 1].strip().startswith(("#", "-")) and not line.startswith("    "):
            pytest.fail(f"line {i + 1} has no comment above it: {line!r}")


def test_example_rules_block_is_valid() -> None:
    lines = EXAMPLE.read_text().splitlines()
    start = lines.index("# rules:")
    block = []
    for line in lines[start:]:
        if not line.startswith("#"):
            break
        block.append(line[2:])
    cfg = config.from_mapping(yaml.safe_load("\n".join(block)))
    assert [r.topic for r in cfg.rules] == ["home/+/temperature", "home/+/battery"]
    assert cfg.rules[0].above == 30 and cfg.rules[1].field == "battery.level"


def test_defaults_without_a_file() -> None:
    cfg = config.load(None)
    assert cfg.mqtt.protocol == "5" and cfg.queue.alert_cuts_off == ("low",) and cfg.audio.wav_dir is None


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("mqtt:\n  brokr: mqtt://x\n", "unknown key mqtt.brokr"),
        ("queue:\n  max_queued: lots\n", "queue.max_queued: expected an integer"),
        ("queue:\n  max_queued: 0\n", "queue.max_queued: must be between 1 and 10000000, got 0"),
        ("engine:\n  threads: 1000000\n", "engine.threads: must be between 0 and"),
        ("engine:\n  threads: 1.5\n", "engine.threads: expected an integer"),
        ("synthesis:\n  volume: .nan\n", "synthesis.volume: expected a finite number between 0 and 4, got nan"),
        ("synthesis:\n  volume: 5\n", "synthesis.volume: must be between 0 and 4, got 5.0"),
        ("audio:\n  volume: -.inf\n", "audio.volume: expected a finite number"),
        ("synthesis:\n  length_scale: 0\n", "synthesis.length_scale: must be between 0.25 and 4"),
        ("synthesis:\n  length_scale: " + "9" * 400 + "\n", "an integer of 400 digits"),
        ("queue:\n  default_ttl_s: .inf\n", "queue.default_ttl_s: expected a finite number"),
        ("queue:\n  max_payload_bytes: 0\n", "queue.max_payload_bytes: must be between 1 and"),
        ("mqtt:\n  fleet_prefetch: 0\n", "mqtt.fleet_prefetch: must be between 1 and 100"),
        ("mqtt:\n  broker: mqtts://h\n  ca_certs: /nonexistent/ca.pem\n",
         "mqtt.ca_certs: expected a readable file, got '/nonexistent/ca.pem', which does not exist"),
        ("mqtt:\n  username: u\n  password_file: /nonexistent/pw\n", "mqtt.password_file: expected a readable file"),
        ("queue:\n  alert_cuts_off: [urgent]\n", "queue.alert_cuts_off[0]"),
        ("audio:\n  volume: -1\n", "audio.volume: must be between 0 and 4, got -1"),
        ("audio:\n  retry_s: 0\n", "audio.retry_s: must be a finite number greater than 0"),
        ("audio:\n  wav_dir: 3\n", "audio.wav_dir: expected a path"),
        ("mqtt:\n  broker: http://x:1\n", "mqtt.broker: expected mqtt://"),
        ("mqtt:\n  broker: mqtt://x:99999\n", "mqtt.broker: bad port"),
        ("mqtt:\n  broker: 'mqtt://:1883'\n", "mqtt.broker: no host"),
        ("mqtt:\n  protocol: 4\n", "mqtt.protocol: expected one of"),
        ("mqtt:\n  device_id: a/b\n", "mqtt.device_id"),
        ("mqtt:\n  prefix: 'a/#'\n", "mqtt.prefix"),
        ("mqtt:\n  keyfile: /k.pem\n", "mqtt.keyfile: needs mqtt.certfile"),
        ("mqtt:\n  password: x\n  password_file: /p\n", "give one, not both"),
        ("mqtt:\n  tls_insecure: 1\n", "mqtt.tls_insecure: expected true or false"),
        ("mqtt:\n  reconnect_min_s: 5\n  reconnect_max_s: 1\n", "reconnect_max_s must be at least"),
        ("rules:\n  - topic: a/#/b\n    template: x\n", "rules[0].topic"),
        ("rules:\n  - topic: a\n    template: '{value'\n", "rules[0].template"),
        ("rules:\n  - topic: a\n", "rules[0]"),
        ("rules:\n  - topic: a\n    template: x\n    priority: urgent\n", "rules[0].priority"),
        ("rules:\n  - topic: a\n    template: x\n    above: hot\n", "rules[0].above: expected a number"),
    ],
)
def test_errors_name_the_key(tmp_path: Path, text: str, fragment: str) -> None:
    with pytest.raises(config.ConfigError) as err:
        config.load(write(tmp_path, text))
    assert fragment in str(err.value)


def test_broker_address() -> None:
    assert config.broker_address("mqtt://h") == (False, "h", 1883)
    assert config.broker_address("mqtts://h") == (True, "h", 8883)
    assert config.broker_address("mqtt://10.0.0.2:1884/") == (False, "10.0.0.2", 1884)
    assert config.broker_address("mqtts://[::1]:8884") == (True, "::1", 8884)


def test_flags_override_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "output: speaker\nmqtt:\n  broker: mqtt://file:1883\n  device_id: filebox\n")
    cfg = config.load(path, mqtt__broker="mqtts://flag:8883", mqtt__device_id="flagbox", output="both")
    assert (cfg.mqtt.broker, cfg.mqtt.device_id, cfg.output) == ("mqtts://flag:8883", "flagbox", "both")
    cfg = config.load(path, mqtt__broker=None, mqtt__device_id=None, output=None)
    assert (cfg.mqtt.broker, cfg.mqtt.device_id, cfg.output) == ("mqtt://file:1883", "filebox", "speaker")


def test_serve_rejects_a_bad_config_before_starting(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "queue:\n  max_payload_bytes: -5\n")
    assert main(["serve", "--config", str(path)]) == 2
    assert "queue.max_payload_bytes: must be between 1 and 16777216, got -5" in capsys.readouterr().err
    assert main(["serve", "--config", str(path.with_name("missing.yaml"))]) == 2
    assert "cannot read config file" in capsys.readouterr().err
    assert main(["serve", "--broker", "ftp://x"]) == 2
    assert "mqtt.broker" in capsys.readouterr().err
