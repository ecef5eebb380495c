"""systemd's sd_notify protocol (through systemd-python): READY, STATUS, STOPPING and watchdog pings."""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Optional

try:
    import systemd.daemon as sd_daemon
except ImportError:  # systemd-python is Linux-only: elsewhere nothing to notify
    sd_daemon = None

log = logging.getLogger(__name__)


class Notifier:
    """Talks to the service manager through systemd-python's ``sd_notify``; a no-op when not started by
    systemd with Type=notify (no ``$NOTIFY_SOCKET``) or where systemd-python is not installed."""

    def __init__(self) -> None:
        """Read ``NOTIFY_SOCKET``, ``WATCHDOG_USEC`` and ``WATCHDOG_PID`` from the process's environment."""
        env = os.environ
        self._enabled = bool(env.get("NOTIFY_SOCKET")) and sd_daemon is not None
        self._lock = threading.Lock()
        self._last_ping = 0.0
        self.watchdog_s: Optional[float] = None
        """The watchdog timeout in seconds, or None when there is no watchdog."""
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        if usec.isdigit() and int(usec) > 0 and (not pid or pid == str(os.getpid())):
            self.watchdog_s = int(usec) / 1e6

    @property
    def enabled(self) -> bool:
        return self._enabled

    @property
    def ping_interval_s(self) -> float:
        """How often the synthesis worker must ping: half the watchdog timeout (5 s without one)."""
        return self.watchdog_s / 2 if self.watchdog_s else 5.0

    def send(self, **fields: str) -> bool:
        """Send ``KEY=value`` lines (keyword names are upper-cased); False if not under systemd or on error."""
        if not self._enabled or sd_daemon is None:
            return False
        msg = "\n".join(f"{k.upper()}={v}" for k, v in fields.items())
        with self._lock:
            sent = bool(sd_daemon.notify(msg))
        if not sent:
            log.debug("sd_notify failed for %r", msg)
        return sent

    def ready(self, status: str = "") -> None:
        """The daemon is ready (models loaded, broker connected)."""
        fields = {"ready": "1"}
        if status:
            fields["status"] = status
        self.send(**fields)

    def status(self, text: str) -> None:
        self.send(status=text)

    def stopping(self, status: str = "stopping") -> None:
        self.send(stopping="1", status=status)

    def watchdog(self) -> None:
        """Ping the watchdog, at most four times per ping interval; call it from the synthesis loop only."""
        if self.watchdog_s is None:
            return
        now = time.monotonic()
        if now - self._last_ping < self.ping_interval_s / 4:
            return
        self._last_ping = now
        self.send(watchdog="1")

    def close(self) -> None:
        self._enabled = False
