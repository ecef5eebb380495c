"""Files the device keeps: atomic writes (temporary file, fsync, os.replace) and YAML files read with clear errors."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Callable, Iterator, TypeVar

import yaml

T = TypeVar("T")


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success move it into place with os.replace.

    If the body raises (or the process is killed), ``path`` is untouched and the temporary
    file is removed (or left as ``.tmp-*``, which ``clean_partials`` deletes).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".tmp-{path.name}.", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with tmp_path.open("rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


def atomic_write_text(path: Path, text: str) -> None:
    """Write text atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def read_yaml(path: Path, parse: Callable[[str], T], error: Callable[[str], Exception], what: str) -> T:
    """Read ``path`` and parse it (``yaml.safe_load``, or ``yaml.compose`` for line numbers).

    Args:
        path: the file.
        parse: the YAML parser to apply to its text.
        error: the exception to raise, built from a message naming ``what`` and the file.
        what: e.g. ``config file`` or ``the lexicon``.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise error(f"cannot read {what} {path}: {exc.strerror}") from None
    try:
        return parse(text)
    except yaml.YAMLError as exc:
        raise error(f"{what} {path} is not valid YAML: {exc}") from None
