#!/usr/bin/env bash
# Runs every test of mydocker on a Debian machine, installing what the tests
# need first. This is the README's test command and what CI runs.
#
# - Debian packages: libseccomp-dev to build (the seccomp filters are
#   compiled with libseccomp), the local registry, busybox-static for the
#   test images, zstd and apache2-utils for the zstd and auth test images,
#   and a docker CLI when none is on PATH.
# - Python: docker-py (for compat-tests/exec.rs) with pip into the venv
#   target/pyvenv, before the tests cut outbound traffic.
# - Starts (or reuses) the local test registry, runs unit and compat tests,
#   and stops the registry it started.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
dpkg -s libseccomp-dev >/dev/null 2>&1 || need+=(libseccomp-dev)
command -v docker-registry >/dev/null || need+=(docker-registry)
[ -x /bin/busybox ] || need+=(busybox-static)
command -v zstd >/dev/null || need+=(zstd)
command -v htpasswd >/dev/null || need+=(apache2-utils)
command -v python3 >/dev/null || need+=(python3)
command -v ps >/dev/null || need+=(procps)        # docker top
command -v script >/dev/null || need+=(bsdutils)  # -it tests run the CLI in a terminal
python3 -c 'import ensurepip' 2>/dev/null || need+=(python3-venv)
command -v mount.fuse >/dev/null 2>&1 || true
command -v docker >/dev/null || need+=(docker.io)
if [ ${#need[@]} -gt 0 ]; then
    echo "installing Debian packages: ${need[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

if ! [ -x target/pyvenv/bin/python ] || ! target/pyvenv/bin/python -c 'import docker' 2>/dev/null; then
    python3 -m venv target/pyvenv
    target/pyvenv/bin/pip install -q docker
fi

# Tests and the daemons they start must never reach past this machine.
export HTTP_PROXY=http://127.0.0.1:9 HTTPS_PROXY=http://127.0.0.1:9 NO_PROXY=127.0.0.0/8,localhost
export http_proxy=$HTTP_PROXY https_proxy=$HTTPS_PROXY no_proxy=$NO_PROXY

state=${MYDOCKER_REGISTRY_STATE:-/tmp/mydocker-test-registry}
started_registry=0
if ! [ -f "$state/pid" ] || ! kill -0 "$(cat "$state/pid")" 2>/dev/null; then
    started_registry=1
fi
MYDOCKER_TEST_REGISTRY=$(contrib/registry/ensure.sh | tail -n 1)
export MYDOCKER_TEST_REGISTRY
echo "test registry: $MYDOCKER_TEST_REGISTRY" >&2
cleanup() {
    if [ "$started_registry" = 1 ]; then contrib/registry/stop.sh >/dev/null 2>&1 || true; fi
}
trap cleanup EXIT

cargo build --all-targets
log=$(mktemp /tmp/mydocker-test-log.XXXXXX)
status=0
cargo test --no-fail-fast -- --test-threads="${MYDOCKER_TEST_THREADS:-4}" 2>&1 | tee "$log" || status=$?
# One closing line for the whole run: every suite's counts added up.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i) ~ /^passed;?$/) p += $(i-1); if ($(i) ~ /^failed;?$/) f += $(i-1) } }
     END { printf "total: %d passed, %d failed\n", p, f }' "$log"
rm -f "$log"
exit "$status"
