"""One provisioned default voice per test process, shared by the test modules that need real models."""

from __future__ import annotations

import atexit
import shutil
import tempfile
import threading
from pathlib import Path

from device import config

_LOCK = threading.Lock()
_STATE: Path | None = None


def provisioned_state_dir() -> Path:
    """A state dir holding the provisioned default voice (provisioned on first use, ~10 s)."""
    global _STATE
    with _LOCK:
        if _STATE is None:
            from provisioning.pipeline import provision

            state = Path(tempfile.mkdtemp(prefix="jetvox-test-state-"))
            atexit.register(shutil.rmtree, state, True)
            provision(config.load(state_dir=str(state)), progress=lambda _msg: None)
            _STATE = state
        return _STATE


def voice_config(**overrides: object) -> config.Config:
    """Config pointing at the shared provisioned voice, with dotted-key overrides (``a__b``)."""
    return config.load(state_dir=str(provisioned_state_dir()), **overrides)
