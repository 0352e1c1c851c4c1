#!/bin/bash
# Start etcd + kube-apiserver (+ controller-manager, scheduler and one fake Node) on 127.0.0.1 only, from the
# binaries build.sh made. State (etcd's data, certificates, logs, PIDs, the kubeconfig) goes to $K8S_RUN; every
# process is started under `timeout $K8S_LIFETIME` (default 1800 s), so nothing outlives a crashed caller for
# long. Prints KUBECONFIG=... when the API server answers /readyz. stop.sh stops them by their PIDs.
# CONTROLLERS=0: etcd and the API server only; K8S_APISERVER_ARGS: more kube-apiserver flags; API_ADDRESS: the one
# address the API server listens on (default 127.0.0.1; e.g. a private bridge's, for clients in network namespaces).
set -euo pipefail
W=${K8S_CACHE:-$HOME/.cache/k8s-1.20}; B=$W/bin
R=${K8S_RUN:-$W/run}; P=$R/pki; mkdir -p "$P"
EP=${ETCD_PORT:-19940}; AP=${API_PORT:-19942}; LIFE=${K8S_LIFETIME:-1800}; AA=${API_ADDRESS:-127.0.0.1}
KUBECTL=$B/kubectl; [ -x "$KUBECTL" ] || KUBECTL=kubectl
if [ ! -f "$P/sa.key" ]; then
  openssl req -x509 -newkey rsa:2048 -nodes -keyout "$P/ca.key" -out "$P/ca.crt" -days 365 -subj /CN=wasinfer-test-ca 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -keyout "$P/apiserver.key" -out "$P/apiserver.csr" -subj /CN=kube-apiserver 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1,IP:%s,DNS:localhost\nextendedKeyUsage=serverAuth\n' "$AA" > "$P/ext.cnf"
  openssl x509 -req -in "$P/apiserver.csr" -CA "$P/ca.crt" -CAkey "$P/ca.key" -CAcreateserial -out "$P/apiserver.crt" \
    -days 365 -extfile "$P/ext.cnf" 2>/dev/null
  openssl genrsa -out "$P/sa.key" 2048 2>/dev/null; openssl rsa -in "$P/sa.key" -pubout -out "$P/sa.pub" 2>/dev/null
  echo "test-admin-token-$RANDOM$RANDOM,admin,admin,system:masters" > "$P/tokens.csv"
fi
setsid timeout "$LIFE" etcd --name test --data-dir "$R/etcd" --listen-client-urls "http://127.0.0.1:$EP" \
  --advertise-client-urls "http://127.0.0.1:$EP" --listen-peer-urls "http://127.0.0.1:$((EP+1))" \
  --initial-advertise-peer-urls "http://127.0.0.1:$((EP+1))" --initial-cluster "test=http://127.0.0.1:$((EP+1))" \
  > "$R/etcd.log" 2>&1 & echo $! > "$R/etcd.pid"
setsid timeout "$LIFE" "$B/kube-apiserver" --etcd-servers="http://127.0.0.1:$EP" --bind-address="$AA" \
  --advertise-address="$AA" --secure-port="$AP" --tls-cert-file="$P/apiserver.crt" \
  --tls-private-key-file="$P/apiserver.key" --client-ca-file="$P/ca.crt" --token-auth-file="$P/tokens.csv" \
  --authorization-mode=RBAC --service-account-issuer=https://kubernetes.default.svc \
  --service-account-key-file="$P/sa.pub" --service-account-signing-key-file="$P/sa.key" \
  --service-cluster-ip-range=10.96.0.0/16 --endpoint-reconciler-type=none ${K8S_APISERVER_ARGS:-} \
  > "$R/apiserver.log" 2>&1 & echo $! > "$R/apiserver.pid"
export KUBECONFIG=$R/kubeconfig
"$KUBECTL" config set-cluster test --server="https://$AA:$AP" --certificate-authority="$P/ca.crt" --embed-certs >/dev/null
"$KUBECTL" config set-credentials admin --token="$(cut -d, -f1 "$P/tokens.csv")" >/dev/null
"$KUBECTL" config set-context test --cluster=test --user=admin >/dev/null
"$KUBECTL" config use-context test >/dev/null
ready=0
for i in $(seq 120); do "$KUBECTL" get --raw /readyz >/dev/null 2>&1 && { ready=1; break; }; sleep 1; done
[ $ready = 1 ] || { echo "the API server did not become ready in 120 s; $R/apiserver.log:" >&2; tail -20 "$R/apiserver.log" >&2; exit 1; }
echo "apiserver ready after ~${i}s" >&2
if [ "${CONTROLLERS:-1}" = 1 ]; then
  setsid timeout "$LIFE" "$B/kube-controller-manager" --kubeconfig="$KUBECONFIG" --authentication-kubeconfig="$KUBECONFIG" \
    --authorization-kubeconfig="$KUBECONFIG" --leader-elect=false --bind-address=127.0.0.1 --secure-port=$((AP+1)) \
    --port=0 --service-account-private-key-file="$P/sa.key" --root-ca-file="$P/ca.crt" \
    --controllers='*,-nodelifecycle' > "$R/kcm.log" 2>&1 & echo $! > "$R/kcm.pid"
  setsid timeout "$LIFE" "$B/kube-scheduler" --kubeconfig="$KUBECONFIG" --authentication-kubeconfig="$KUBECONFIG" \
    --authorization-kubeconfig="$KUBECONFIG" --leader-elect=false --bind-address=127.0.0.1 --secure-port=$((AP+2)) \
    --port=0 > "$R/sched.log" 2>&1 & echo $! > "$R/sched.pid"
  "$KUBECTL" apply -f - >/dev/null <<'YAML'
apiVersion: v1
kind: Node
metadata: {name: fake-node-1, labels: {kubernetes.io/hostname: fake-node-1}}
status:
  capacity: {cpu: "8", memory: 32Gi, pods: "110"}
  allocatable: {cpu: "8", memory: 32Gi, pods: "110"}
  conditions: [{type: Ready, status: "True", reason: KubeletReady, message: fake}]
YAML
  "$KUBECTL" taint node fake-node-1 node.kubernetes.io/not-ready:NoSchedule- >/dev/null 2>&1 || true
fi
echo "KUBECONFIG=$KUBECONFIG"
