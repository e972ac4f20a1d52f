#!/usr/bin/env bash
# Make sure a loopback-only test registry is running with mydocker's test images pushed.
#
# Usage: contrib/registry/ensure.sh
#   Prints `127.0.0.1:PORT` as the last stdout line; logs go to stderr.
#   State: ${MYDOCKER_REGISTRY_STATE:-/tmp/mydocker-test-registry}
#     port, pid, config.yml, registry.log, storage/, images/ (OCI layouts), pushed (stamp)
#   Idempotent and safe to run concurrently (flock). Stop with contrib/registry/stop.sh.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

STATE="${MYDOCKER_REGISTRY_STATE:-/tmp/mydocker-test-registry}"
IMAGES="$STATE/images"
mkdir -p "$STATE"
STATE="$(cd "$STATE" && pwd)"  # absolute: it ends up in config.yml and in /proc cmdline checks
exec 9>"$STATE/lock"
flock 9  # parallel test runners: one does the work, the others then reuse it

ensure_base_pkgs

# --- 1. a running registry -------------------------------------------------------------
addr=""
if [ -f "$STATE/port" ] && [ -f "$STATE/pid" ]; then
    port="$(cat "$STATE/port")" pid="$(cat "$STATE/pid")"
    if is_our_registry "$pid" "$STATE/config.yml"; then
        if [ "$(probe "127.0.0.1:$port")" = 200 ]; then
            addr="127.0.0.1:$port"
            log "reusing registry pid $pid at $addr"
        else
            log "registry pid $pid is not answering; restarting it"
            kill "$pid" 2>/dev/null || true
            sleep 0.5
        fi
    fi
fi
if [ -z "$addr" ]; then
    for attempt in 1 2 3; do
        # 5000 is the conventional port, but any free one will do (CI may have 5000 taken).
        if [ "$attempt" = 1 ] && port_free 5000; then port=5000; else port="$(free_port)"; fi
        write_config "$STATE" "$port"
        echo "$port" >"$STATE/port"
        start_registry "$STATE"
        if wait_ready "$STATE" "127.0.0.1:$port" 200; then
            addr="127.0.0.1:$port"
            log "started registry pid $(cat "$STATE/pid") at $addr"
            break
        fi
        kill "$(cat "$STATE/pid")" 2>/dev/null || true  # lost a race for the port: try another
    done
    [ -n "$addr" ] || die "could not start docker-registry (see $STATE/registry.log)"
fi

# --- 2. images built and pushed ---------------------------------------------------------
"$PY" "$IMAGES_DIR_SRC/build.py" "$IMAGES"   # cached: returns at once when inputs are unchanged

# The stamp covers the build script, the resulting digests (images.json), the pusher and
# this script (the tag list): any change to what would be pushed triggers a re-push.
want="$(cat "$IMAGES_DIR_SRC/build.py" "$IMAGES/images.json" "$IMAGES_DIR_SRC/push.py" \
    "${BASH_SOURCE[0]}" | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$STATE/pushed" 2>/dev/null || true)" != "$want" ]; then
    rm -f "$STATE/pushed"
    push() { "$PY" "$IMAGES_DIR_SRC/push.py" "$IMAGES/$1" "$addr" "${@:2}"; }
    names="$("$PY" -c 'import json,sys; print(" ".join(sorted(json.load(open(sys.argv[1]))["images"])))' "$IMAGES/images.json")"
    for name in $names; do
        case "$name" in
            # library/busybox lets the registry stand in for Docker Hub as a mirror.
            busybox) push busybox busybox:latest busybox:1.35 library/busybox:latest ;;
            *) push "$name" "$name:latest" ;;
        esac
    done
    echo "$want" >"$STATE/pushed"
    log "pushed: $names"
else
    log "images already pushed"
fi

echo "$addr"
