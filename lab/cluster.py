"""The two-node cluster the tests, the demo and the benchmark run against, wired once.

Why one module: a PostgreSQL primary + streaming standby, a svscan tree of hvmail-like
services, one DRBD state file per node, an HTTP alert receiver and one `ha-watchdog` daemon
per node were wired three times (bench, demo, the daemon tests), each with its own idea of
which node is Primary, where its files live and which server it watches. Here:

- `lab_node()` makes one simulated node: its DRBD state file (Primary for role "primary")
  in its work directory, a config with the lab's short timing, and the daemon process (not
  started). The daemon tests use it directly with the session's PostgreSQL pair.
- `TwoNodeCluster` owns the shared parts. `nodes[0]` starts DRBD Primary and watches the
  PostgreSQL primary, `nodes[1]` Secondary with the standby; each node watches ITS OWN
  server whatever role it has later, as on real nodes. `open()` starts everything in order;
  the demo calls the steps one by one to narrate them. `close()` removes all of it, each
  part on its own so that one failure stops nothing.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import threading
import time
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from lab.drbdstate import DrbdStateFile
from lab.node import NodeDaemon, node_sections
from lab.pgcluster import PgCluster
from lab.receivers import HttpReceiver
from lab.services import ServiceTree


class ClusterError(RuntimeError):
    """The cluster did not reach the state a step waits for."""


def place_drbd(work: str, role: str) -> DrbdStateFile:
    """`work`/proc_drbd, in the state of a node of `role` ("primary" or "secondary")."""
    os.makedirs(work, exist_ok=True)
    drbd = DrbdStateFile(os.path.join(work, "proc_drbd"))
    if role == "primary":
        drbd.primary()
    else:
        drbd.secondary()
    return drbd


def lab_node(
    work: str,
    name: str,
    role: str,
    dsn: str,
    *,
    services_command: Sequence[str] = ("true",),
    targets: Sequence[Mapping[str, Any]] = (),
    overrides: Optional[Mapping[str, Any]] = None,
    python: Optional[str] = None,
    on_line: Optional[Callable[[str, str], None]] = None,
    env: Optional[Mapping[str, str]] = None,
) -> Tuple[NodeDaemon, DrbdStateFile]:
    """One node in `work`: its DRBD state file, its config (state in `work`/state) and its
    daemon, not started."""
    drbd = place_drbd(work, role)
    sections = node_sections(name, os.path.join(work, "state"), drbd.path, dsn,
                             services_command=services_command, targets=targets,
                             overrides=overrides)
    kwargs: Dict[str, Any] = {"on_line": on_line, "env": env}
    if python is not None:
        kwargs["python"] = python
    return NodeDaemon(name, work, sections, **kwargs), drbd


class TwoNodeCluster:
    """A PostgreSQL pair, a svscan tree, a DRBD file per node, a receiver and the daemons.

    `base`: the work directory (made with `prefix` under `temp_root` when None; removed by
    `close()` when this object made it). `pg`: a running pair to use instead of starting
    one (then `close()` leaves it running). `services`: the svscan tree's services
    ({name: "up" | "normally_down"}); without it the nodes use `services_command`.
    Alerts posted to the receiver are kept in `arrivals` (monotonic time, body) and passed
    to `on_message`.
    """

    def __init__(
        self,
        base: Optional[str] = None,
        *,
        nodes: Sequence[str] = ("mail1", "mail2"),
        services: Optional[Mapping[str, str]] = None,
        services_command: Sequence[str] = ("true",),
        pg: Optional[PgCluster] = None,
        pg_dir: Optional[str] = None,
        pg_version: Optional[str] = None,
        standby_settings: Optional[Mapping[str, str]] = None,
        on_message: Optional[Callable[[Any], None]] = None,
        prefix: str = "ha-watchdog-lab-",
        temp_root: Optional[str] = None,
    ):
        if len(nodes) != 2:
            raise ValueError(f"two nodes, not {len(nodes)}: {nodes!r}")
        self.nodes: Tuple[str, str] = (nodes[0], nodes[1])
        self.base = base or ""
        self._own_base = base is None
        self._prefix, self._temp_root = prefix, temp_root
        self.services = dict(services) if services is not None else None
        self._services_command = list(services_command)
        self.pg = pg
        self._own_pg = pg is None
        self._pg_dir = pg_dir
        self._pg_version = pg_version
        self._standby_settings = dict(standby_settings or {})
        self._on_message = on_message
        self.tree: Optional[ServiceTree] = None
        self.receiver: Optional[HttpReceiver] = None
        self.drbd: Dict[str, DrbdStateFile] = {}
        self.daemons: Dict[str, NodeDaemon] = {}
        self.arrivals: List[Tuple[float, Any]] = []
        self._lock = threading.Lock()

    # -- lifecycle ------------------------------------------------------------------

    def __enter__(self) -> TwoNodeCluster:
        return self.open()

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def make_base(self) -> str:
        if not self.base:
            self.base = tempfile.mkdtemp(prefix=self._prefix, dir=self._temp_root)
            os.chmod(self.base, 0o755)  # the PostgreSQL OS user must reach its directory
        return self.base

    def start_receiver(self) -> HttpReceiver:
        self.receiver = HttpReceiver(on_message=self._arrived).start()
        return self.receiver

    def new_postgres(self) -> PgCluster:
        """The pair, not started yet (its version is known before it starts)."""
        if self.pg is None:
            directory = self._pg_dir or os.path.join(self.make_base(), "pg")
            self.pg = PgCluster(directory, version=self._pg_version,
                                standby_settings=self._standby_settings or None)
        return self.pg

    def start_postgres(self) -> PgCluster:
        pg = self.new_postgres()
        if self._own_pg:
            pg.start()
        return pg

    def start_services(self) -> Optional[ServiceTree]:
        if self.services is not None:
            self.tree = ServiceTree(self.make_base(), self.services)
            self.tree.open()
        return self.tree

    def place_nodes(self) -> Dict[str, DrbdStateFile]:
        """One work directory and DRBD state file per node: nodes[0] Primary."""
        for name in self.nodes:
            self.drbd[name] = place_drbd(self.workdir(name), self.role_at_start(name))
        return self.drbd

    def open(self) -> TwoNodeCluster:
        try:
            self.make_base()
            self.start_receiver()
            self.start_postgres()
            self.start_services()
            self.place_nodes()
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        for daemon in self.daemons.values():
            with contextlib.suppress(Exception):
                daemon.stop(timeout=10)
        self.daemons = {}
        parts: List[Any] = [self.receiver, self.tree]
        if self._own_pg:
            parts.append(self.pg)
        for part in parts:
            if part is not None:
                with contextlib.suppress(Exception):
                    part.close()
        self.receiver = self.tree = None
        if self._own_pg:
            self.pg = None
        if self._own_base and self.base:
            shutil.rmtree(self.base, ignore_errors=True)
            self.base = ""

    # -- the nodes ------------------------------------------------------------------

    def role_at_start(self, name: str) -> str:
        return "primary" if name == self.nodes[0] else "secondary"

    def workdir(self, name: str) -> str:
        return os.path.join(self.make_base(), name)

    def dsn(self, name: str) -> str:
        """The DSN of the server `name` watches: its own, whatever its role now."""
        assert self.pg is not None
        return str(self.pg.dsn("primary" if name == self.nodes[0] else "standby"))

    def services_command(self) -> List[str]:
        return self.tree.status_command() if self.tree is not None else self._services_command

    def receiver_target(self, name: str = "receiver") -> Dict[str, Any]:
        assert self.receiver is not None
        return {"name": name, "url": self.receiver.url}

    def sections(self, name: str, overrides: Optional[Mapping[str, Any]] = None,
                 target: str = "receiver") -> Dict[str, Any]:
        """`name`'s config with the lab's short timing, alerting the receiver."""
        return node_sections(name, os.path.join(self.workdir(name), "state"),
                             self.drbd[name].path, self.dsn(name),
                             services_command=self.services_command(),
                             targets=[self.receiver_target(target)], overrides=overrides)

    def daemon(self, name: str, sections: Mapping[str, Any], **kwargs: Any) -> NodeDaemon:
        """`name`'s daemon (not started; `close()` stops it); kwargs go to NodeDaemon."""
        daemon = NodeDaemon(name, self.workdir(name), sections, **kwargs)
        self.daemons[name] = daemon
        return daemon

    # -- what arrived, what the pair and the tree are doing ----------------------------

    def _arrived(self, message: Any) -> None:
        with self._lock:
            self.arrivals.append((time.monotonic(), message))
        if self._on_message is not None:
            self._on_message(message)

    def arrived(self) -> List[Tuple[float, Any]]:
        with self._lock:
            return list(self.arrivals)

    def reply_age(self) -> Optional[float]:
        """Seconds since the primary last heard from the standby (pg_stat_replication)."""
        assert self.pg is not None
        value = self.pg.scalar(
            "primary",
            "SELECT extract(epoch FROM clock_timestamp() - max(reply_time))::float8"
            " FROM pg_stat_replication WHERE state = 'streaming'",
        )
        return None if value is None else float(value)

    def wait_fresh_reply(self, limit: float = 3.0, timeout: float = 30.0) -> None:
        """Until the standby has replied recently (a write makes it send feedback)."""
        assert self.pg is not None
        deadline = time.monotonic() + timeout
        while True:
            age = self.reply_age()
            if age is not None and age < limit:
                return
            if time.monotonic() > deadline:
                raise ClusterError(f"the standby did not reply within {timeout:g}s (age {age})")
            with contextlib.suppress(Exception):
                self.pg.write(1)
            time.sleep(0.2)

    def wait_services_settled(self, min_uptime: float, timeout: float = 30.0) -> None:
        """Until every up service is older than `min_uptime` (a young one makes the probe
        resample for seconds)."""
        assert self.tree is not None and self.services is not None
        deadline = time.monotonic() + timeout
        while True:
            status = self.tree.status()
            young = [n for n, e in status.items() if self.services.get(n) == "up"
                     and (e.state != "up" or (e.seconds or 0) < min_uptime)]
            if not young:
                return
            if time.monotonic() > deadline:
                raise ClusterError(f"services not settled after {timeout:g}s: {young}")
            time.sleep(0.5)
