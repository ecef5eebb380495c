"""INT8 calibration corpus: seeded IoT-style sentences turned into phoneme ids and latent frames z."""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np
import onnx
from onnx import helper

from jetvox.device.synthesis.feeds import acoustic_feeds
from jetvox.device.text.normalize import prepare
from jetvox.engines.onnxrt import ort_session
from jetvox.provisioning.corpus import clock, distinct_sentences

if TYPE_CHECKING:
    import onnx
    import onnxruntime

log = logging.getLogger(__name__)

CORPUS_VERSION = 1
DEFAULT_SIZE = 240
DEFAULT_SEED = 4_2024
# Seed given to the acoustic model's RandomNormalLike nodes, so the latent frames are reproducible.
NOISE_SEED = 1234.0

_ROOMS = (
    "kitchen", "living room", "bedroom", "nursery", "office", "attic", "basement", "cellar", "garage",
    "hallway", "laundry room", "guest room", "workshop", "greenhouse", "server room", "pantry", "studio",
    "boiler room", "conservatory", "loft", "warehouse", "cold store", "lab", "barn",
)
_APPLIANCES = (
    "dishwasher", "washing machine", "tumble dryer", "oven", "coffee machine", "bread maker", "robot vacuum",
    "3D printer", "sprinkler system", "pool pump", "EV charger", "water heater", "air purifier", "dehumidifier",
)
_DOORS = ("front door", "back door", "garage door", "patio door", "side gate", "shed door", "cellar hatch", "skylight")
_ALERTS = ("Warning:", "Alert:", "Attention:", "Notice:", "Heads up:", "Caution:")
_GREETINGS = ("Good morning.", "Good afternoon.", "Good evening.", "Hello.")
_PLACES = ("driveway", "front porch", "back garden", "side entrance", "loading bay", "parking lot", "patio", "gate")
_MACHINES = ("pump", "compressor", "fan", "conveyor", "chiller", "generator", "inverter", "mixer", "press")
_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_BINS = ("recycling", "garden waste", "general waste", "compost", "glass")
_BATTERY_DEVICES = ("door sensor", "motion sensor", "smoke detector", "thermostat", "leak sensor", "window contact")


def _num(rng: random.Random, lo: float, hi: float, decimals: int) -> str:
    """A number in [lo, hi] written like a sensor would (thousands separators, fixed decimals)."""
    value = rng.uniform(lo, hi)
    return f"{value:,.{decimals}f}" if decimals else f"{round(value):,d}"


def _temp(rng: random.Random) -> str:
    if rng.random() < 0.75:
        return f"{_num(rng, -25, 45, rng.choice((0, 1)))} °C"
    return f"{_num(rng, -10, 110, rng.choice((0, 1)))} °F"


def _sentence(rng: random.Random) -> str:
    """One sentence from a randomly chosen template."""
    room, room2 = rng.sample(_ROOMS, 2)
    r = rng.randrange(26)
    if r == 0:
        return f"The {room} temperature is {_temp(rng)}."
    if r == 1:
        return f"{rng.choice(_ALERTS)} humidity in the {room} has reached {_num(rng, 55, 99, rng.choice((0, 1)))}%."
    if r == 2:
        return f"Carbon dioxide in the {room} is {_num(rng, 400, 3000, 0)} ppm."
    if r == 3:
        return f"The {rng.choice(_APPLIANCES)} finished at {clock(rng, 5)}."
    if r == 4:
        return f"{rng.choice(_ALERTS)} the {rng.choice(_DOORS)} has been open for {rng.randint(2, 90)} minutes."
    if r == 5:
        return f"Motion detected on the {rng.choice(_PLACES)} at {clock(rng, 5)}."
    if r == 6:
        return f"The {rng.choice(_MACHINES)} in the {room} is drawing {_num(rng, 0.2, 9.9, 1)} kW."
    if r == 7:
        return f"The {rng.choice(_BATTERY_DEVICES)} in the {room} has {rng.randint(1, 25)}% battery left."
    if r == 8:
        return f"Energy used today: {_num(rng, 2, 60, 1)} kWh, {rng.choice(('up', 'down'))} {rng.randint(2, 40)}% on yesterday."
    if r == 9:
        return f"Outside it is {_temp(rng)} with wind at {rng.randint(3, 95)} km/h."
    if r == 10:
        return f"{rng.choice(_GREETINGS)} It is {clock(rng, 5)} and the {room} is at {_temp(rng)}."
    if r == 11:
        return f"Pressure in line {rng.randint(1, 12)} is {_num(rng, 0.5, 9.5, 1)} bar."
    if r == 12:
        return f"The light level in the {room} is {_num(rng, 5, 20000, 0)} lux."
    if r == 13:
        return f"Noise in the {room} reached {rng.randint(35, 110)} dB at {clock(rng, 5)}."
    if r == 14:
        return f"The {rng.choice(_BINS)} collection is on {rng.choice(_WEEKDAYS)} at {clock(rng, 5)}."
    if r == 15:
        return f"{rng.choice(_ALERTS)} water detected in the {room}, the main valve was closed at {clock(rng, 5)}."
    if r == 16:
        return f"The freezer in the {room} warmed to {_num(rng, -20, 4, 1)} °C."
    if r == 17:
        return f"Rainfall in the last hour was {_num(rng, 0.2, 40, 1)} mm."
    if r == 18:
        return f"The {rng.choice(_MACHINES)} {rng.randint(1, 9)} is running at {_num(rng, 300, 3600, 0)} rpm."
    if r == 19:
        return f"Mains voltage is {rng.randint(205, 250)} V and the frequency is {_num(rng, 49.8, 50.2, 2)} Hz."
    if r == 20:
        return f"The {room} window has been open for {rng.randint(5, 120)} minutes while the heating is on."
    if r == 21:
        return f"The {rng.choice(_APPLIANCES)} will be done in {rng.randint(3, 150)} minutes."
    if r == 22:
        return f"Solar output is {_num(rng, 0.1, 12, 1)} kW and the battery is at {rng.randint(5, 100)}%."
    if r == 23:
        return f"The {room} is {_num(rng, 0.5, 6, 1)} degrees warmer than the {room2}."
    if r == 24:
        return f"{rng.choice(_ALERTS)} the {rng.choice(_MACHINES)} current is {_num(rng, 0.5, 32, 1)} A, above the limit."
    return f"Air quality in the {room} is {rng.choice(('good', 'fair', 'poor'))}: {_num(rng, 3, 180, 0)} micrograms of fine dust."


def generate_sentences(count: int = DEFAULT_SIZE, seed: int = DEFAULT_SEED) -> list[str]:
    """Distinct calibration sentences in the style of the device's traffic, never an evaluation sentence.

    Args:
        count: how many sentences.
        seed: template and slot choices are drawn from ``random.Random(seed)``: same seed, same list.
    """
    return distinct_sentences(_sentence, count, seed)


def seed_noise(model: onnx.ModelProto, seed: float | None = NOISE_SEED) -> onnx.ModelProto:
    """Give every random node a fixed seed (in place), so a fresh session draws the same noise;
    ``seed=None`` removes the seeds again."""
    for node in model.graph.node:
        if node.op_type in ("RandomNormalLike", "RandomNormal", "RandomUniformLike", "RandomUniform"):
            kept = [a for a in node.attribute if a.name != "seed"]
            del node.attribute[:]
            node.attribute.extend(kept)
            if seed is not None:
                node.attribute.append(helper.make_attribute("seed", float(seed)))
    return model


def seeded_acoustic_session(
    acoustic_path: Path, seed: float = NOISE_SEED, threads: int | None = None
) -> onnxruntime.InferenceSession:
    """An ONNX Runtime CPU session of the acoustic model with seeded noise (``threads``: intra-op, None = ORT's default)."""
    model = seed_noise(onnx.load(str(acoustic_path)), seed)
    return ort_session(model.SerializeToString(), threads=threads or 0)


def latent(session: onnxruntime.InferenceSession, ids: Sequence[int], scales: Sequence[float]) -> np.ndarray:
    """Latent frames z [1, C, T] for one sentence's phoneme ids."""
    return np.asarray(session.run(["z"], acoustic_feeds(ids, scales))[0], dtype=np.float32)


@dataclass(frozen=True)
class CalibrationSet:
    """Model inputs for calibration: one entry per spoken piece (a sentence may split into several)."""

    sentences: tuple[str, ...]
    """The generated sentences, as written."""
    piece_sentence: tuple[int, ...]
    """For each piece, the index of its sentence."""
    ids: tuple[np.ndarray, ...]
    """Phoneme ids per piece (int64, 1-D)."""
    z: tuple[np.ndarray, ...]
    """Latent frames per piece (float32, [1, C, T]; float16-rounded once loaded from disk)."""

    def save(self, path: Path) -> None:
        """Write the arrays as an npz without pickled objects; z is stored as float16 (half the
        size; calibration ranges do not notice a 1e-3 relative rounding)."""
        id_offsets = np.cumsum([0] + [len(i) for i in self.ids])
        z_offsets = np.cumsum([0] + [z.shape[2] for z in self.z])
        with path.open("wb") as f:
            np.savez(
                f,
                sentences=np.array(self.sentences, dtype=str),
                piece_sentence=np.array(self.piece_sentence, dtype=np.int64),
                ids=np.concatenate(self.ids).astype(np.int64),
                id_offsets=id_offsets.astype(np.int64),
                z=np.concatenate([z[0] for z in self.z], axis=1).astype(np.float16),
                z_offsets=z_offsets.astype(np.int64),
            )

    @classmethod
    def load(cls, path: Path) -> "CalibrationSet":
        """Read a set written by ``save``."""
        with np.load(path, allow_pickle=False) as data:
            io, zo = data["id_offsets"], data["z_offsets"]
            ids, zs = data["ids"], data["z"]
            return cls(
                sentences=tuple(str(s) for s in data["sentences"]),
                piece_sentence=tuple(int(i) for i in data["piece_sentence"]),
                ids=tuple(ids[io[n] : io[n + 1]] for n in range(len(io) - 1)),
                z=tuple(zs[None, :, zo[n] : zo[n + 1]].astype(np.float32) for n in range(len(zo) - 1)),
            )

    def split(self, every: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """(calibration z, held-out z): every ``every``-th sentence is held out for sensitivity scoring."""
        calib: list[np.ndarray] = []
        held: list[np.ndarray] = []
        for z, s in zip(self.z, self.piece_sentence):
            (held if s % every == every - 1 else calib).append(z)
        return calib, held


def build_calibration_set(
    sentences: Sequence[str],
    acoustic_path: Path,
    phonemizer: Any,
    scales: Sequence[float],
    max_chars: int,
    say: Callable[[str], None],
) -> CalibrationSet:
    """Normalise and phonemise ``sentences`` as the device does, then run the FP32 acoustic model.

    Args:
        sentences: calibration text (see ``generate_sentences``).
        acoustic_path: the FP32 acoustic model.
        phonemizer: a ``jetvox.device.text.phonemes.Phonemizer`` for the voice.
        scales: noise_scale, length_scale, noise_w: the voice's defaults, so z looks like the runtime's.
        max_chars: the runtime's sentence length limit (``synthesis.max_sentence_chars``).
        say: progress callback.
    """
    session = seeded_acoustic_session(acoustic_path)
    piece_sentence: list[int] = []
    ids_out: list[np.ndarray] = []
    z_out: list[np.ndarray] = []
    step = max(1, len(sentences) // 8)
    for n, sentence in enumerate(sentences):
        for piece in prepare(sentence, max_chars):
            ids = phonemizer.sentence_ids(piece)
            if not ids:
                continue
            piece_sentence.append(n)
            ids_out.append(np.asarray(ids, dtype=np.int64))
            z_out.append(latent(session, ids, scales))
        if (n + 1) % step == 0 or n + 1 == len(sentences):
            say(f"calibration corpus {n + 1}/{len(sentences)}")
    if not z_out:
        raise RuntimeError("the calibration sentences produced no phoneme ids; is espeak-ng working?")
    frames = sum(z.shape[2] for z in z_out)
    log.info("calibration set: %d pieces, %d latent frames", len(z_out), frames)
    return CalibrationSet(tuple(sentences), tuple(piece_sentence), tuple(ids_out), tuple(z_out))
