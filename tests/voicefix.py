"""One state dir per test process with the real voices provisioned, shared by the test modules that need them."""

from __future__ import annotations

import atexit
import shutil
import tempfile
import threading
from pathlib import Path

from jetvox.device import config
from jetvox.device.voice.sources import PACKAGED_VOICE

TEACHER = PACKAGED_VOICE
"""The packaged Piper voice: split, quantised and compared with piper-tts by most tests."""
_LOCK = threading.Lock()
_STATE: Path | None = None


def provisioned_state_dir() -> Path:
    """A state dir holding the provisioned teacher and default (``joe-fast``) voices (on first use, ~15 s)."""
    global _STATE
    with _LOCK:
        if _STATE is None:
            from jetvox.provisioning.pipeline import provision

            state = Path(tempfile.mkdtemp(prefix="jetvox-test-state-"))
            atexit.register(shutil.rmtree, state, True)
            provision(config.load(state_dir=str(state), voice__name=TEACHER), progress=lambda _msg: None)
            provision(config.load(state_dir=str(state)), progress=lambda _msg: None)  # the default voice
            _STATE = state
        return _STATE


def voice_config(**overrides: object) -> config.Config:
    """Config for the shared provisioned teacher, with dotted-key overrides (``a__b``; ``voice__name`` too)."""
    return config.load(state_dir=str(provisioned_state_dir()), **{"voice__name": TEACHER, **overrides})
