"""lab.cluster: the two-node harness the tests, the demo and the benchmark share.

Real parts: the session's PostgreSQL pair (lent to the harness, so it must survive
`close()`), a real HTTP receiver, real DRBD state files and a real daemon per node that
alerts the receiver.
"""

from __future__ import annotations

import json
import os
import re
import time
import urllib.request
from typing import Any, List

import pytest

from lab.cluster import TwoNodeCluster, lab_node

HEALTHY_SERVICES = ["sh", "-c", "echo '/service/hvmail-httpd: up (pid 100) 1000 seconds'"]


def drbd_role(path: str) -> str:
    """This node's role in a /proc/drbd-format file ("ro:Primary/Secondary")."""
    with open(path, encoding="utf-8") as handle:
        (role,) = re.findall(r" ro:(\w+)/", handle.read())
    return role


def test_two_nodes_only():
    with pytest.raises(ValueError, match="two nodes"):
        TwoNodeCluster(nodes=("a", "b", "c"))


def test_lab_node_places_drbd_and_config_in_its_work_directory(tmp_path):
    node, drbd = lab_node(str(tmp_path / "s1"), "s1", "secondary", "host=127.0.0.1 port=1",
                          services_command=HEALTHY_SERVICES,
                          targets=[{"name": "hook", "url": "json://127.0.0.1:9/"}],
                          overrides={"standbys": {"reconnect_grace": "1s"}})
    assert drbd.path == str(tmp_path / "s1" / "proc_drbd")
    assert drbd_role(drbd.path).lower() == "secondary"
    assert node.sections["daemon"]["state_dir"] == str(tmp_path / "s1" / "state")
    assert node.sections["standbys"]["reconnect_grace"] == "1s"
    assert node.sections["alerts.targets"] == [{"name": "hook", "url": "json://127.0.0.1:9/"}]
    assert os.path.exists(node.config_path) and not node.running()


@pytest.mark.postgres
def test_cluster_wires_each_node_to_its_own_server_and_cleans_up(pg, tmp_path):
    seen: List[Any] = []
    cluster = TwoNodeCluster(nodes=("n1", "n2"), services_command=HEALTHY_SERVICES, pg=pg,
                             on_message=seen.append, temp_root=str(tmp_path))
    with cluster:
        base = cluster.base
        assert os.path.isdir(base)
        assert drbd_role(cluster.drbd["n1"].path).lower() == "primary"
        assert drbd_role(cluster.drbd["n2"].path).lower() == "secondary"
        assert cluster.dsn("n1") == str(pg.dsn("primary"))
        assert cluster.dsn("n2") == str(pg.dsn("standby"))
        sections = cluster.sections("n2", overrides={"replay_lag": {"for": "5s"}})
        assert sections["postgres"]["dsn"] == cluster.dsn("n2")
        assert sections["drbd"]["path"] == cluster.drbd["n2"].path
        assert sections["services"]["command"] == HEALTHY_SERVICES
        assert sections["replay_lag"]["for"] == "5s"

        # A real daemon on n1: the harness starts it in n1's directory and stops it.
        daemon = cluster.daemon("n1", cluster.sections("n1")).start()
        assert daemon.workdir == os.path.join(base, "n1")
        deadline = time.monotonic() + 30
        while daemon.cycles() < 1:
            assert daemon.running() and time.monotonic() < deadline, daemon.log()[-20:]
            time.sleep(0.1)

        # What the receiver gets is kept with its arrival time and passed on.
        body = json.dumps({"title": "t", "message": "m", "type": "info"}).encode()
        request = urllib.request.Request(cluster.receiver.http_url, data=body,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200
        deadline = time.monotonic() + 10
        while not cluster.arrived() and time.monotonic() < deadline:
            time.sleep(0.05)
        arrived = cluster.arrived()
        assert [m for _at, m in arrived] == seen == [{"title": "t", "message": "m",
                                                      "type": "info"}]
    assert not daemon.running()
    # The lent pair keeps running; the harness's own directory is gone.
    assert not os.path.exists(base)
    assert cluster.receiver is None and cluster.daemons == {}
    assert pg.scalar("primary", "SELECT 1") == 1
