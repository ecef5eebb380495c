"""The generated training corpus: IoT-style templates and hand-written prose, disjoint from every evaluation set."""

from __future__ import annotations

import logging
import random
from typing import Iterable

from jetvox.provisioning.corpus import clock, distinct_sentences

log = logging.getLogger(__name__)

DEFAULT_SIZE = 4000
SEED = 1234

ROOMS = (
    "kitchen", "living room", "bedroom", "guest room", "nursery", "attic", "basement", "cellar", "garage",
    "hallway", "laundry room", "study", "office", "workshop", "pantry", "porch", "patio", "balcony", "garden",
    "greenhouse", "shed", "dining room", "staircase", "loft", "utility room", "sun room", "playroom", "library",
    "wine cellar", "boat house", "barn", "stable", "warehouse", "loading bay", "server room", "lobby",
    "reception", "meeting room", "canteen", "boiler room", "roof terrace", "driveway", "front yard",
)
DEVICES = (
    "dishwasher", "dryer", "oven", "kettle", "coffee machine", "robot vacuum", "heat pump", "air purifier",
    "dehumidifier", "water heater", "ceiling fan", "sprinkler", "pool pump", "electric car charger",
    "printer", "freezer", "fridge", "microwave", "bread maker", "irrigation valve", "ventilation unit",
    "doorbell camera", "alarm panel", "thermostat", "garage opener", "window blind", "skylight",
    "solar inverter", "battery bank", "compressor", "forklift charger", "pressure pump", "fountain",
)
QUANTITIES = (
    ("temperature", ("degrees", "degrees Celsius", "degrees Fahrenheit")),
    ("humidity", ("percent",)),
    ("pressure", ("bar", "hectopascals", "kilopascals")),
    ("power draw", ("watts", "kilowatts")),
    ("noise level", ("decibels",)),
    ("light level", ("lux",)),
    ("water flow", ("litres per minute", "gallons per minute")),
    ("fan speed", ("revolutions per minute",)),
    ("wind speed", ("metres per second", "miles per hour", "knots")),
    ("battery charge", ("percent",)),
    ("carbon monoxide level", ("parts per million",)),
    ("radon level", ("becquerels per cubic metre",)),
    ("tank level", ("litres", "percent")),
)
STATES = (
    "is open", "is closed", "was left open", "has been locked", "has been unlocked", "is switched off",
    "has started", "has stopped", "is paused", "is offline again", "is back online", "needs attention",
    "reports an error", "is running quietly", "has finished", "is warming up", "is cooling down",
    "is charging", "is fully charged", "lost its connection", "needs a new filter", "is almost empty",
)
NAMES = (
    "Anna", "Ben", "Clara", "David", "Ella", "Felix", "Grace", "Henry", "Iris", "Jack", "Kate", "Leo",
    "Maya", "Noah", "Olivia", "Peter", "Quinn", "Rosa", "Sam", "Tara", "Uma", "Victor", "Wendy", "Yusuf", "Zoe",
)
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
MONTHS = (
    "January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
    "November", "December",
)
WEATHER = (
    "light rain", "heavy rain", "thunderstorms", "snow showers", "freezing fog", "strong gusts", "clear skies",
    "scattered clouds", "hail", "drizzle", "a heat wave", "sleet", "high pollen counts", "morning frost",
)

# Public-domain style prose written for this corpus: varied rhythm, questions, long and short clauses.
PROSE = (
    "The old lighthouse keeper climbed the winding stairs every evening before sunset.",
    "She folded the letter twice and hid it beneath a loose floorboard.",
    "A flock of starlings turned above the harbour like smoke in the wind.",
    "Nobody remembered who had planted the crooked apple tree behind the mill.",
    "The train rattled over the bridge while the passengers dozed in the warm carriage.",
    "Would you mind closing the shutters before the storm arrives?",
    "He measured the flour carefully, then forgot to add the sugar.",
    "Across the valley, church bells rang out over the quiet fields.",
    "The children built a raft from driftwood and barrels.",
    "Every map in the library showed a different coastline.",
    "The baker whistled as he pulled golden loaves from the oven.",
    "A thin layer of frost covered the windscreen of every car on the street.",
    "They walked along the canal until the lamps came on one by one.",
    "Is this the road that leads to the northern pass?",
    "The violinist paused, tuned a single string, and began again.",
    "Moss had crept over the stone wall and softened its edges.",
    "Our neighbours keep bees at the bottom of their orchard.",
    "The river rose quickly after three days of steady rain.",
    "A fox slipped through the hedge and vanished into the meadow.",
    "The clockmaker squinted at the tiny gears through a brass lens.",
    "Pack a warm jumper, because the evenings turn chilly by the sea.",
    "The museum guard yawned as the last visitors drifted towards the exit.",
    "Thick fog rolled in from the marsh and swallowed the village.",
    "Could you read the instructions aloud while I hold the ladder?",
    "The gardener knelt to examine the first shoots of spring.",
    "Lanterns swayed from the masts of the fishing boats.",
    "The puppy chased its own shadow across the kitchen tiles.",
    "Smoke curled lazily from the chimney of the farmhouse.",
    "The judge adjusted her spectacles and called for silence.",
    "A sudden gust scattered the papers across the courtyard.",
    "The miners sang softly as they walked home through the snow.",
    "Fresh paint gleamed on the doors of the little chapel.",
    "Why does the kettle always boil just as the phone rings?",
    "The sailors hauled the nets aboard, heavy with silver fish.",
    "An owl hooted somewhere in the dark pine wood.",
    "The potter shaped the wet clay with patient, steady hands.",
    "Lightning flickered over the hills long before the thunder came.",
    "The shop on the corner sells buttons, thread and brightly coloured ribbon.",
    "Grandmother kept the recipe in a tin box above the stove.",
    "The tide crept silently over the sandbanks at dusk.",
    "A narrow path wound between the vineyards towards the ruined castle.",
    "The orchestra rose to its feet as the conductor entered.",
    "Please leave your muddy boots by the back door.",
    "The astronomer waited all night for the clouds to part.",
    "Swallows nested under the eaves of the railway station.",
    "The blacksmith plunged the glowing horseshoe into a bucket of water.",
    "We found a faded photograph tucked inside the atlas.",
    "The wheat bowed in long waves under the summer breeze.",
    "His umbrella turned inside out at the first corner.",
    "The ferry sounded its horn twice and drew away from the pier.",
    "Quietly, the cat settled on the warm windowsill and closed its eyes.",
    "The surveyor marked the boundary with a row of white stakes.",
    "Rows of jars lined the shelves, each labelled in neat handwriting.",
    "The village square filled with music on the first evening of the fair.",
    "Snow muffled every sound except the creak of the gate.",
    "The pilot announced that the descent would begin shortly.",
    "Somebody had chalked a hopscotch grid on the pavement.",
    "The weaver threaded blue and yellow wool through the loom.",
    "Fireflies blinked above the pond on the warmest nights of June.",
    "The professor lost his notes but gave the lecture anyway.",
)
PROSE_SUBJECTS = (
    "The shepherd", "A young sailor", "The mayor", "My cousin", "The doctor", "An old fisherman", "The teacher",
    "Our driver", "The carpenter", "A stranger", "The librarian", "The farmer's daughter", "The engineer",
    "A tired traveller", "The painter", "The captain", "Her brother", "The night nurse", "The postman",
)
PROSE_VERBS = (
    "walked slowly towards", "looked across", "carried a basket to", "waited patiently beside",
    "hurried past", "painted a picture of", "told a story about", "wandered around", "returned quietly to",
    "searched carefully through", "sang a song about", "dreamed about", "sketched a map of", "cleaned",
)
PROSE_OBJECTS = (
    "the harbour wall", "the frozen lake", "the crowded market", "the empty station", "the little bakery",
    "the stone bridge", "the old orchard", "the windmill on the hill", "the narrow lane", "the quiet chapel",
    "the busy workshop", "the garden gate", "the sunlit meadow", "the ruined abbey", "the fishing village",
)
PROSE_ENDINGS = (
    "before dawn", "in the pouring rain", "after supper", "without a word", "as the bells rang",
    "under a pale moon", "on a windy afternoon", "while the kettle boiled", "long after midnight",
    "with a heavy heart", "at the end of summer", "just as the shops were closing", "",
)


def _number(rng: random.Random) -> str:
    kind = rng.random()
    if kind < 0.35:
        return str(rng.randint(0, 120))
    if kind < 0.6:
        return f"{rng.randint(0, 99)}.{rng.randint(0, 9)}"
    if kind < 0.8:
        return f"{rng.randint(1, 60) * 50:,}"
    return str(rng.randint(100, 2500))


def _template(rng: random.Random) -> str:
    room, room2 = rng.choice(ROOMS), rng.choice(ROOMS)
    device = rng.choice(DEVICES)
    qty, units = rng.choice(QUANTITIES)
    unit = rng.choice(units)
    n = _number(rng)
    name = rng.choice(NAMES)
    choices = (
        lambda: f"The {qty} in the {room} is {n} {unit}.",
        lambda: f"{room.capitalize()} {qty} reads {n} {unit}.",
        lambda: f"Alert: the {device} in the {room} {rng.choice(STATES)}.",
        lambda: f"The {room} window {rng.choice(STATES)}.",
        lambda: f"Heads up, {name}: the {device} {rng.choice(STATES)}.",
        lambda: f"At {clock(rng)} the {device} {rng.choice(STATES)}.",
        lambda: f"{name} arrived home at {clock(rng)}.",
        lambda: f"The {device} will be done in {rng.randint(2, 90)} minutes.",
        lambda: f"Forecast for {rng.choice(WEEKDAYS)}: {rng.choice(WEATHER)} and a high of {rng.randint(-5, 38)} degrees.",
        lambda: f"Expect {rng.choice(WEATHER)} around {clock(rng)}.",
        lambda: f"The {qty} sensor in the {room} has not reported for {rng.randint(2, 59)} minutes.",
        lambda: f"Someone rang the doorbell at {clock(rng)} while you were in the {room}.",
        lambda: f"Your appointment with {name} is on {rng.choice(WEEKDAYS)}, {rng.choice(MONTHS)} {rng.randint(1, 28)}.",
        lambda: f"Today the {device} used {n} kilowatt hours.",
        lambda: f"Is the {device} in the {room} supposed to be running?",
        lambda: f"The lights in the {room} and the {room2} are still on.",
        lambda: f"{name} left the {room} door unlocked.",
        lambda: f"Reminder for {name}: water the plants in the {room}.",
        lambda: f"The {qty} outside is {n} {unit}, and it feels {rng.choice(('mild', 'cold', 'humid', 'dry', 'stuffy', 'pleasant'))}.",
        lambda: f"Caution! The {qty} in the {room} climbed above {n} {unit}.",
        lambda: f"Sensor {rng.randint(1, 64)} in the {room} needs a new battery.",
        lambda: f"Good evening, {name}. The {device} {rng.choice(STATES)}.",
        lambda: f"The {device} has run {rng.randint(2, 400)} cycles since {rng.choice(MONTHS)}.",
        lambda: f"Timer finished: {rng.randint(1, 45)} minutes for the {device}.",
    )
    return rng.choice(choices)()


def _prose(rng: random.Random) -> str:
    ending = rng.choice(PROSE_ENDINGS)
    tail = f" {ending}" if ending else ""
    return f"{rng.choice(PROSE_SUBJECTS)} {rng.choice(PROSE_VERBS)} {rng.choice(PROSE_OBJECTS)}{tail}."


def _draw(rng: random.Random) -> str:
    return _prose(rng) if rng.random() < 0.3 else _template(rng)


def generate(size: int = DEFAULT_SIZE, seed: int = SEED, exclude: Iterable[str] = ()) -> list[str]:
    """A deterministic list of ``size`` distinct training sentences, disjoint from the evaluation sets.

    Args:
        size: number of sentences.
        seed: random seed (the same seed gives the same corpus).
        exclude: further sentences (e.g. another evaluation set) the corpus must not contain.
    """
    out = distinct_sentences(_draw, size, seed, first=PROSE, exclude=exclude)
    log.info("generated %d training sentences (seed %d)", len(out), seed)
    return out
