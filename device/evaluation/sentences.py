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


# A second held-out set for the student gate (#5): 26 sentences moved the pooled WER by as much as the
# 0.03 margin from one teacher noise draw to the next, so the students are scored on these 100 as well
# (IoT traffic of the same kind, plus plain narrative prose). Hand-written, and like EVAL_SENTENCES never
# used for calibration or training.
STUDENT_EVAL_EXTRA: tuple[str, ...] = (
    'The bedroom thermostat is set to 19 °C for the night.',
    'Attention: the basement sump pump has started.',
    'The refrigerator door has been open for three minutes.',
    'Outdoor humidity is 64% and rising.',
    'The car in the driveway is charged to 80%.',
    'Carbon monoxide detected in the utility room, open the windows.',
    'The baby monitor picked up crying at 2:10 AM.',
    'The pool water is 26 degrees.',
    'Your coffee is ready.',
    'The vacuum cleaner is stuck under the sofa.',
    'Gate number two was opened by the delivery driver.',
    'The attic fan switched on because the attic reached 38 °C.',
    'Tomorrow will be cloudy with a chance of snow in the evening.',
    'The laundry dryer needs its lint filter cleaned.',
    'Packing line four is running at 120 units per minute.',
    'The compressor in hall C is overheating.',
    'Oil pressure on generator one is low.',
    'The forklift battery must be charged before the next shift.',
    'Temperature in the cold store is back to normal.',
    'The second floor printer is out of paper.',
    'Shift change in ten minutes.',
    'Tank three is 92% full, stop filling.',
    'The emergency exit on the east side is blocked.',
    'Vibration on motor five is higher than usual.',
    'The loading dock door closed at 5:20 PM.',
    'Quality check failed on batch 4512.',
    'Visitors are waiting at the main entrance.',
    'The ventilation in the paint shop is off.',
    'Please wear ear protection in the press area.',
    'Line two will restart after maintenance at noon.',
    'It is going to rain in about twenty minutes.',
    'The sun sets at 6:12 PM today.',
    'Pollen levels are high this afternoon.',
    'The river level near the bridge is rising.',
    'There is frost on the roads this morning, drive carefully.',
    'A thunderstorm warning is in effect until midnight.',
    'The wind will calm down overnight.',
    'UV index is 7, use sunscreen.',
    'Air quality is good today.',
    'The first snow of the year is expected on Sunday.',
    'Dinner is in the oven and will be ready at seven.',
    'The kids came home from school at 3:35 PM.',
    'Do not forget the dentist appointment on Thursday.',
    'The dog has not been fed since this morning.',
    'Your train leaves in forty minutes.',
    'Someone is at the back door.',
    'The plants in the living room need water.',
    'The mail has arrived.',
    'Grandma called while you were out.',
    'The guest room heater is still running.',
    'The old lighthouse stood on a rock at the edge of the sea.',
    'She opened the letter and read it twice before she smiled.',
    'A small boat drifted slowly toward the sandy shore.',
    'The children played in the park until the street lamps came on.',
    'He carried a heavy bag of apples up the hill.',
    'The library was quiet except for the ticking clock.',
    'Every morning the baker lit his ovens before sunrise.',
    'The train was late, so we waited on the cold platform.',
    'They planted a row of young trees along the fence.',
    'The farmer counted his sheep as they passed through the gate.',
    'A gentle breeze moved the curtains in the open window.',
    'The captain gave the order to raise the sails.',
    'We found an old map hidden inside the book.',
    'The kettle began to whistle on the stove.',
    'Snow covered the fields as far as the eye could see.',
    'The doctor listened carefully to her heartbeat.',
    'My brother fixed the broken chair with a few nails.',
    'The city lights shone brightly across the harbor.',
    'A flock of birds flew south over the valley.',
    'The teacher wrote the answer on the blackboard.',
    'Please speak slowly and clearly into the microphone.',
    'The garden looked beautiful after the summer rain.',
    'He closed the door quietly so he would not wake anyone.',
    'The museum opens at nine and closes at five.',
    'The bridge was built more than a hundred years ago.',
    'Our neighbors painted their house a bright shade of blue.',
    'The market was crowded with people buying fresh bread.',
    "She kept her grandmother's ring in a wooden box.",
    'The soldiers marched along the dusty road.',
    'At the end of the day the workers went home tired but happy.',
    'Elevator two is out of service.',
    'The water heater will turn off at 10 PM.',
    'The wine cellar is at 13 °C and 70% humidity.',
    'The backup battery holds 6.2 kWh.',
    'Network traffic is unusually high on the office router.',
    'The cat flap was used four times this evening.',
    'The window in the nursery is open and it is cold outside.',
    'Light rain is falling at the airport.',
    'The chimney sweep is coming on Friday at 10 AM.',
    'Fuel in the diesel tank is down to 35%.',
    'The robot arm on cell seven has stopped with an error.',
    'Cooling water flow is below the minimum.',
    'The night watchman finished his first round.',
    'All doors are locked and the alarm is armed.',
    'The greenhouse vents opened because it is warm.',
    'The kitchen smoke detector was tested and works.',
    'Wash cycle complete, please empty the dishwasher.',
    'Parcel lockers at the entrance are full.',
    'The north gate camera lost its signal.',
    'It is quarter past eight and time to leave for work.',
)

HELD_OUT: tuple[str, ...] = EVAL_SENTENCES + STUDENT_EVAL_EXTRA
"""Every evaluation sentence: generated corpora must contain none of them."""


def normalised_key(sentence: str) -> str:
    """Case- and punctuation-insensitive form used to compare sentences."""
    return " ".join("".join(c.lower() if c.isalnum() else " " for c in sentence).split())


def check_disjoint(generated: Iterable[str], *others: Iterable[str]) -> None:
    """Raise ValueError if any generated sentence equals an evaluation sentence (or one of ``others``)."""
    banned = {normalised_key(s) for s in HELD_OUT}
    for extra in others:
        banned.update(normalised_key(s) for s in extra)
    clashes = sorted({s for s in generated if normalised_key(s) in banned})
    if clashes:
        raise ValueError(f"{len(clashes)} generated sentence(s) overlap an evaluation set, e.g. {clashes[0]!r}")
