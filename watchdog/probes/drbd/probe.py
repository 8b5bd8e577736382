"""The probe: read /proc/drbd or run the status command, within a deadline, parse what
it printed and select the configured resources."""

from __future__ import annotations

import re
import shlex
import threading
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from watchdog.config import DrbdConfig
from watchdog.probes.command import CommandResult, run_command
from watchdog.probes.drbd.detect import detect_format, parse
from watchdog.probes.drbd.lines import _is_blank, _lines, _quote
from watchdog.probes.drbd.model import DEFAULT_COMMANDS, STATUS_COMMAND, DrbdResource, DrbdSnapshot
from watchdog.probes.drbd.overview import _OVERVIEW_NOTES
from watchdog.probes.drbd.proc import parse_proc_drbd

# ---------------------------------------------------------------- the probe


def read_text(path: str, limit: int = 1 << 20) -> str:
    """Read a small text file (such as /proc/drbd); raises OSError.

    Bounded and never blocking: a FIFO, a device or a file over `limit` is refused with
    the reason (statefile.read_bounded) instead of hanging the reader or filling memory.
    """
    from watchdog.statefile import read_bounded

    return read_bounded(path, limit).decode("utf-8", errors="replace")


_stuck_reads: Dict[str, threading.Thread] = {}
_stuck_lock = threading.Lock()


def _read_with_deadline(
    read_file: Callable[[str], str], path: str, timeout: float
) -> Tuple[Optional[str], Optional[str]]:
    """(text, None) or (None, reason); a read that hangs is abandoned at `timeout`.

    A worker thread does the read; at most one per path may hang at a time, so a wedged
    file system cannot pile threads up cycle after cycle.
    """
    with _stuck_lock:
        stuck = _stuck_reads.get(path)
        if stuck is not None:
            if stuck.is_alive():
                return None, f"an earlier read of {path} is still hanging"
            del _stuck_reads[path]
    box: Dict[str, Any] = {}

    def work() -> None:
        try:
            box["text"] = read_file(path)
        except OSError as exc:
            box["error"] = f"cannot read {path}: {exc.strerror or exc}"
        except Exception as exc:  # noqa: BLE001 - an injected reader may fail any way
            box["error"] = f"cannot read {path}: {type(exc).__name__}: {exc}"

    worker = threading.Thread(target=work, name=f"read {path}", daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        with _stuck_lock:
            _stuck_reads[path] = worker
        return None, f"reading {path} timed out after {timeout:g}s"
    if "error" in box:
        return None, box["error"]
    text = box.get("text")
    if not isinstance(text, str):
        return None, f"cannot read {path}: no text"
    return text, None


def _command_line(argv: Sequence[str]) -> str:
    return " ".join(shlex.quote(str(a)) for a in argv)


_NO_SUCH_RESOURCE_RE = re.compile(r"^(\S+): No such resource\s*$")


def _run(
    run: Callable[..., CommandResult], argv: Sequence[str], timeout: float
) -> Tuple[Optional[str], Optional[str], Tuple[str, ...]]:
    """(stdout, error, resources the command said are not up)."""
    try:
        res = run(tuple(argv), timeout)
    except Exception as exc:  # noqa: BLE001 - an injected runner must not crash the probe
        return None, f"cannot run {_command_line(argv)}: {type(exc).__name__}: {exc}", ()
    if res.error:
        return None, f"{_command_line(argv)}: {res.error}", ()
    down: List[str] = []
    other: List[str] = []
    for line in res.stderr.splitlines():
        m = _NO_SUCH_RESOURCE_RE.match(line.strip())
        if m:
            down.append(m.group(1))
        elif line.strip() and not line.startswith(_OVERVIEW_NOTES):
            other.append(line.strip())
    if res.returncode != 0 and (other or not down):
        why = other[0] if other else (res.stdout.strip().split("\n")[0] or "no output")
        return None, f"{_command_line(argv)} exited with status {res.returncode}: {why}", ()
    return res.stdout, None, tuple(down)


def _kernel_major(version: Optional[str]) -> Optional[int]:
    if not version:
        return None
    head = version.split(".", 1)[0]
    return int(head) if head.isascii() and head.isdigit() else None


def probe_drbd(
    cfg: DrbdConfig,
    run: Callable[..., CommandResult] = run_command,
    read_file: Callable[[str], str] = read_text,
    status_command: Sequence[str] = STATUS_COMMAND,
) -> DrbdSnapshot:
    """Read DRBD's state as `cfg` says; failures are in the snapshot, never raised.

    format "auto" without `command` reads `path`; when that file shows a DRBD 9 kernel
    (version lines only) it runs `status_command` (`drbdadm status`) instead. With
    `command`, its stdout is parsed; "auto" recognises the format from the content.
    """
    fmt = cfg.format
    fallback: Optional[str] = None
    version: Optional[str] = None
    down: Tuple[str, ...] = ()
    if cfg.command or fmt in DEFAULT_COMMANDS:
        argv = tuple(cfg.command) if cfg.command else DEFAULT_COMMANDS[fmt]
        source = _command_line(argv)
        text, error, down = _run(run, argv, cfg.timeout)
        if error is not None:
            return DrbdSnapshot((), fmt, source, error=error)
    else:
        source = cfg.path
        text, error = _read_with_deadline(read_file, cfg.path, cfg.timeout)
        if error is not None:
            return DrbdSnapshot((), fmt, source, error=error)
        if fmt == "auto":
            proc = parse_proc_drbd(text)
            major = _kernel_major(proc.version)
            if proc.bad_line is None and major is not None and major >= 9:
                fallback = (
                    f"{cfg.path} shows DRBD {proc.version}, whose devices are not listed "
                    f"there: read {_command_line(status_command)}"
                )
                version = proc.version
                source = _command_line(status_command)
                text, error, down = _run(run, status_command, cfg.timeout)
                if error is not None:
                    return DrbdSnapshot(
                        (), fmt, source, error=error, version=version, fallback=fallback
                    )
            else:
                fmt = "proc"
    text = text or ""
    if fmt == "auto":
        detected = detect_format(text)
        if detected is None:
            first = next((ln for ln in _lines(text) if not _is_blank(ln)), None)
            return DrbdSnapshot(
                (),
                "unknown",
                source,
                bad_line=_quote(first) if first is not None else "(empty output)",
                version=version,
                fallback=fallback,
            )
        fmt = detected
    parsed = parse(fmt, text)
    resources = parsed.resources + tuple(
        DrbdResource(name=name, unconfigured=True)
        for name in down
        if not any(r.name == name for r in parsed.resources)
    )
    selected, missing = select_resources(resources, cfg.resources)
    return DrbdSnapshot(
        resources=selected,
        format=fmt,
        source=source,
        bad_line=parsed.bad_line,
        missing=missing,
        version=parsed.version or version,
        not_loaded=parsed.not_loaded,
        fallback=fallback,
    )


_MINOR_SPEC_RE = re.compile(r"^(?:/dev/drbd|drbd|minor\s*)?([0-9]+)$")


def resource_matches(resource: DrbdResource, spec: str) -> bool:
    """`spec` names `resource`: its name, "name/volume", or a minor ("0", "drbd0", ...)."""
    spec = spec.strip()
    if spec == resource.name:
        return True
    m = _MINOR_SPEC_RE.match(spec)
    if m and int(m.group(1)) in resource.minors:
        return True
    name, sep, vol = spec.partition("/")
    if sep and name == resource.name and vol.isdigit():
        return any(v.volume == int(vol) for v in resource.volumes)
    return False


def select_resources(
    resources: Sequence[DrbdResource], wanted: Optional[Sequence[str]]
) -> Tuple[Tuple[DrbdResource, ...], Tuple[str, ...]]:
    """(resources named in `wanted`, names in `wanted` not found); all when `wanted` unset."""
    if not wanted:
        return tuple(resources), ()
    selected = tuple(r for r in resources if any(resource_matches(r, w) for w in wanted))
    missing = tuple(w for w in wanted if not any(resource_matches(r, w) for r in resources))
    return selected, missing
