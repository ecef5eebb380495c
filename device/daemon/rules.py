"""Sensor rules: a reading on a matching topic, past its threshold, becomes a sentence to speak."""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable, Optional

from jetvox.device.config import SensorRule

log = logging.getLogger(__name__)

_MISSING = object()
MAX_REMEMBERED = 10000
"""Most (rule, topic) firing times kept; past it the oldest go (its rule may then repeat early)."""


def topic_matches(topic_filter: str, topic: str) -> bool:
    """MQTT topic-filter matching with ``+`` and ``#`` (wildcards do not match ``$`` topics at the first level)."""
    if topic.startswith("$") and topic_filter[:1] in ("+", "#"):
        return False
    f_levels = topic_filter.split("/")
    t_levels = topic.split("/")
    for i, f in enumerate(f_levels):
        if f == "#":
            return True
        if i >= len(t_levels):
            return False
        if f != "+" and f != t_levels[i]:
            return False
    return len(f_levels) == len(t_levels)


def _lookup(data: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        if isinstance(data, dict) and part in data:
            data = data[part]
        elif isinstance(data, list) and part.isdigit() and int(part) < len(data):
            data = data[int(part)]
        else:
            return _MISSING
    return data


def _as_number(value: Any) -> Optional[float]:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        try:
            number = float(value)
        except OverflowError:  # an integer of hundreds of digits is no reading
            return None
        return number if math.isfinite(number) else None
    if isinstance(value, str):
        if len(value) > 64:
            return None
        try:
            number = float(value.strip())
        except ValueError:
            return None
        return number if math.isfinite(number) else None
    return None


@dataclass(frozen=True)
class RuleHit:
    """A rule that fired for one reading."""

    rule: int
    """Index of the rule in ``cfg.rules``."""
    text: str
    """The sentence to speak."""
    priority: str
    """The rule's priority."""


class RuleEngine:
    """Evaluates ``cfg.rules`` against incoming readings; remembers when each rule last fired per topic."""

    def __init__(self, rules: tuple[SensorRule, ...], clock: Callable[[], float] = time.monotonic) -> None:
        """Prepare the rules.

        Args:
            rules: from the configuration, already validated.
            clock: monotonic seconds (tests pass a fake one).
        """
        self._rules = rules
        self._clock = clock
        self._last: OrderedDict[tuple[int, str], float] = OrderedDict()
        """When each rule last fired per topic, oldest first; bounded (wildcards can match endless topics)."""
        self._lock = threading.Lock()

    def _forget_old(self, now: float) -> None:
        """Drop timestamps that can no longer hold a rule back, and the oldest beyond ``MAX_REMEMBERED``."""
        while self._last:
            (i, _), last = next(iter(self._last.items()))
            if len(self._last) > MAX_REMEMBERED or now - last >= self._rules[i].min_interval_s:
                self._last.popitem(last=False)
            else:
                break

    def __len__(self) -> int:
        """Topics with a remembered firing time."""
        with self._lock:
            return len(self._last)

    @property
    def filters(self) -> list[str]:
        """Topic filters to subscribe to."""
        return list(dict.fromkeys(r.topic for r in self._rules))

    def matches(self, topic: str) -> bool:
        """True if some rule listens on ``topic``."""
        return any(topic_matches(r.topic, topic) for r in self._rules)

    def evaluate(self, topic: str, payload: bytes) -> list[RuleHit]:
        """The sentences a reading produces (thresholds and minimum intervals applied)."""
        try:
            text = payload.decode("utf-8").strip()
        except UnicodeDecodeError:
            log.warning("sensor reading on %s is not UTF-8; ignored", topic)
            return []
        try:
            data: Any = json.loads(text)
        except (ValueError, RecursionError):  # not JSON, nested too deeply, or an integer of > 4,300 digits
            data = text
        hits = []
        for i, rule in enumerate(self._rules):
            if not topic_matches(rule.topic, topic):
                continue
            hit = self._fire(i, rule, topic, data)
            if hit is not None:
                hits.append(hit)
        return hits

    def _fire(self, i: int, rule: SensorRule, topic: str, data: Any) -> Optional[RuleHit]:
        fields: dict[str, Any] = dict(data) if isinstance(data, dict) else {}
        value = _lookup(data, rule.field) if isinstance(data, dict) else data
        if value is _MISSING:
            log.debug("rule %d: no field %r in the reading on %s", i, rule.field, topic)
            return None
        if rule.above is not None or rule.below is not None:
            number = _as_number(value)
            if number is None:
                log.debug("rule %d: reading %r on %s is not a number", i, value, topic)
                return None
            if rule.above is not None and not number > rule.above:
                return None
            if rule.below is not None and not number < rule.below:
                return None
        elif isinstance(value, str) and _as_number(value) is not None:
            value = _as_number(value)
        if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
            value = int(value)  # "21" rather than "21.0"
        context = {**fields, "value": value, "topic": topic.split("/")}
        try:
            sentence = rule.template.format_map(context)
        except (KeyError, IndexError, AttributeError, ValueError, TypeError) as exc:
            log.warning("rule %d: template %r cannot be filled from the reading on %s (%s)", i, rule.template, topic, exc)
            return None
        with self._lock:
            now = self._clock()
            last = self._last.get((i, topic))
            if last is not None and now - last < rule.min_interval_s:
                log.debug("rule %d on %s: repeated within %.0f s; not spoken", i, topic, rule.min_interval_s)
                return None
            self._last[(i, topic)] = now
            self._last.move_to_end((i, topic))
            self._forget_old(now)
        return RuleHit(rule=i, text=sentence, priority=rule.priority)
