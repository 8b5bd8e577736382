"""The demo's terminal: timestamps, colour (only on a terminal, never with NO_COLOR),
muting for the cleanup; the expectation record and the interruption."""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from typing import Callable, TextIO

# ---------------------------------------------------------------- console


_COLOURS = {"failure": "31", "warning": "33", "success": "32", "info": "36", "bold": "1",
            "dim": "2", "ok": "32", "fail": "31"}


class Console:
    """Timestamped, thread-safe printing; colour only on a terminal, ASCII when needed."""

    def __init__(self, stream: TextIO, clock: Callable[[], float] = time.monotonic):
        self.stream = stream
        self.clock = clock
        self.start = clock()
        self.lock = threading.Lock()
        self.muted = False
        isatty = getattr(stream, "isatty", lambda: False)
        self.colour = bool(isatty()) and "NO_COLOR" not in os.environ
        encoding = (getattr(stream, "encoding", None) or "").lower().replace("-", "")
        self.unicode = encoding.startswith("utf")

    def elapsed(self) -> float:
        return self.clock() - self.start

    def paint(self, text: str, style: str) -> str:
        code = _COLOURS.get(style)
        return f"\033[{code}m{text}\033[0m" if self.colour and code else text

    @property
    def tick(self) -> str:
        return "\u2713" if self.unicode else "ok"

    @property
    def cross(self) -> str:
        return "\u2717" if self.unicode else "FAIL"

    def write(self, text: str = "", stamp: bool = False, force: bool = False) -> None:
        with self.lock:
            if self.muted and not force:
                return
            prefix = f"[+{self.elapsed():5.1f}s] " if stamp else ""
            text = prefix + text + "\n"
            if not self.unicode:  # an alert may quote anything; never die on printing it
                text = text.encode("ascii", "replace").decode("ascii")
            self.stream.write(text)
            self.stream.flush()

    def event(self, text: str) -> None:
        self.write(text, stamp=True)


# ---------------------------------------------------------------- the demo


@dataclass(frozen=True)
class Expectation:
    scenario: str
    text: str
    ok: bool
    detail: str = ""


class Interrupted(BaseException):
    """SIGTERM or Ctrl-C while the demo runs; unwinds to the cleanup."""

    def __init__(self, code: int, what: str):
        super().__init__(what)
        self.code = code
        self.what = what
