"""A minimal kwok-like kubelet: marks the pods bound to fake-node-* Running and Ready, for a bounded time.

So Deployments, ReplicaSets, Endpoints and PodDisruptionBudgets behave as on a cluster, without a
container runtime. It watches the pods (all namespaces) and patches each pending one's status
subresource as it is bound, then exits after --seconds. A pod's IP is 10.244.x.y, or the address
--pod-ip gives its node (where a simulation runs the node's server: benchmarks/control_plane_sim.py).
kubectl 1.20 has no `patch --subresource`, hence the Python client. Run by hand:
`KUBECONFIG=... python tests/k8s/fake_kubelet.py --seconds 60`.
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime
from typing import Any

from kubernetes import client, config, watch

NODE_PREFIX = "fake-node-"


def running_status(pod: Any, index: int, pod_ip: str | None = None) -> dict[str, Any]:
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    conditions = [{"type": kind, "status": "True", "lastTransitionTime": now}
                  for kind in ("Initialized", "Ready", "ContainersReady", "PodScheduled")]
    containers = [{"name": c.name, "ready": True, "started": True, "restartCount": 0, "image": c.image or "fake",
                   "imageID": "", "state": {"running": {"startedAt": now}}} for c in pod.spec.containers]
    address = pod_ip or f"10.244.{index // 250}.{index % 250 + 2}"
    return {"status": {"phase": "Running", "podIP": address, "startTime": now, "conditions": conditions,
                       "containerStatuses": containers}}


def run(seconds: float, kubeconfig: str | None = None, pod_ips: dict[str, str] | None = None) -> int:
    """Mark pods Running until `seconds` have passed; the number marked. `pod_ips`: node name → its pods' IP."""
    config.load_kube_config(config_file=kubeconfig)
    api = client.CoreV1Api()
    marked, deadline = 0, time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        stream = watch.Watch().stream(api.list_pod_for_all_namespaces, timeout_seconds=max(1, int(left)),
                                      _request_timeout=(10, left + 10))
        for event in stream:
            pod = event["object"]
            node = pod.spec.node_name or ""
            if event["type"] == "DELETED" or not node.startswith(NODE_PREFIX) or pod.status.phase != "Pending":
                continue
            try:
                api.patch_namespaced_pod_status(pod.metadata.name, pod.metadata.namespace,
                                                running_status(pod, marked, (pod_ips or {}).get(node)))
            except client.exceptions.ApiException as exc:  # deleted meanwhile: the next event tells
                print(f"{pod.metadata.namespace}/{pod.metadata.name}: {exc.status} {exc.reason}", flush=True)
                continue
            marked += 1
            print(f"running: {pod.metadata.namespace}/{pod.metadata.name}", flush=True)
    return marked


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="how long to keep marking pods (default 30)")
    parser.add_argument("--kubeconfig", help="default: $KUBECONFIG or ~/.kube/config")
    parser.add_argument("--pod-ip", action="append", default=[], metavar="NODE=ADDRESS",
                        help="the pods on NODE get ADDRESS as their IP (repeatable)")
    args = parser.parse_args()
    pod_ips = dict(item.split("=", 1) for item in args.pod_ip)
    run(args.seconds, args.kubeconfig, pod_ips)


if __name__ == "__main__":
    main()
