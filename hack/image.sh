#!/usr/bin/env bash
# Builds the operator image without pulling anything (see docs/install.md#image):
#   hack/image.sh binary        the static mall-operator binary; prints its path
#   hack/image.sh image [TAG]   the binary, then the image TAG (default localhost/mall-operator:dev)
#                               with podman (runc, as measured on this kind of machine) or docker
#
# Reproducible: the pinned Rust toolchain (PINNED_RUST below; a warning names any other),
# `--locked`, build paths remapped (/src, /cargo, /target), SOURCE_DATE_EPOCH (default: the last
# commit's time) as the image's timestamps. The binary is linked statically against glibc
# (crt-static) and checked: no interpreter, no shared libraries.
set -euo pipefail
cd "$(dirname "$0")/.."

PINNED_RUST="1.95.0"
TARGET="x86_64-unknown-linux-gnu"

repo="$(pwd -P)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/mall-operator/target}"
cargo_home="${CARGO_HOME:-$HOME/.cargo}"
export SOURCE_DATE_EPOCH="${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 0)}"

rust="$(rustc --version | awk '{print $2}')"
if [ "$rust" != "$PINNED_RUST" ]; then
  echo "hack/image.sh: WARNING: rustc $rust, not the pinned $PINNED_RUST: the binary is not reproducible against images built with $PINNED_RUST" >&2
fi

build_binary() {
  RUSTFLAGS="-C target-feature=+crt-static -C strip=symbols --remap-path-prefix=$repo=/src --remap-path-prefix=$cargo_home=/cargo --remap-path-prefix=$CARGO_TARGET_DIR=/target" \
    cargo build --release --locked -p mall-operator --target "$TARGET" >&2
  local bin="$CARGO_TARGET_DIR/$TARGET/release/mall-operator"
  # A static executable has no program interpreter and needs no shared library.
  if LC_ALL=C readelf -l "$bin" | grep -q "Requesting program interpreter" || LC_ALL=C readelf -d "$bin" | grep -q "(NEEDED)"; then
    echo "hack/image.sh: $bin is dynamically linked:" >&2
    ldd "$bin" >&2 || true
    exit 1
  fi
  echo "$bin"
}

case "${1:-}" in
  binary)
    build_binary
    ;;
  image)
    tag="${2:-localhost/mall-operator:dev}"
    bin="$(build_binary)"
    context="$(mktemp -d)"
    trap 'rm -rf "$context"' EXIT
    cp "$bin" "$context/mall-operator"
    labels=(--label "org.opencontainers.image.revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)"
      --label "org.opencontainers.image.source=https://github.com/mall-operator/mall-operator"
      --label "io.mall-operator.rustc=$rust")
    if command -v podman >/dev/null 2>&1; then
      conf="$context/containers.conf"
      printf '[containers]\ndefault_ulimits = []\n' >"$conf"
      CONTAINERS_CONF="$conf" podman --runtime runc build --timestamp "$SOURCE_DATE_EPOCH" \
        "${labels[@]}" -f "$repo/Dockerfile" -t "$tag" "$context" >&2
    else
      docker build --build-arg SOURCE_DATE_EPOCH "${labels[@]}" -f "$repo/Dockerfile" -t "$tag" "$context" >&2
    fi
    echo "$tag"
    ;;
  *)
    sed -n '2,5p' "$0" >&2
    exit 2
    ;;
esac
