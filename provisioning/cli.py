"""`jetvox provision`: the provisioning subcommand, added to the device's CLI through an entry point."""

from __future__ import annotations

import argparse

from jetvox.device.cli import add_config_options, load_config


def _provision(args: argparse.Namespace) -> int:
    from jetvox.provisioning.pipeline import provision  # only when it runs: every `jetvox` command loads this module

    result = provision(load_config(args))
    print(f"voice ready in {result.directory}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``provision`` to the `jetvox` parser (called through the ``jetvox.commands`` entry point)."""
    sp = sub.add_parser("provision", help="prepare the configured voice for this device (idempotent)")
    add_config_options(sp)
    sp.set_defaults(handler=_provision)
