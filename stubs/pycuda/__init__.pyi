"""Type stubs for the parts of PyCUDA that jetvox uses (written from PyCUDA's documentation)."""

VERSION: tuple[int, ...]
VERSION_TEXT: str
