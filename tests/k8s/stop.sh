#!/bin/bash
# Stop what start.sh started in $K8S_RUN, by the PIDs it wrote (each a `timeout` whose child goes with it).
R=${K8S_RUN:-${K8S_CACHE:-$HOME/.cache/k8s-1.20}/run}
for c in sched kcm apiserver etcd; do
  [ -f "$R/$c.pid" ] && kill "$(cat "$R/$c.pid")" 2>/dev/null
  rm -f "$R/$c.pid"
done
true
