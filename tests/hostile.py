"""The committed corpus of hostile payloads: each once sent a daemon into a traceback, a flood or silence."""

from __future__ import annotations

HUGE = "9" * 400
"""An integer of hundreds of digits: float() overflows."""
HUGER = "7" * 5000
"""Past Python's 4,300-digit limit for int parsing."""

SAY_INVALID: list[bytes] = [
    b'{"text": "' + b"[" * 10 + b'", "x": ' + b"[" * 30000 + b"]" * 30000 + b"}",
    b'{"text": "hi", "volume": ' + HUGE.encode() + b"}",
    b'{"text": "hi", "ttl_s": ' + HUGE.encode() + b"}",
    b'{"text": "hi", "length_scale": -' + HUGE.encode() + b"}",
    b'{"text": "hi", "volume": ' + HUGER.encode() + b"}",
    b'{"text": "hi", "volume": NaN}',
    b'{"text": "hi", "volume": Infinity}',
    b'{"text": "hi", "length_scale": 0}',
    b'{"text": "hi", "length_scale": -1}',
    b'{"text": "hi", "id": ' + HUGE.encode() + b"}",
    b'{"text": "hi", "id": "' + b"x" * 5000 + b'"}',
    b'{"text": "hi", "id": "a/b"}',
    b'{"text": "hi", "priority": {"a": [1, 2, {"b": null}]}}',
    b'{"text": ' + HUGER.encode() + b"}",
    b'{"text": "hi", "output": ' + b'"x' * 3000 + b'"}',
    b"\xed\xa0\x80",  # a UTF-16 surrogate encoded as UTF-8
    b"{}",
]
"""Payloads for ``<prefix>/say`` the parser rejects: an ``error`` status, one log line, no traceback."""

SAY_ODD: list[bytes] = [
    b"[" * 20000,  # text, not JSON (only an object is): nothing speakable
    b"\x00\x01\x02",
    b"null",
    b"{" + b'"a":1,' * 5000 + b'"text": "hi"}',  # 5,000 unknown fields: ignored, "hi" is spoken
]
"""Payloads that parse: each must still be answered (``error`` at synthesis, or spoken), without a traceback."""

SAY = SAY_INVALID + SAY_ODD

SENSOR: list[bytes] = [
    HUGE.encode(),
    HUGER.encode(),
    b'{"value": ' + HUGE.encode() + b"}",
    b'{"value": ' + HUGER.encode() + b"}",
    b"[" * 20000,
    b'{"value": "' + b"1" * 5000 + b'"}',
    b"NaN",
    b'{"value": {"nested": true}}',
]
"""Readings for a sensor-rule topic: ignored or spoken, never a traceback."""
