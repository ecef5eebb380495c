"""Logging set-up: journald (systemd-python's JournalHandler) under systemd, stderr otherwise."""

from __future__ import annotations

import logging
import os
import sys
from typing import Mapping

from jetvox.device.config import LoggingConfig

log = logging.getLogger(__name__)


def under_systemd(env: Mapping[str, str] | None = None) -> bool:
    """True when started by systemd (it sets ``INVOCATION_ID`` and, for journal output, ``JOURNAL_STREAM``)."""
    env = os.environ if env is None else env
    return bool(env.get("JOURNAL_STREAM") or env.get("INVOCATION_ID"))


def setup_logging(cfg: LoggingConfig, verbose: bool = False, env: Mapping[str, str] | None = None) -> logging.Handler:
    """Replace the root logger's handlers with one for journald or stderr; returns the handler.

    Args:
        cfg: level and whether journald may be used.
        verbose: force DEBUG.
        env: environment to inspect (default: the process's).
    """
    handler: logging.Handler | None = None
    if cfg.journald and under_systemd(env):
        try:
            from systemd.journal import JournalHandler

            handler = JournalHandler(SYSLOG_IDENTIFIER="jetvox")
            handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
        except ImportError:  # systemd-python is not installed: stderr still ends up in the journal
            handler = None
    if handler is None:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else getattr(logging, cfg.level))
    if not verbose:
        logging.getLogger("jetvox.device.daemon.intake.paho").setLevel(max(root.level, logging.INFO))
    log.debug("logging to %s", type(handler).__name__)
    return handler
