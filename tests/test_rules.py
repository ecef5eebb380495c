"""Sensor rules: topic filters, fields, thresholds, templates, minimum intervals."""

from __future__ import annotations

import json

import pytest

from jetvox.device.config import SensorRule
from jetvox.device.daemon.rules import RuleEngine, topic_matches


@pytest.mark.parametrize(
    "flt, topic, ok",
    [
        ("home/+/temperature", "home/kitchen/temperature", True),
        ("home/+/temperature", "home/kitchen/humidity", False),
        ("home/+/temperature", "home/a/b/temperature", False),
        ("home/#", "home/a/b/c", True),
        ("home/#", "home", True),
        ("#", "$SYS/broker", False),
        ("+/x", "$SYS/x", False),
        ("a/b", "a/b", True),
        ("a/b", "a/b/c", False),
    ],
)
def test_topic_matches(flt: str, topic: str, ok: bool) -> None:
    assert topic_matches(flt, topic) is ok


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def reading(**fields: object) -> bytes:
    return json.dumps(fields).encode()


def test_temperature_rule_with_threshold_and_interval() -> None:
    clock = Clock()
    rule = SensorRule(topic="home/+/temperature", template="Temperature in {topic[1]} is {value} °C",
                      above=30.0, min_interval_s=60.0, priority="high")
    eng = RuleEngine((rule,), clock=clock)
    assert eng.filters == ["home/+/temperature"]
    assert eng.evaluate("home/kitchen/temperature", reading(value=25.0)) == []
    hits = eng.evaluate("home/kitchen/temperature", reading(value=31.5))
    assert [(h.text, h.priority) for h in hits] == [("Temperature in kitchen is 31.5 °C", "high")]
    clock.t += 10
    assert eng.evaluate("home/kitchen/temperature", reading(value=32.0)) == []  # too soon
    assert len(eng.evaluate("home/garage/temperature", reading(value=33.0))) == 1  # other topic, own interval
    clock.t += 60
    assert eng.evaluate("home/kitchen/temperature", reading(value=32))[0].text == "Temperature in kitchen is 32 °C"


def test_below_and_band() -> None:
    eng = RuleEngine((SensorRule(topic="t", template="{value}", above=10, below=20, min_interval_s=0),))
    assert [h.text for h in eng.evaluate("t", b"15")] == ["15"]
    assert eng.evaluate("t", b"25") == [] and eng.evaluate("t", b"5") == []


def test_dotted_field_other_fields_and_plain_payloads() -> None:
    rules = (
        SensorRule(topic="bat/+", field="battery.level", below=15, template="{name} battery at {value} percent",
                   min_interval_s=0),
        SensorRule(topic="door/+", template="The {topic[1]} door is {value}", min_interval_s=0),
    )
    eng = RuleEngine(rules)
    assert eng.evaluate("bat/x", reading(name="Hall sensor", battery={"level": 9}))[0].text == \
        "Hall sensor battery at 9 percent"
    assert eng.evaluate("bat/x", reading(name="Hall", battery={"level": 50})) == []
    assert eng.evaluate("bat/x", reading(name="Hall")) == []  # no such field
    assert eng.evaluate("door/front", b"open")[0].text == "The front door is open"
    assert eng.evaluate("door/front", reading(value="closed"))[0].text == "The front door is closed"


def test_non_numeric_reading_with_threshold_and_bad_template_are_ignored() -> None:
    eng = RuleEngine((SensorRule(topic="t", template="{value}", above=1, min_interval_s=0),
                      SensorRule(topic="u", template="{missing} {value}", min_interval_s=0)))
    assert eng.evaluate("t", b"warm") == []
    assert eng.evaluate("t", b"\xff") == []
    assert eng.evaluate("u", b"3") == []


def test_several_rules_on_one_topic() -> None:
    eng = RuleEngine((SensorRule(topic="t/#", template="a {value}", min_interval_s=0),
                      SensorRule(topic="t/x", template="b {value}", above=5, min_interval_s=0, priority="alert")))
    assert [(h.rule, h.text, h.priority) for h in eng.evaluate("t/x", b"7")] == [(0, "a 7", "normal"),
                                                                               (1, "b 7", "alert")]
    assert eng.matches("t/y") and not eng.matches("s/x")


def test_firing_times_are_bounded_across_endless_topics() -> None:
    from jetvox.device.daemon import rules as rules_mod

    now = [0.0]
    engine = RuleEngine((SensorRule(topic="s/+/t", template="{value}", min_interval_s=60.0),), clock=lambda: now[0])
    for i in range(rules_mod.MAX_REMEMBERED + 500):  # a + wildcard matching ever new topics
        assert engine.evaluate(f"s/{i}/t", b"1")
    assert len(engine) == rules_mod.MAX_REMEMBERED
    now[0] = 61.0  # once the interval has passed, nothing needs remembering
    engine.evaluate("s/new/t", b"1")
    assert len(engine) == 1


@pytest.mark.parametrize("payload", [b"9" * 400, b"7" * 5000, b'{"value": ' + b"9" * 400 + b"}",
                                     b'{"value": ' + b"7" * 5000 + b"}", b"[" * 20000, b"NaN"])
def test_hostile_readings_are_ignored_without_an_exception(payload: bytes) -> None:
    engine = RuleEngine((SensorRule(topic="s/t", template="It is {value}.", above=30, min_interval_s=0),))
    assert engine.evaluate("s/t", payload) == []
