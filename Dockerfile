# syntax=docker/dockerfile:1
#
# sqlctl container image: `sqlctl controller` on a distroless runtime, as a non-root user.
#
#   docker build -t sqlctl .                              # release profile (default, see PROFILE)
#   docker build --build-arg PROFILE=quick -t sqlctl .    # faster build, for dev/test images
#   docker run --rm sqlctl --help                         # any subcommand works: the entrypoint is sqlctl
#   docker run -e SQLCTL_BACKEND=aws -e AWS_REGION=… -e SQLCTL_TABLE=… sqlctl   # the controller
#
# Reproducible inputs:
#   * Base images are pinned by tag (Rust toolchain and Debian release). For byte-for-byte
#     reproducible pulls, also pin them by digest: resolve the current digests with
#       docker buildx imagetools inspect rust:1.95.0-slim-bookworm
#       docker buildx imagetools inspect gcr.io/distroless/cc-debian12:nonroot
#     and write them as `FROM rust:1.95.0-slim-bookworm@sha256:<digest>` (the tag stays for
#     humans; the digest wins). Let a bot (Renovate/Dependabot "docker" ecosystem) bump both.
#   * Dependencies come from Cargo.lock only (`--locked`: a stale lock fails the build instead of
#     resolving new versions).
#   * The builder and the runtime are the same Debian release (bookworm = Debian 12), so the
#     binary's glibc matches the runtime's.
#
# Layers: the dependency graph (~450 crates: DataFusion, the AWS SDKs, rusqlite's bundled SQLite,
# aws-lc) is compiled in its own layer from Cargo.toml + Cargo.lock and stub sources, so editing
# src/ rebuilds only this crate; the dependency layer is rebuilt only when Cargo.toml, Cargo.lock
# or the toolchain change. With BuildKit, also keep that layer between CI runs
# (`docker buildx build --cache-to type=registry,ref=…,mode=max --cache-from type=registry,ref=…`,
# or `type=gha` on GitHub Actions): mode=max is needed because the layer is in the builder stage.

ARG RUST_VERSION=1.95.0
ARG DEBIAN_RELEASE=bookworm

# ---------------------------------------------------------------------------------------------
# Build stage
FROM rust:${RUST_VERSION}-slim-${DEBIAN_RELEASE} AS build

# Which Cargo profile builds the shipped binary. Measured on 2 cores (README / DESIGN.md §7):
#   release: opt-level 3, no LTO: ~19 min cold. The default: the image is built rarely (on a
#            merge or a tag) and, with the dependency layer cached, a source-only change
#            rebuilds just this crate. It ships so that the controller gets the most out of a
#            small Fargate task (the Terraform default is 0.5 vCPU) for its CPU work: JSON,
#            SigV4 signing, sqlparser, scan estimates, and DataFusion for the local engine.
#   quick:   opt-level 1, codegen-units 256: ~11.5 min cold, ~9 % lower throughput on the
#            DataFusion-bound benchmark (1,425 vs 1,566 q/s). On --backend aws the controller
#            waits on DynamoDB/Athena/Bedrock far more than it computes, so `quick` is a fine
#            choice for dev, test or preview images where build time matters more.
# (Thin LTO is deliberately not used: it did not finish within 50 minutes on 2 cores.)
ARG PROFILE=release
# Cargo features of the shipped binary: the image runs the controller on AWS, so `aws` (the
# DynamoDB/Glue/Athena/SQS/S3/Bedrock backends, off in a plain `cargo build`) is always on;
# add `otlp` or `png` with --build-arg FEATURES=aws,otlp.
ARG FEATURES=aws
# Symbols are stripped from the shipped binary (a smaller image). A panic message still names its
# file and line (that needs no symbols); a backtrace would show addresses only. Cargo.toml is left
# alone, so local builds keep their symbols.
ENV CARGO_PROFILE_RELEASE_STRIP=symbols \
    CARGO_PROFILE_QUICK_STRIP=symbols \
    CARGO_TERM_COLOR=never \
    CARGO_INCREMENTAL=0

# The C parts of the dependency graph (SQLite via rusqlite "bundled", aws-lc-sys, zstd-sys, psm)
# build with the gcc/libc6-dev that the slim Rust image already has; aws-lc-sys needs no cmake on
# x86_64/aarch64 Linux.
WORKDIR /src

# 1. Dependencies only: the manifest, the lock and stub targets. `cargo` refuses a manifest whose
#    declared targets are missing, so scripts/docker-stubs writes a stub for every target
#    Cargo.toml declares (read from the manifest: a new bench needs no change here; scripts/test
#    checks that the stubbed manifest loads). The stub crate's own artifacts are removed at the
#    end, so that step 2 always compiles the real sources whatever modification times COPY gives
#    them.
COPY Cargo.toml Cargo.lock ./
COPY scripts/docker-stubs /usr/local/bin/docker-stubs
RUN set -eux; \
    case "$PROFILE" in release|quick) ;; *) echo "PROFILE must be release or quick, not $PROFILE" >&2; exit 1;; esac; \
    case ",$FEATURES," in *,aws,*) ;; *) echo "FEATURES must include aws (the image is for AWS), not $FEATURES" >&2; exit 1;; esac; \
    docker-stubs .; \
    cargo fetch --locked; \
    cargo build --locked --profile "$PROFILE" --features "$FEATURES" --bin sqlctl; \
    cargo clean --locked --profile "$PROFILE" -p sqlctl; \
    rm -rf src benches tests examples

# 2. The crate itself. build.rs records the commit for `sqlctl version` and `sqlctl_build_info`:
#    the build context has no .git, so pass it (`--build-arg SQLCTL_BUILD_COMMIT=$(git rev-parse HEAD)`).
ARG SQLCTL_BUILD_COMMIT=""
ENV SQLCTL_BUILD_COMMIT=${SQLCTL_BUILD_COMMIT}
COPY build.rs ./
COPY src ./src
COPY benches ./benches
RUN set -eux; \
    cargo build --locked --profile "$PROFILE" --features "$FEATURES" --bin sqlctl; \
    install -D -m 0755 "target/$PROFILE/sqlctl" /out/sqlctl; \
    /out/sqlctl --version; \
    /out/sqlctl version --client | grep -q 'features: [^ ]*aws'; \
    /out/sqlctl healthcheck --help >/dev/null

# ---------------------------------------------------------------------------------------------
# Runtime stage: distroless "cc" = glibc, libgcc_s, libstdc++ (nothing of it used beyond libc
# and libgcc_s), tzdata and ca-certificates, no shell, no package manager. ca-certificates is
# required: both TLS stacks in the binary trust the operating system's roots (the AWS SDKs
# through rustls-native-certs, reqwest for webhooks / OpenAI-compatible servers through
# rustls-platform-verifier), not a compiled-in root list. The `nonroot` tag runs as uid/gid
# 65532 with HOME=/home/nonroot.
FROM gcr.io/distroless/cc-debian12:nonroot

ARG PROFILE=release
LABEL org.opencontainers.image.title="sqlctl" \
      org.opencontainers.image.description="A declarative controller for human-approved text-to-SQL on a data lake" \
      org.opencontainers.image.licenses="Apache-2.0" \
      dev.sqlctl.cargo-profile="${PROFILE}"

COPY --from=build /out/sqlctl /usr/local/bin/sqlctl

# Defaults for running in a container; every one can be overridden with -e / the task definition.
#   * JSON logs, one object per line (CloudWatch Logs, and the EMF metric lines with
#     --metrics-emf).
#   * /healthz, /readyz and /metrics on port 9090 of every interface, so the orchestrator and a
#     Prometheus scraper can reach them. Never publish this port beyond the VPC.
#   * SQLCTL_HOME under the non-root user's home: only `--backend local` writes there (state.db,
#     results); `--backend aws` (what a deployment sets with SQLCTL_BACKEND=aws) writes nothing
#     to disk, so the root filesystem may be mounted read-only.
ENV SQLCTL_LOG_FORMAT=json \
    SQLCTL_METRICS_ADDR=0.0.0.0:9090 \
    SQLCTL_HOME=/home/nonroot/.sqlctl
EXPOSE 9090

USER 65532:65532
WORKDIR /home/nonroot

# No shell and no curl in this image: `sqlctl healthcheck` probes the controller's /healthz
# itself (exit 0 healthy, non-zero otherwise). Orchestrators that ignore the image's
# HEALTHCHECK (Amazon ECS does) should run the same command in their own health check, e.g. an
# ECS container healthCheck of ["CMD", "/usr/local/bin/sqlctl", "healthcheck"]. The start period
# covers loading the AWS configuration; /healthz answers as soon as the server is bound, also on
# a standby (leadership shows on /readyz and the sqlctl_leader metric, not here).
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["/usr/local/bin/sqlctl", "healthcheck"]

# SIGTERM starts a graceful drain (in-flight reconciles finish, the lease is released, within
# the controller's 25 s drain timeout): give the container at least 30 s to stop.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/sqlctl"]
CMD ["controller"]
