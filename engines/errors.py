"""The one base error: everything jetvox reports to a user derives from JetvoxError (it sits in the lowest layer so every layer can use it)."""

from __future__ import annotations


class JetvoxError(Exception):
    """An error the user can act on; the CLI prints it as one line and exits with ``exit_code``."""

    exit_code = 1
    """Process exit status the CLI uses for this kind of error."""
