# syntax=docker/dockerfile:1
# The sluice container image: a release build on Debian bookworm, run from distroless
# (glibc, libgcc and CA certificates; no shell, no package manager) as uid 65532.
#
#   docker build -t sluice:dev .
#
# e2e/dockerfile_check.sh (run by e2e/test.sh, so by CI) runs this file's build
# command in the repository and checks the image layout below against its output.

# Rust as CI uses it (Cargo.toml's rust-version is the minimum).
ARG RUST_VERSION=1.95

FROM docker.io/library/rust:${RUST_VERSION}-bookworm AS build
# libz-ng-sys (through pingora) builds zlib-ng with cmake; gcc and make are in the image.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends cmake \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin sluice

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/sluice /usr/local/bin/sluice
USER 65532:65532
# 8080 HTTP, 8443 HTTPS, 10254 admin (/healthz, /readyz, /metrics).
EXPOSE 8080 8443 10254
ENTRYPOINT ["/usr/local/bin/sluice"]
