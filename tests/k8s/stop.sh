#!/bin/bash
# Stop what start.sh started in $K8S_RUN, by the PIDs it wrote: each a `timeout` that setsid made the leader of a
# process group of its own, so the group is that component and nothing else. SIGTERM to every group, up to 10 s for
# them to leave (an API server stopped while it starts, or whose etcd is going too, may not), then SIGKILL.
R=${K8S_RUN:-${K8S_CACHE:-$HOME/.cache/k8s-1.20}/run}
groups=()
for c in sched kcm apiserver etcd; do
  if [ -f "$R/$c.pid" ]; then
    pid=$(cat "$R/$c.pid")
    groups+=("$pid")
    kill -TERM -- "-$pid" 2>/dev/null
    rm -f "$R/$c.pid"
  fi
done
for _ in $(seq 50); do
  alive=0
  for pid in "${groups[@]}"; do kill -0 -- "-$pid" 2>/dev/null && alive=1; done
  [ $alive = 0 ] && break
  sleep 0.2
done
for pid in "${groups[@]}"; do kill -KILL -- "-$pid" 2>/dev/null; done
true
