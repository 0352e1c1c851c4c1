"""A short run of benchmarks/cluster_sim.py: three nodes, a registry, (Prometheus), a rollout and a rollback under load.

The benchmark's own code path, bounded: three `wasinfer serve --desired-state` nodes (each in its own
network namespace where this runs as root and `ip netns` works, else processes on 127.0.0.1), Debian's
docker-registry, Prometheus when installed, an open-loop round-robin load, v1.1.0 rolled out through every
node's ConfigMap mount and rolled back. What must hold whatever the machine's speed: no request fails, every
node converges both ways, no node answers with the old version after it has answered with the new one, and
the nodes (and Prometheus, when it ran) count the two updates.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.scripts import load

REGISTRY_BINARY = Path("/usr/bin/docker-registry")


def _cluster_sim() -> Any:
    return load("benchmarks/cluster_sim.py")


@pytest.mark.slow
@pytest.mark.skipif(not REGISTRY_BINARY.exists(),
                    reason="needs Debian's docker-registry package (/usr/bin/docker-registry); .ci/run installs it")
def test_rollout_and_rollback_under_load_fail_no_request(tmp_path: Path) -> None:
    sim = _cluster_sim()
    # Windows of 3 s: long enough that Prometheus' 1 s scrapes see each window's version dominate its traffic.
    settings = sim.Settings(capacity_s=1.0, window_s=3.0, max_rate=200.0, pulls=4, pull_threads=2, blob_get_s=0.3,
                            converge_timeout_s=60.0)
    report = sim.run(settings, tmp_path, network="auto", with_prometheus=True)

    load = report["load"]
    assert load["failed"] == 0, load["failure_kinds"]
    assert load["shed"] == 0
    assert load["requests"] > 0 and all(w["requests"] > 0 for name, w in report["windows"].items()
                                        if name in ("before", "after", "after_rollback"))
    for phase in ("rollout", "rollback"):
        rounds = report["rounds"][phase]
        assert rounds["converged"], (phase, rounds)
        assert all(t is not None for t in rounds["per_node_s"]), (phase, rounds)
        assert rounds["stale_answers"] == 0, (phase, rounds)
    assert report["server_updates"]["ok"] == [2, 2, 2]  # the rollout and the rollback on every node
    assert report["server_updates"]["failed"] == [0, 0, 0]
    assert report["registry"]["module_bytes"] > 0 and report["registry"]["blob_gets"] > 0
    assert report["network"]["mode"] in ("netns", "loopback")
    prometheus = report["prometheus"]
    if sim.PROMETHEUS_BINARY.exists():
        assert prometheus["status"] == "ok", prometheus
        # Versions are served under the desired state's names (repository directories 1 = v1.0.0, 2 = v1.1.0, 3 =
        # v1.0.0 installed again by the rollback, the same bytes under the same name).
        assert prometheus["serving_version"]["before_rollout"] == ["v1.0.0"] * 3
        assert prometheus["serving_version"]["after_rollback"] == ["v1.0.0"] * 3
        assert all(prometheus["updates"].get(f"node{n}/ok") == 3 for n in range(3)), prometheus["updates"]
        assert all(t is not None for t in prometheus["traffic_switched_s"]["rollout"])
        info = prometheus["model_version_info"]
        if info["status"] == "ok":  # where the server exports the label its desired state names
            assert info["serving"] == {"rollout": ["v1.1.0"] * 3, "rollback": ["v1.0.0"] * 3}, info
            assert all(t is not None for phase in ("rollout", "rollback") for t in info["switched_s"][phase]), info


@pytest.mark.k8s
@pytest.mark.xdist_group("k8s")
def test_the_control_plane_cluster_converges_under_load_and_reaches_every_watcher_and_puller(tmp_path: Path) -> None:
    """cluster_sim.py --control-plane, bounded: 2 fake Nodes on a real API server, the rendered Deployment's 2 pods
    run as servers in the nodes' network namespaces, 2 ConfigMap patches under load, the fan-out to 20 watch streams
    and to 8 concurrent registry pulls; its section renders from the result."""
    sim = _cluster_sim()
    plane_sim = load("benchmarks/control_plane_sim.py")
    from tests.k8s.plane import CannotBuild, ensure_binaries

    try:
        ensure_binaries()
    except CannotBuild as exc:
        pytest.skip(str(exc))
    problem = load("benchmarks/cluster_parts.py").namespaces_problem()
    if problem:
        pytest.skip(f"the nodes need network namespaces: {problem}")
    settings = plane_sim.PlaneSettings(nodes=2, rounds=2, rate_per_node=40.0, settle_s=1.0, watchers=20,
                                       fanout_rounds=2, pull_clients=(1, 8))
    result = plane_sim.run(settings, tmp_path, plane_sim.modules_of([sim.OLD, sim.NEW]),
                           sim.Versions([sim.OLD, sim.NEW]))
    assert result["status"] == "ok", result
    cluster, servers = result["cluster"], result["servers"]
    addresses = result["network"]["nodes"]
    assert [n["name"] for n in cluster["nodes"]] == ["fake-node-1", "fake-node-2"]
    for pods in (cluster["pods_before"], cluster["pods_after"]):  # one Running pod per node, its IP the node's
        assert [(p["node"], p["phase"], p["ready"], p["pod_ip"]) for p in pods] == [
            ("fake-node-1", "Running", True, addresses[0]), ("fake-node-2", "Running", True, addresses[1])], pods
    assert cluster["endpoints"] == sorted(addresses)
    assert servers["failed"] == 0 and servers["shed"] == 0, servers["failure_kinds"]
    assert servers["requests"] > 0 and servers["converged"], servers["rounds"]
    assert [r["to"] for r in servers["rounds"]] == [sim.NEW, sim.OLD]
    assert all(r["stale_answers"] == 0 and None not in r["per_node_s"] for r in servers["rounds"]), servers["rounds"]
    assert servers["updates_ok"] == [2, 2] and servers["updates_failed"] == [0, 0], servers
    fanout = result["fanout"]
    assert fanout["complete_rounds"] == 2 and all(r["delivered"] == 20 for r in fanout["rounds"]), fanout
    pulls = result["registry_fanout"]["levels"]
    assert [(p["clients"], p["pulled"], p["failed"]) for p in pulls] == [(1, 1, 0), (8, 8, 0)], pulls
    assert all(p["module_bytes"] > 50_000 for p in pulls), pulls
    lines = "\n".join(sim.control_plane_lines({"date": "today", "control_plane": result}))
    assert "### Through a real API server" in lines and "Failed requests: **0**" in lines
