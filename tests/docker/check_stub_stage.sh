#!/usr/bin/env bash
# Reproduces the Dockerfile's dependency stage on the manifest, without Docker: the stage copies
# only Cargo.toml and Cargo.lock, writes stub targets with scripts/docker-stubs and runs cargo,
# which refuses a manifest whose declared targets are missing (that is how the image broke when
# benches were added). Fails when the Dockerfile stops using the stub script, or when the stubbed
# manifest does not load; a self-test proves the check fails on a missing stub.
set -euo pipefail
cd "$(dirname "$0")/../.."

fail() { echo "docker stub check FAILED: $*" >&2; exit 1; }

stage=$(awk '/^FROM .* AS build/{on=1} on && /^# 2\./{exit} on' Dockerfile)
grep -q 'COPY scripts/docker-stubs ' <<<"$stage" || fail "the Dockerfile's dependency stage no longer copies scripts/docker-stubs"
grep -q 'docker-stubs \.' <<<"$stage" || fail "the Dockerfile's dependency stage no longer runs docker-stubs"
grep -q 'COPY Cargo.toml Cargo.lock ./' <<<"$stage" || fail "the dependency stage no longer starts from Cargo.toml and Cargo.lock"
# The image is for AWS: both cargo builds (dependencies, then the crate) take the same features,
# which include aws (a mismatch would rebuild the dependency layer in the second step).
grep -q '^ARG FEATURES=aws' Dockerfile || fail "the Dockerfile's FEATURES default is not aws"
builds=$(grep -c 'cargo build --locked --profile "$PROFILE" --features "$FEATURES" --bin sqlctl' Dockerfile || true)
[ "$builds" = 2 ] || fail "the Dockerfile's two cargo builds do not both pass --features \"\$FEATURES\" (found $builds)"
! grep -vE '^[[:space:]]*#' Dockerfile | grep 'cargo build' | grep -vq -- '--features "$FEATURES"' || fail "a cargo build in the Dockerfile does not pass --features \"\$FEATURES\""

# The stage as Docker runs it: only the manifest and the lock, then the stubs. `cargo fetch`
# loads every declared target (the sources were fetched by scripts/test already: offline).
loads() { cargo fetch --locked --offline --manifest-path "$1/Cargo.toml" >/dev/null 2>"$1/err"; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir "$tmp/stage"
cp Cargo.toml Cargo.lock "$tmp/stage/"
scripts/docker-stubs "$tmp/stage"
loads "$tmp/stage" || fail "the stubbed manifest does not load: $(cat "$tmp/stage/err")"

# Self-test: a target added to the manifest gets its stub, and without it the check fails.
mkdir "$tmp/probe"
cp Cargo.toml Cargo.lock "$tmp/probe/"
printf '\n[[bench]]\nname = "probe_target"\nharness = false\n' >> "$tmp/probe/Cargo.toml"
scripts/docker-stubs "$tmp/probe"
[ -f "$tmp/probe/benches/probe_target.rs" ] || fail "self-test: no stub for a newly declared bench"
loads "$tmp/probe" || fail "self-test: the stubbed manifest with a new bench does not load: $(cat "$tmp/probe/err")"
rm "$tmp/probe/benches/probe_target.rs"
if loads "$tmp/probe"; then fail "self-test: a missing stub went unnoticed"; fi
grep -q "probe_target" "$tmp/probe/err" || fail "self-test: cargo failed for another reason: $(cat "$tmp/probe/err")"

echo "docker stub check passed: the dependency stage stubs every target Cargo.toml declares"
