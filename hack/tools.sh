#!/usr/bin/env bash
# Builds the pinned real tools from their official Go modules (hack/tools/*/go.mod + go.sum):
#   kube-apiserver, kube-controller-manager, kube-scheduler, kubectl  (k8s.io/kubernetes v1.36.3)
#   etcd (go.etcd.io/etcd/server/v3 v3.6.16), kwok (sigs.k8s.io/kwok v0.8.0), helm (helm.sh/helm/v3 v3.22.0)
#   cnpg-manager (CloudNativePG's operator, github.com/cloudnative-pg/cloudnative-pg v1.30.1; its
#   webhook manifests are read from the Go module cache at run time, localcluster/src/cnpg_webhooks.rs)
# into a per-user cache keyed by the hash of those go.mod/go.sum files, reusing it when present.
# (cnpg-manager is keyed by its own stamp file inside that directory, so pinning it did not
# invalidate the other tools' cache.)
# Progress goes to stderr; the last line on stdout is the absolute path of the binaries' directory.
# Environment: MALL_TOOLS_CACHE (default ~/.cache/mall-operator/tools).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
mods="$here/tools"
say() { printf '[tools] %s\n' "$*" >&2; }
die() { printf 'hack/tools.sh: %s\n' "$*" >&2; exit 1; }

command -v go >/dev/null 2>&1 || die "go is not installed (Go 1.26 is required to build the pinned tools)"

key=$(cd "$mods" && cat kubernetes/go.mod kubernetes/go.sum etcd/go.mod etcd/go.sum \
  kwok/go.mod kwok/go.sum helm/go.mod helm/go.sum | sha256sum | cut -c1-16)
root="${MALL_TOOLS_CACHE:-$HOME/.cache/mall-operator/tools}"
dest="$root/$key/bin"
mkdir -p "$dest" || die "cannot create $dest"

# One builder at a time per cache (concurrent tests or CI steps wait here).
exec 9>"$root/$key/.lock"
flock 9 || die "cannot lock $root/$key/.lock"

k8s_version=v1.36.3
ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags+=" -X $pkg.gitVersion=$k8s_version -X $pkg.gitMajor=1 -X $pkg.gitMinor=36"
  ldflags+=" -X $pkg.gitTreeState=clean"
done

build() { # build NAME MODULE_DIR EXPECTED_BINARIES... ; runs `go install tool` in the module
  local name=$1 dir=$2; shift 2
  local missing=0 b
  for b in "$@"; do [ -x "$dest/$b" ] || missing=1; done
  if [ $missing = 0 ]; then say "$name: cached"; return 0; fi
  local tmp; tmp=$(mktemp -d "$root/$key/build.XXXXXX")
  local start=$SECONDS
  say "$name: building from $(basename "$dir")/go.mod (cold builds take minutes; go output follows)"
  if ! (cd "$dir" && CGO_ENABLED=0 GOBIN="$tmp" GOFLAGS="-mod=readonly -buildvcs=false" \
        go install -trimpath -ldflags "$ldflags" tool) >&2; then
    rm -rf "$tmp"; die "$name: go install failed in $dir (see the go output above)"
  fi
  [ -e "$tmp/server" ] && mv "$tmp/server" "$tmp/etcd"   # etcd's tool binary is named 'server'
  for b in "$@"; do
    [ -x "$tmp/$b" ] || { rm -rf "$tmp"; die "$name: expected binary $b was not produced"; }
    mv -f "$tmp/$b" "$dest/$b"
  done
  rm -rf "$tmp"
  say "$name: built in $((SECONDS - start)) s"
}

build_cnpg() { # CloudNativePG's manager, stamped with the hash of hack/tools/cnpg/go.{mod,sum}
  local dir="$mods/cnpg" stamp="$dest/.cnpg-manager.key" want
  want=$(cat "$dir/go.mod" "$dir/go.sum" | sha256sum | cut -c1-16)
  if [ -x "$dest/cnpg-manager" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
    say "cnpg: cached"; return 0
  fi
  rm -f "$stamp"
  local tmp; tmp=$(mktemp -d "$root/$key/build.XXXXXX")
  local start=$SECONDS
  say "cnpg: building cnpg-manager from cnpg/go.mod (a cold build takes about 6 min; go output follows)"
  if ! (cd "$dir" && CGO_ENABLED=0 GOBIN="$tmp" GOFLAGS="-mod=readonly -buildvcs=false" \
        go install -trimpath -ldflags "-s -w" tool) >&2; then
    rm -rf "$tmp"; die "cnpg: go install failed in $dir (see the go output above)"
  fi
  [ -x "$tmp/manager" ] || { rm -rf "$tmp"; die "cnpg: expected binary manager was not produced"; }
  mv -f "$tmp/manager" "$dest/cnpg-manager"
  rm -rf "$tmp"
  echo "$want" >"$stamp"
  say "cnpg: built in $((SECONDS - start)) s"
}

say "cache $dest"
build etcd "$mods/etcd" etcd
build kwok "$mods/kwok" kwok
build helm "$mods/helm" helm
build kubernetes "$mods/kubernetes" kube-apiserver kube-controller-manager kube-scheduler kubectl
build_cnpg

kubectl_version=$("$dest/kubectl" version --client 2>&1) || true
case "$kubectl_version" in
  *"$k8s_version"*) ;;
  *) die "kubectl in $dest does not report $k8s_version (it says: ${kubectl_version%%$'\n'*})" ;;
esac
say "all tools ready"
echo "$dest"
