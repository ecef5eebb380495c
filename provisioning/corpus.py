"""Fixed evaluation sentences (benchmark, WER tests, quality gates) and the disjointness check for generated corpora."""

from __future__ import annotations

from typing import Iterable

# IoT-style traffic: sensor readings, alerts, times, units. Used by `jetvox bench`, the
# intelligibility tests and the INT8 / student quality gates. Never used for calibration
# or training: generated corpora must pass `check_disjoint`.
EVAL_SENTENCES: tuple[str, ...] = (
    "The living room temperature is 21.5 °C.",
    "Warning: carbon dioxide in the office has reached 1,450 ppm.",
    "The front door was unlocked at 7:32 AM.",
    "Humidity in the bathroom is 78%.",
    "Wind speed outside is 42 km/h from the north.",
    "The freezer temperature has risen to -12 °C.",
    "Solar panels produced 18.4 kWh today.",
    "The garage door has been open for 15 minutes.",
    "Battery of the smoke detector in the hallway is at 9%.",
    "Air pressure is falling: 998 hPa.",
    "The washing machine finished its cycle.",
    "Motion detected in the backyard at 11:05 PM.",
    "Water leak detected under the kitchen sink.",
    "The server room is at 31 °C, above the limit.",
    "Your package was delivered to the porch.",
    "Noise level in the workshop is 87 dB.",
    "Light level in the greenhouse is 12,000 lux.",
    "The boiler pressure dropped to 0.8 bar.",
    "Good morning. It is 6:45 AM and the outside temperature is 3 °C.",
    "Reminder: take out the recycling tonight.",
    "The heat pump is drawing 2.4 kW.",
    "Conveyor belt three has stopped.",
    "The main supply voltage is 229 V.",
    "Fire alarm in building B, please evacuate now.",
    "The dishwasher will finish in 25 minutes.",
    "Rain is expected after 4 PM.",
)


def normalised_key(sentence: str) -> str:
    """Case- and punctuation-insensitive form used to compare sentences."""
    return " ".join("".join(c.lower() if c.isalnum() else " " for c in sentence).split())


def check_disjoint(generated: Iterable[str], *others: Iterable[str]) -> None:
    """Raise ValueError if any generated sentence equals an evaluation sentence (or one of ``others``)."""
    banned = {normalised_key(s) for s in EVAL_SENTENCES}
    for extra in others:
        banned.update(normalised_key(s) for s in extra)
    clashes = sorted({s for s in generated if normalised_key(s) in banned})
    if clashes:
        raise ValueError(f"{len(clashes)} generated sentence(s) overlap an evaluation set, e.g. {clashes[0]!r}")
