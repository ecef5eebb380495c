"""systemd's sd_notify protocol: READY, STATUS, STOPPING and watchdog pings over $NOTIFY_SOCKET."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from typing import Mapping, Optional

log = logging.getLogger(__name__)


class Notifier:
    """Talks to the service manager; every method is a no-op when not started by systemd with Type=notify.

    The protocol is one datagram of ``KEY=VALUE`` lines to the unix socket named in ``$NOTIFY_SOCKET``
    (a leading ``@`` means the abstract namespace), as sd_notify(3) documents.
    """

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        """Read ``NOTIFY_SOCKET``, ``WATCHDOG_USEC`` and ``WATCHDOG_PID`` from ``env`` (default: the process's).

        Args:
            env: environment to read; tests pass their own.
        """
        env = os.environ if env is None else env
        self._address: Optional[str] = None
        self._sock: Optional[socket.socket] = None
        self._lock = threading.Lock()
        self._last_ping = 0.0
        path = env.get("NOTIFY_SOCKET", "")
        if path and (path.startswith("/") or path.startswith("@")):
            self._address = "\0" + path[1:] if path.startswith("@") else path
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self.watchdog_s: Optional[float] = None
        """The watchdog timeout in seconds, or None when there is no watchdog."""
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        if usec.isdigit() and int(usec) > 0 and (not pid or pid == str(os.getpid())):
            self.watchdog_s = int(usec) / 1e6

    @property
    def enabled(self) -> bool:
        return self._sock is not None

    @property
    def ping_interval_s(self) -> float:
        """How often the synthesis worker must ping: half the watchdog timeout (5 s without one)."""
        return self.watchdog_s / 2 if self.watchdog_s else 5.0

    def send(self, **fields: str) -> bool:
        """Send ``KEY=value`` lines (keyword names are upper-cased); False if not under systemd or on error."""
        if self._sock is None or self._address is None:
            return False
        msg = "\n".join(f"{k.upper()}={v}" for k, v in fields.items()).encode("utf-8")
        try:
            with self._lock:
                self._sock.sendto(msg, self._address)
        except OSError as exc:
            log.debug("sd_notify failed: %s", exc)
            return False
        return True

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
        if self._sock is not None:
            self._sock.close()
            self._sock = None
