"""Config errors, located: file, key path, line (and column when TOML knows it)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Dict, List, Optional

# ---------------------------------------------------------------- errors


@dataclass(frozen=True)
class ConfigProblem:
    """One thing wrong with a config file, located as precisely as we can."""

    path: str
    key: str
    message: str
    line: Optional[int] = None
    column: Optional[int] = None

    def __str__(self) -> str:
        where = self.path
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        key = f" [{self.key}]" if self.key else ""
        return f"{where}:{key} {self.message}"


class ConfigError(Exception):
    """Raised with every problem found; str() is one line per problem."""

    def __init__(self, problems: List[ConfigProblem]):
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


# ---------------------------------------------------------------- key locator

_HEADER_RE = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?\s*(?:#.*)?$")
_KEY_RE = re.compile(r"^\s*([A-Za-z0-9_\-\"'.]+)\s*=")


def _norm_key(text: str) -> str:
    return ".".join(part.strip().strip("\"'") for part in text.split("."))


class _KeyIndex:
    """Where each table header and `key =` line of a config text is, from one scan.

    A small scan of headers and `key =` lines: enough to point a person at the line for
    errors that the TOML parser itself does not report (wrong type, unknown key, ...).
    Built once per text, so locating thousands of problems stays linear (an index per
    lookup made 4,000 unknown sections take 25 s, on every reload too).
    """

    def __init__(self, text: str):
        self.keys: Dict[str, int] = {}  # full key path -> its first line
        self.headers: Dict[str, int] = {}  # table path -> its last header line
        table = ""
        counts: Dict[str, int] = {}
        for number, line in enumerate(text.splitlines(), 1):
            header = _HEADER_RE.match(line)
            if header:
                name = _norm_key(header.group(2))
                if header.group(1) == "[[":
                    counts[name] = counts.get(name, -1) + 1
                    table = f"{name}.#{counts[name]}"
                else:
                    table = name
                self.headers[table] = number
                continue
            key = _KEY_RE.match(line)
            if key:
                full = f"{table}.{_norm_key(key.group(1))}" if table else _norm_key(key.group(1))
                self.keys.setdefault(full, number)

    def locate(self, keypath: str) -> Optional[int]:
        want = re.sub(r"\[(\d+)\]", r".#\1", keypath)
        if want in self.keys:
            return self.keys[want]
        if want in self.headers:
            return self.headers[want]
        parts = want.split(".")
        for end in range(len(parts) - 1, 0, -1):  # an inline table holding the key
            line = self.keys.get(".".join(parts[:end]))
            if line is not None:
                return line
        return None


def locate(text: str, keypath: str) -> Optional[int]:
    """Line number (1-based) where `keypath` (e.g. "alerts.targets[1].url") is set."""
    return _KeyIndex(text).locate(keypath)


# Arrays and inline tables nested deeper than this are refused before the TOML parser sees
# them (it recurses per level: a 3,000-deep array raised RecursionError, on reload too).
MAX_NESTING = 32
_NEST_TOKEN_RE = re.compile(r'"""|\'\'\'|"|\'|#|\n|[\[\]{}]')
_BASIC_RE = re.compile(r'"(?:[^"\\\n]|\\.)*"')
_ML_BASIC_END_RE = re.compile(r'(?<!\\)(?:\\\\)*"""')


def _nesting_problem(text: str, path: str) -> Optional[ConfigProblem]:
    """A located problem when a value nests arrays/tables deeper than MAX_NESTING."""
    if text.count("[") + text.count("{") <= MAX_NESTING:
        return None
    depth = 0
    pos = 0
    line_start = 0
    table = ""
    key = ""
    while True:
        match = _NEST_TOKEN_RE.search(text, pos)
        if match is None:
            return None
        token, pos = match.group(0), match.end()
        if token == "\n":
            line_start = pos
        elif token == "#":
            end = text.find("\n", pos)
            pos = len(text) if end < 0 else end
        elif token in ('"""', "'''"):
            if token == "'''":
                end = text.find(token, pos)
            else:
                found = _ML_BASIC_END_RE.search(text, pos)
                end = found.start() if found else -1
            if end < 0:
                return None  # unterminated: the TOML parser reports it
            pos = end + 3
        elif token == '"':
            found = _BASIC_RE.match(text, match.start())
            if found is None:
                return None
            pos = found.end()
        elif token == "'":
            end = text.find("'", pos)
            if end < 0:
                return None
            pos = end + 1
        elif token in "[{":
            if depth == 0 and token == "[" and not text[line_start:match.start()].strip():
                end = text.find("\n", pos)  # a [table] or [[array]] header: skip the line
                end = len(text) if end < 0 else end
                header = _HEADER_RE.match(text[line_start:end])
                table = _norm_key(header.group(2)) if header else table
                pos = end
                continue
            if depth == 0:
                found = _KEY_RE.match(text[line_start:match.start()] + "=")
                key = _norm_key(found.group(1)) if found else ""
            depth += 1
            if depth > MAX_NESTING:
                line = text.count("\n", 0, match.start()) + 1
                keypath = ".".join(p for p in (table, key) if p)
                return ConfigProblem(
                    path, keypath,
                    f"arrays or inline tables nested more than {MAX_NESTING} levels deep",
                    line, match.start() - line_start + 1,
                )
        else:  # "]" or "}"
            depth = max(0, depth - 1)


# ---------------------------------------------------------------- conversion


class _Collector:
    def __init__(self, path: str, text: str):
        self.path = path
        self.text = text
        self.problems: List[ConfigProblem] = []
        self._index: Optional[_KeyIndex] = None

    def add(self, key: str, message: str) -> None:
        self.problems.append(self.problem(key, message))

    def problem(self, key: str, message: str) -> ConfigProblem:
        """`message` about `key`, located (file, line) like an error; warnings use it too."""
        if self._index is None:
            self._index = _KeyIndex(self.text)
        return ConfigProblem(self.path, key, message, self._index.locate(key) if key else None)


