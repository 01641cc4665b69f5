#!/usr/bin/env bash
# The release packaging, checked on the debug binary the suite just built: the archive holds a
# runnable sqlctl of Cargo.toml's version, its checksum verifies, and the release workflow
# packages with the same script for every target the README lists.
set -euo pipefail
cd "$(dirname "$0")/../.."
fail() { echo "release package check FAILED: $*" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
host=$(rustc -vV | awk '/^host:/{print $2}')
archive=$(scripts/package-release "$host" target/debug/sqlctl "$tmp/dist")
[ -f "$archive" ] || fail "no archive at $archive"
(cd "$tmp/dist" && sha256sum -c --quiet "$(basename "$archive").sha256") || fail "the checksum does not verify"
tar -C "$tmp" -xzf "$archive"
version=$(awk -F'"' '/^version = /{print $2; exit}' Cargo.toml)
dir="$tmp/sqlctl-$version-$host"
[ -x "$dir/sqlctl" ] || fail "the archive has no executable sqlctl"
[ -f "$dir/README.md" ] || fail "the archive has no README.md"
"$dir/sqlctl" version --client | grep -q "^Client Version: sqlctl $version " || fail "the packaged binary does not report version $version"
# Two runs give the same bytes (reproducible archive).
again=$(scripts/package-release "$host" target/debug/sqlctl "$tmp/again")
cmp -s "$archive" "$again" || fail "packaging is not reproducible"
wf=.github/workflows/release.yml
for t in x86_64-unknown-linux-gnu aarch64-unknown-linux-gnu x86_64-apple-darwin aarch64-apple-darwin; do
    grep -q "target: $t" "$wf" || fail "$wf does not build $t"
    grep -q "$t" README.md || fail "README's install section does not list $t"
done
grep -q 'scripts/package-release' "$wf" || fail "$wf does not package with scripts/package-release"
grep -Eq 'cargo build .*--features aws' "$wf" || fail "$wf does not build the release binary with --features aws"
"$dir/sqlctl" version --client | grep -Eq 'features: ([a-z0-9]+,)*aws[,)]' || fail "the packaged binary was built without the aws feature"
grep -q "tags:" "$wf" || fail "$wf is not triggered by tags"
echo "release package check passed ($(basename "$archive"))"
