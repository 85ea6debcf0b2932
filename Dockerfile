# The mall-operator image: one statically linked binary, run as 65532:65532, nothing else — no
# shell, no package manager, no libc, no CA bundle (the API server's CA comes from the
# kubeconfig or the ServiceAccount). See docs/install.md#image.
#
# Default stage (the last one, `from-host`): the binary is built on the host and this file only
# copies it in, so building the image needs no remote image at all:
#
#   hack/image.sh image localhost/mall-operator:dev
#
# which runs `cargo build --release --locked -p mall-operator --target x86_64-unknown-linux-gnu`
# with `-C target-feature=+crt-static` (Rust 1.95.0), checks the result is static, puts it alone
# in a build context and runs `podman build --timestamp "$SOURCE_DATE_EPOCH"` on this file.
#
# Stage `from-source` (for CI elsewhere, with registry access): builds the binary inside a
# pinned Rust image, repository root as the context:
#
#   docker build --target from-source --build-arg SOURCE_DATE_EPOCH=$(git log -1 --format=%ct) .
#
# BASE (default scratch) swaps the base image of both, e.g. for a CA bundle:
#   --build-arg BASE=gcr.io/distroless/static-debian12:nonroot

ARG BASE=scratch
ARG RUST_IMAGE=docker.io/library/rust:1.95.0-bookworm

FROM ${RUST_IMAGE} AS build
ARG SOURCE_DATE_EPOCH
WORKDIR /src
COPY . .
RUN RUSTFLAGS="-C target-feature=+crt-static -C strip=symbols --remap-path-prefix=/src=/src --remap-path-prefix=/usr/local/cargo=/cargo --remap-path-prefix=/target=/target" \
    CARGO_TARGET_DIR=/target cargo build --release --locked -p mall-operator --target x86_64-unknown-linux-gnu \
 && cp /target/x86_64-unknown-linux-gnu/release/mall-operator /mall-operator

FROM ${BASE} AS from-source
COPY --from=build --chmod=0555 /mall-operator /mall-operator
USER 65532:65532
ENTRYPOINT ["/mall-operator"]

FROM ${BASE} AS from-host
COPY --chmod=0555 mall-operator /mall-operator
USER 65532:65532
ENTRYPOINT ["/mall-operator"]
