#!/usr/bin/env bash
# Stop a test registry started by ensure.sh or start-auth.sh and delete its state dir.
#
# Usage: contrib/registry/stop.sh [STATE_DIR]
#   STATE_DIR defaults to ${MYDOCKER_REGISTRY_STATE:-/tmp/mydocker-test-registry}.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

STATE="${1:-${MYDOCKER_REGISTRY_STATE:-/tmp/mydocker-test-registry}}"
if [ ! -d "$STATE" ]; then
    log "nothing to stop: $STATE does not exist"
    exit 0
fi
STATE="$(cd "$STATE" && pwd)"
# Refuse to rm -rf a directory that is not one of ours (e.g. a mistyped argument).
if [ ! -e "$STATE/config.yml" ] && [ ! -e "$STATE/pid" ] && [ ! -e "$STATE/lock" ]; then
    die "$STATE does not look like a registry state dir; not removing it"
fi
exec 9>"$STATE/lock"
flock -w 120 9 || log "warning: lock still held after 120 s; stopping anyway"

pid="$(cat "$STATE/pid" 2>/dev/null || true)"
# Only signal the pid if it still is our registry: pids get reused.
if is_our_registry "$pid" "$STATE/config.yml"; then
    kill "$pid"
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    log "stopped registry pid $pid"
fi
rm -rf "$STATE"
