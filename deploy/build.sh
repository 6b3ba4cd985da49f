#!/usr/bin/env bash
# Builds the release binary into OUT_DIR (default ./out): the build stage of
# deploy/Dockerfile runs exactly this, and deploy/check.sh runs it in CI
# (with PROFILE=dev, to reuse CI's debug build).
#
#   deploy/build.sh [OUT_DIR]        PROFILE=release (default) or dev
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-out}"
profile="${PROFILE:-release}"
cargo build --locked --profile "$profile" --bin offer-bandit
case "$profile" in
  dev) dir=debug ;;
  *) dir="$profile" ;;
esac
mkdir -p "$out"
install -m 0755 "target/$dir/offer-bandit" "$out/offer-bandit"
# The image carries no debugger: line tables stay in the build stage.
if [ "$profile" = release ]; then
  strip --strip-debug "$out/offer-bandit"
fi
"$out/offer-bandit" --version
