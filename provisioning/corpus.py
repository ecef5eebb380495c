"""Generated corpora (INT8 calibration, distillation training): one seeded generator of distinct sentences,
kept apart from every evaluation set."""

from __future__ import annotations

import random
from typing import Callable, Iterable

from jetvox.device.evaluation.sentences import HELD_OUT, check_disjoint, normalised_key

Draw = Callable[[random.Random], str]
"""Draws one sentence from the generator's random state."""


def clock(rng: random.Random, minute_step: int = 1) -> str:
    """A time of day, 12-hour with AM/PM (minutes in steps of ``minute_step``) or 24-hour."""
    if rng.random() < 0.5:
        return f"{rng.randint(1, 12)}:{rng.randrange(0, 60, minute_step):02d} {rng.choice(('AM', 'PM'))}"
    return f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}"


def distinct_sentences(
    draw: Draw, count: int, seed: int, *, first: Iterable[str] = (), exclude: Iterable[str] = ()
) -> list[str]:
    """``count`` distinct sentences: ``first`` in order, then draws from ``random.Random(seed)``.

    Sentences equal (ignoring case and punctuation) to an evaluation sentence, to one in ``exclude``
    or to one already taken are skipped; the same arguments always give the same list.

    Args:
        draw: one sentence from the random state.
        count: how many sentences.
        seed: seed of the random state.
        first: fixed sentences taken before any draw (they consume no randomness).
        exclude: further sentences the corpus must not contain.
    """
    if count <= 0:
        raise ValueError(f"count must be positive, got {count}")
    exclude = list(exclude)
    banned = {normalised_key(s) for s in (*HELD_OUT, *exclude)}
    seen: set[str] = set()
    out: list[str] = []

    def take(sentence: str) -> None:
        key = normalised_key(sentence)
        if key not in banned and key not in seen:
            seen.add(key)
            out.append(sentence)

    for sentence in first:
        if len(out) >= count:
            break
        take(sentence)
    rng = random.Random(seed)
    attempts = 0
    while len(out) < count:
        attempts += 1
        if attempts > 50 * count:
            raise RuntimeError(f"the generator produced only {len(out)} distinct sentences, expected {count}")
        take(draw(rng))
    check_disjoint(out, exclude)
    return out
