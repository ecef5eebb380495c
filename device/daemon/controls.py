"""Settings changed at run time (speaker volume, mute) and what the device is doing, shared across threads."""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable, Optional

from jetvox.device import limits
from jetvox.device.storage import atomic_write_text

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class State:
    """A snapshot of the controls and the activity (the Home Assistant sensors' source)."""

    volume: float
    """Speaker gain (0 to 4; ``audio.volume`` until changed)."""
    muted: bool
    """The speaker is muted (alerts still play)."""
    speaking: bool = False
    """A message is being spoken."""
    queue_length: int = 0
    """Messages waiting."""
    first_audio_ms: Optional[float] = None
    """First-audio latency of the last message spoken."""

    def to_json(self) -> str:
        data = asdict(self)
        data["state"] = "speaking" if self.speaking else "idle"
        return json.dumps(data)


class Controls:
    """Volume and mute (persisted in the run directory across restarts) and the worker's activity.

    Listeners run on the thread that made the change and must not block.
    """

    def __init__(self, default_volume: float, path: Optional[Path] = None) -> None:
        """Load the persisted volume and mute, if any.

        Args:
            default_volume: ``audio.volume``, used until a volume is set.
            path: where the settings are kept (``<run_dir>/controls.json``); None keeps them in memory.
        """
        self._path = path
        self._lock = threading.Lock()
        self._listeners: list[Callable[[State], None]] = []
        self._state = State(volume=default_volume, muted=False)
        if path is not None and path.exists():
            try:
                saved = json.loads(path.read_text(encoding="utf-8"))
                volume = saved.get("volume", default_volume)
                if limits.VOLUME.problem(volume) is None and isinstance(saved.get("muted", False), bool):
                    self._state = State(volume=float(volume), muted=saved.get("muted", False))
                else:
                    log.warning("ignoring %s: unexpected values %s", path, limits.show(saved))
            except (OSError, ValueError, AttributeError) as exc:
                log.warning("ignoring %s: %s", path, exc)

    @property
    def state(self) -> State:
        with self._lock:
            return self._state

    def listen(self, listener: Callable[[State], None]) -> None:
        self._listeners.append(listener)

    def set_volume(self, volume: float) -> None:
        """Set the speaker volume (bounds as ``audio.volume``; ValueError naming them otherwise)."""
        problem = limits.VOLUME.problem(volume)
        if problem is not None:
            raise ValueError(f"volume: {problem}")
        self._change(volume=float(volume))

    def set_muted(self, muted: bool) -> None:
        self._change(muted=muted)

    def activity(self, speaking: Optional[bool] = None, queue_length: Optional[int] = None,
                 first_audio_ms: Optional[float] = None) -> None:
        """The worker reports what it does (None leaves a field as it is)."""
        changes = {k: v for k, v in (("speaking", speaking), ("queue_length", queue_length),
                                     ("first_audio_ms", first_audio_ms)) if v is not None}
        self._change(persist=False, **changes)

    def _change(self, persist: bool = True, **changes: object) -> None:
        with self._lock:
            new = replace(self._state, **changes)  # type: ignore[arg-type]
            if new == self._state:
                return
            self._state = new
            if persist and self._path is not None:
                self._save(new)
        for listener in self._listeners:
            listener(new)

    def _save(self, state: State) -> None:
        assert self._path is not None
        try:
            atomic_write_text(self._path, json.dumps({"volume": state.volume, "muted": state.muted}))
        except OSError as exc:
            log.warning("cannot keep the volume and mute in %s: %s", self._path, exc)
