#!/bin/bash
# Build kube-apiserver, -controller-manager, -scheduler and kubectl v1.20.2 from Debian bookworm's kubernetes
# source package, into $K8S_CACHE/bin (default ~/.cache/k8s-1.20). Idempotent: a finished build is reused, and
# an interrupted one resumes (Go's build cache lives under $K8S_CACHE too). About 8 minutes on 2 idle cores,
# 2.3 GB of disk; the binaries are ~290 MB. Exit 3: a prerequisite cannot be installed (not root, no apt).
set -euo pipefail
W=${K8S_CACHE:-$HOME/.cache/k8s-1.20}; mkdir -p "$W"; cd "$W"
BINARIES="kube-apiserver kube-controller-manager kube-scheduler kubectl"
exec 9>"$W/build.lock"; flock 9  # one build at a time (pytest workers, a second CI job)
done_already=1; for b in $BINARIES; do [ -x "bin/$b" ] || done_already=0; done
if [ $done_already = 1 ]; then echo "cached: $W/bin"; exit 0; fi
export DEBIAN_FRONTEND=noninteractive
need=()
command -v go >/dev/null || need+=(golang-go)
command -v rsync >/dev/null || need+=(rsync)
command -v etcd >/dev/null || need+=(etcd-server etcd-client)
[ -d /usr/share/gocode/src/github.com/modern-go/reflect2 ] || need+=(golang-github-modern-go-reflect2-dev)
if ((${#need[@]})); then
  { [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; } || { echo "cannot install ${need[*]}: not root or no apt-get" >&2; exit 3; }
  apt-get install -y --no-install-recommends "${need[@]}" >/dev/null 2>&1 \
    || { apt-get update -qq >/dev/null 2>&1 && apt-get install -y --no-install-recommends "${need[@]}" >/dev/null; } \
    || { echo "apt-get could not install ${need[*]}" >&2; exit 3; }
fi
SRC=kubernetes-1.20.2
if [ ! -f "$SRC/Makefile" ]; then
  # a private apt configuration with a deb-src line for the mirror this machine's apt already uses
  mkdir -p apt/lists/partial apt/cache/archives/partial
  uri=$(grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources | head -1 | awk '{print $2}')
  [ -n "$uri" ] || uri=$(grep -hs '^deb ' /etc/apt/sources.list | head -1 | awk '{print $2}')
  [ -n "$uri" ] || { echo "no apt mirror configured to fetch the kubernetes source package from" >&2; exit 3; }
  echo "deb-src $uri bookworm main" > apt/sources.list
  A=(-o "Dir::Etc::SourceList=$W/apt/sources.list" -o Dir::Etc::SourceParts=/dev/null
     -o "Dir::State::Lists=$W/apt/lists" -o "Dir::Cache=$W/apt/cache")
  apt-get "${A[@]}" update >/dev/null
  apt-get "${A[@]}" source --download-only kubernetes=1.20.5+really1.20.2-1.1+deb12u1 >/dev/null 2>&1
  tar xzf kubernetes_1.20.5+really1.20.2.orig.tar.gz
  # the vendored reflect2 v1.0.1 segfaults under Go >= 1.18 (map iteration): Debian's v1.0.2 instead
  r=$SRC/vendor/github.com/modern-go/reflect2
  rm -rf "$r" && mkdir "$r"
  cp /usr/share/gocode/src/github.com/modern-go/reflect2/*.go /usr/share/gocode/src/github.com/modern-go/reflect2/*.s "$r/"
  rm -f "$r"/*_test.go
fi
cd "$SRC"
export KUBE_GIT_VERSION=v1.20.2 KUBE_GIT_TREE_STATE=clean KUBE_GIT_COMMIT=faecb196815e248d3ecfb03c680a4507229c2a56 \
  GOFLAGS= GOPROXY=off CGO_ENABLED=0 HOME=$W/home
make WHAT='cmd/kube-apiserver cmd/kube-controller-manager cmd/kube-scheduler cmd/kubectl'
mkdir -p "$W/bin"
for b in $BINARIES; do cp "_output/bin/$b" "$W/bin/$b.new" && mv "$W/bin/$b.new" "$W/bin/$b"; done
"$W/bin/kube-apiserver" --version
