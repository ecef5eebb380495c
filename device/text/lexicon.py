"""The pronunciation lexicon: words or patterns respelled, or given IPA, before the text is phonemised."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import yaml

from jetvox.device.storage import read_yaml
from jetvox.engines.errors import JetvoxError

log = logging.getLogger(__name__)

_ENTRY_KEYS = {"say", "ipa", "case_sensitive"}


class LexiconError(JetvoxError, ValueError):
    """The lexicon file is invalid; the message names the file and the line."""

    exit_code = 2


@dataclass(frozen=True)
class Entry:
    """One rule: what to find and how to say it."""

    pattern: re.Pattern[str]
    """Compiled whole-word (or regular-expression) matcher."""
    replacement: str
    """A ``re.sub`` template: a respelling, or ``[[ ipa ]]`` (spoken as written by the inline-phoneme path);
    a pattern's may refer to its groups (``\\1``)."""
    line: int
    """Line of the entry in the file (1-based), for messages."""


@dataclass(frozen=True)
class Lexicon:
    """Ordered rules; the first that matches at a position wins."""

    entries: tuple[Entry, ...] = ()
    """The rules, words before patterns, in file order."""
    source: Optional[Path] = None
    """The file it came from."""

    def apply(self, text: str) -> str:
        """``text`` with every match replaced (whole words; case-insensitive unless the entry says otherwise)."""
        for entry in self.entries:
            text = entry.pattern.sub(entry.replacement, text)
        return text

    @classmethod
    def load(cls, path: Path) -> "Lexicon":
        """Read and check a lexicon file; LexiconError names the line of the first problem."""
        root = read_yaml(Path(path), yaml.compose, LexiconError, "the lexicon")
        if root is None:
            return cls((), Path(path))
        if not isinstance(root, yaml.MappingNode):
            raise LexiconError(f"{path}:{root.start_mark.line + 1}: expected a mapping with 'words' and/or "
                               "'patterns'")
        entries: list[Entry] = []
        for key_node, value_node in root.value:
            section = key_node.value
            if section not in ("words", "patterns"):
                raise LexiconError(f"{path}:{key_node.start_mark.line + 1}: unknown section {section!r}; "
                                   "expected 'words' or 'patterns'")
            if not isinstance(value_node, yaml.MappingNode):
                raise LexiconError(f"{path}:{value_node.start_mark.line + 1}: {section}: expected a mapping")
            for k, v in value_node.value:
                entries.append(_entry(path, section, k, v))
        log.info("lexicon %s: %d entries", path, len(entries))
        return cls(tuple(entries), Path(path))


def _entry(path: Path, section: str, key: yaml.Node, value: yaml.Node) -> Entry:
    line = key.start_mark.line + 1
    where = f"{path}:{line}"
    if not isinstance(key, yaml.ScalarNode) or not str(key.value).strip():
        raise LexiconError(f"{where}: expected a word or pattern as the key")
    data: Any = yaml.safe_load(yaml.serialize(value)) if not isinstance(value, yaml.ScalarNode) else value.value
    if isinstance(data, str):
        data = {"say": data}
    if not isinstance(data, dict):
        raise LexiconError(f"{where}: {key.value}: expected a respelling or {{say: …}} / {{ipa: …}}")
    unknown = sorted(set(data) - _ENTRY_KEYS)
    if unknown:
        raise LexiconError(f"{where}: {key.value}: unknown key {unknown[0]!r}; expected say, ipa, case_sensitive")
    if ("say" in data) == ("ipa" in data):
        raise LexiconError(f"{where}: {key.value}: give exactly one of say or ipa")
    spoken = data.get("say", data.get("ipa"))
    if not isinstance(spoken, str) or not spoken.strip() or "[[" in spoken or "]]" in spoken:
        raise LexiconError(f"{where}: {key.value}: expected a non-empty string without [[ ]], got {spoken!r}")
    case_sensitive = data.get("case_sensitive", False)
    if not isinstance(case_sensitive, bool):
        raise LexiconError(f"{where}: {key.value}: case_sensitive: expected true or false")
    flags = 0 if case_sensitive else re.IGNORECASE
    source = str(key.value)
    if section == "words":
        regex = r"(?<!\w)" + re.escape(source) + r"(?!\w)"
    else:
        regex = source
    try:
        pattern = re.compile(regex, flags)
    except re.error as exc:
        raise LexiconError(f"{where}: {source}: not a valid regular expression: {exc}") from None
    replacement = f"[[ {spoken.strip()} ]]" if "ipa" in data else spoken.strip()
    if section == "words":
        replacement = replacement.replace("\\", "\\\\")  # a word's spoken form is literal
    else:
        refs = [int(n) for n in re.findall(r"\\(\d+)", replacement)]
        if any(n > pattern.groups for n in refs):
            raise LexiconError(f"{where}: {source}: refers to group {max(refs)}, the pattern has {pattern.groups}")
    return Entry(pattern=pattern, replacement=replacement, line=line)


class LexiconFile:
    """A lexicon that follows its file: reloaded when the file changes or ``reload`` is asked (SIGHUP).

    A file that turns invalid keeps the last good lexicon in use, with an ERROR naming the line.
    """

    def __init__(self, path: Optional[Path]) -> None:
        """Load ``path`` (LexiconError if it is invalid at start); None: an empty lexicon."""
        self.path = path
        self._stamp: Optional[tuple[int, int]] = None
        self._wanted = False
        self.lexicon = Lexicon()
        if path is not None:
            self.lexicon = Lexicon.load(path)
            self._stamp = self._stat()

    def _stat(self) -> Optional[tuple[int, int]]:
        try:
            st = self.path.stat()  # type: ignore[union-attr]
        except OSError:
            return None
        return st.st_mtime_ns, st.st_size

    def reload(self) -> None:
        """Reload at the next ``current`` (safe to call from a signal handler)."""
        self._wanted = True

    def current(self) -> Lexicon:
        """The lexicon to use now, reloading first if the file changed or a reload was asked."""
        if self.path is None:
            return self.lexicon
        stamp = self._stat()
        if self._wanted or stamp != self._stamp:
            self._wanted = False
            self._stamp = stamp
            try:
                self.lexicon = Lexicon.load(self.path)
                log.info("lexicon %s reloaded: %d entries", self.path, len(self.lexicon.entries))
            except LexiconError as exc:
                log.error("%s; keeping the previous lexicon (%d entries)", exc, len(self.lexicon.entries))
        return self.lexicon
