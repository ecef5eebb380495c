"""Wide-vocabulary training sentences: sentence frames filled with wonderwords' nouns, verbs and adjectives.

The generated corpus (``corpus.py``) speaks about 730 distinct words; the acoustic student's latents on sentences
it has never seen are about 45% further from the teacher's than on its training sentences. These sentences bring
thousands of other words (so phoneme sequences the templates never produce), in the same sentence shapes a
device speaks: requests, questions, alerts, readings with abbreviated units, times and names.
"""

from __future__ import annotations

import logging
import random
from functools import lru_cache
from typing import Callable, Iterable

from jetvox.provisioning.corpus import clock, distinct_sentences
from jetvox.provisioning.distill.corpus import DEVICES, NAMES, ROOMS, STATES, WEEKDAYS, _number

log = logging.getLogger(__name__)

WIDE_SIZE = 4000
WIDE_SEED = 4321
WONDERWORDS = "wonderwords==3.0.1"
"""The pinned word lists (MIT): the same version gives the same sentences."""

UNIT_SYMBOLS = ("kW", "kWh", "W", "V", "mA", "A", "Hz", "hPa", "mbar", "ppm", "dB", "lux", "rpm", "km/h", "m/s",
                "mm", "cm", "kg", "L", "%", "°C")
"""Abbreviated units the text frontend expands (a reading as a sensor would send it)."""


@lru_cache(maxsize=1)
def word_lists() -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """(nouns, verbs, adjectives): wonderwords' lists, lower-case single words only, profanities removed, sorted."""
    try:
        from wonderwords import RandomWord, filter_profanity
    except ImportError:
        raise ImportError(f"the wide corpus needs {WONDERWORDS} (pip install '{WONDERWORDS}')") from None
    rw = RandomWord()

    def category(name: str) -> tuple[str, ...]:
        words = rw.filter(include_categories=[name], exclude_with_spaces=True, regex="[a-z]{2,14}")
        return tuple(sorted(set(filter_profanity(words))))

    return category("noun"), category("verb"), category("adjective")


def _a(word: str) -> str:
    """The word with its indefinite article (by its first letter, as written)."""
    return f"{'an' if word[0] in 'aeiou' else 'a'} {word}"


def _frames(rng: random.Random) -> tuple[Callable[[], str], ...]:
    nouns, verbs, adjectives = word_lists()
    n1, n2, n3 = rng.choice(nouns), rng.choice(nouns), rng.choice(nouns)
    v1, v2 = rng.choice(verbs), rng.choice(verbs)
    a1, a2 = rng.choice(adjectives), rng.choice(adjectives)
    room, device, name = rng.choice(ROOMS), rng.choice(DEVICES), rng.choice(NAMES)
    reading = f"{_number(rng)} {rng.choice(UNIT_SYMBOLS)}".replace(" %", "%")
    return (
        lambda: f"Please {v1} the {a1} {n1} before {clock(rng)}.",
        lambda: f"Did anyone {v1} the {n1} in the {room}?",
        lambda: f"The {a1} {n1} next to the {n2} needs attention.",
        lambda: f"We should {v1} the {n1} and then {v2} the {n2}.",
        lambda: f"{name} wants to {v1} {_a(a1)} {n1} on {rng.choice(WEEKDAYS)}.",
        lambda: f"Remember to {v1} the {n1} when the {device} {rng.choice(STATES)}.",
        lambda: f"Why is the {n1} so {a1} today?",
        lambda: f"There is {_a(a1)} {n1} near the {room} door.",
        lambda: f"The {n1} looks {a1}, but the {n2} seems {a2}.",
        lambda: f"If the {n1} gets {a1}, {v1} the {n2} at once.",
        lambda: f"Nobody knows how to {v1} {_a(n1)} like that.",
        lambda: f"{n1.capitalize()} {rng.randint(1, 40)} reports {reading}.",
        lambda: f"The {n1} sensor in the {room} reads {reading}.",
        lambda: f"At {clock(rng)}, {name} will {v1} the {n1} and the {n2}.",
        lambda: f"Notice: the {n1} {rng.choice(STATES)}, so {v1} the {n2} if you can.",
        lambda: f"Could you {v1} my {a1} {n1}, {name}?",
        lambda: f"{_a(a1).capitalize()} {n1}, {_a(n2)} and {_a(a2)} {n3} are waiting in the {room}.",
        lambda: f"Do not {v1} the {n1} until the {n2} is {a1}.",
        lambda: f"{name} said the {n1} was {a1} and the {n2} was {a2}.",
        lambda: f"Status of the {n1}: {a1}, {reading}.",
    )


def _draw(rng: random.Random) -> str:
    return rng.choice(_frames(rng))()


def generate_wide(size: int = WIDE_SIZE, seed: int = WIDE_SEED, exclude: Iterable[str] = ()) -> list[str]:
    """A deterministic list of ``size`` distinct wide-vocabulary sentences, disjoint from the evaluation sets.

    Args:
        size: number of sentences.
        seed: random seed (the same seed and wonderwords version give the same list).
        exclude: further sentences the list must not contain (e.g. the generated corpus).
    """
    out = distinct_sentences(_draw, size, seed, exclude=exclude)
    log.info("generated %d wide-vocabulary sentences (seed %d)", len(out), seed)
    return out
