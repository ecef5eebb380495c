"""A private mosquitto broker on a free local port (for the demo, the MQTT benchmark and the tests)."""

from __future__ import annotations

import getpass
import logging
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Optional

log = logging.getLogger(__name__)


class BrokerError(RuntimeError):
    """mosquitto is missing or did not start."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _user_line() -> list[str]:
    """Run as ourselves: as root, mosquitto would otherwise switch to the ``mosquitto`` user."""
    try:
        return [f"user {getpass.getuser()}"]
    except (KeyError, OSError):  # no passwd entry for this uid
        return []


class Mosquitto:
    """mosquitto listening on 127.0.0.1 only, with persistence in ``workdir``; restartable on the same port."""

    def __init__(self, workdir: Path, port: int | None = None, message_size_limit: int = 32 * 1024 * 1024,
                 options: tuple[str, ...] = ("allow_anonymous true",)) -> None:
        """Prepare (``start`` runs it).

        Args:
            workdir: configuration, persistence database and log go here.
            port: TCP port; None picks a free one (kept across restarts).
            message_size_limit: largest accepted payload in bytes.
            options: more mosquitto.conf lines for the listener (TLS files, password_file, ...).
        """
        exe = shutil.which("mosquitto") or next(
            (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if Path(p).exists()), None
        )
        if exe is None:
            raise BrokerError("mosquitto is not installed (apt-get install mosquitto)")
        self.exe = exe
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.log_path = self.workdir / "mosquitto.log"
        self.conf_path = self.workdir / "mosquitto.conf"
        self.conf_path.write_text(
            "\n".join(
                [
                    f"listener {self.port} 127.0.0.1",
                    *options,
                    "set_tcp_nodelay true",  # as README advises: Nagle held each audio chunk ~40 ms
                    "persistence true",
                    f"persistence_location {self.workdir}/",
                    "autosave_interval 1",
                    f"message_size_limit {message_size_limit}",
                    "max_queued_messages 100000",
                    f"log_dest file {self.log_path}",
                    "log_type error",
                    "log_type warning",
                    "log_type notice",
                    "log_type information",
                    *_user_line(),
                    "",
                ]
            )
        )
        self._proc: Optional[subprocess.Popen[bytes]] = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = 10.0) -> "Mosquitto":
        """Start and wait until the port accepts connections."""
        if self.running:
            return self
        self._proc = subprocess.Popen(
            [self.exe, "-c", str(self.conf_path)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                err = self._proc.stderr.read().decode(errors="replace") if self._proc.stderr else ""
                raise BrokerError(f"mosquitto exited with {self._proc.returncode}: {err.strip()} {self.tail()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    log.debug("mosquitto up on port %d", self.port)
                    return self
            except OSError:
                time.sleep(0.05)
        self.kill()
        raise BrokerError(f"mosquitto did not listen on port {self.port} within {timeout:.0f} s: {self.tail()}")

    def stop(self, timeout: float = 10.0) -> None:
        """Stop gracefully (SIGTERM: the persistence database is saved)."""
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(timeout)
        self._close()

    def kill(self) -> None:
        """Stop at once (SIGKILL)."""
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait(10)
        self._close()

    def _close(self) -> None:
        if self._proc is not None and self._proc.stderr is not None:
            self._proc.stderr.close()
        self._proc = None

    def restart(self, down_s: float = 0.0) -> None:
        """Stop gracefully, stay down ``down_s`` seconds, start again on the same port."""
        self.stop()
        time.sleep(down_s)
        self.start()

    def tail(self, lines: int = 20) -> str:
        """The end of the broker's log."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def __enter__(self) -> "Mosquitto":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
