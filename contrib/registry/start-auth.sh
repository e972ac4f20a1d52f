#!/usr/bin/env bash
# Start a second test registry that requires HTTP Basic auth (htpasswd, bcrypt),
# with busybox pushed as busybox:latest and library/busybox:latest.
#
# Usage: contrib/registry/start-auth.sh STATE_DIR
#   Credentials: testuser / testpass. Prints `127.0.0.1:PORT` as the last stdout line.
#   Idempotent for the same STATE_DIR. Stop with: contrib/registry/stop.sh STATE_DIR
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[ $# -eq 1 ] || die "usage: $0 STATE_DIR"
AUTH_USER=testuser AUTH_PASS=testpass
STATE="$1"
mkdir -p "$STATE"
STATE="$(cd "$STATE" && pwd)"
exec 9>"$STATE/lock"
flock 9

ensure_base_pkgs
# Registry htpasswd needs bcrypt, which Python's stdlib lacks; htpasswd -B provides it.
ensure_pkgs apache2-utils

addr=""
if [ -f "$STATE/port" ] && is_our_registry "$(cat "$STATE/pid" 2>/dev/null || true)" "$STATE/config.yml" \
    && [ "$(probe "127.0.0.1:$(cat "$STATE/port")" -u "$AUTH_USER:$AUTH_PASS")" = 200 ]; then
    addr="127.0.0.1:$(cat "$STATE/port")"
    log "reusing auth registry at $addr"
else
    htpasswd -Bbn "$AUTH_USER" "$AUTH_PASS" >"$STATE/htpasswd"
    for attempt in 1 2 3; do
        port="$(free_port)"  # never 5000: that one is for ensure.sh's registry
        write_config "$STATE" "$port" "$STATE/htpasswd"
        echo "$port" >"$STATE/port"
        start_registry "$STATE"
        if wait_ready "$STATE" "127.0.0.1:$port" 200 -u "$AUTH_USER:$AUTH_PASS"; then
            addr="127.0.0.1:$port"
            break
        fi
        kill "$(cat "$STATE/pid")" 2>/dev/null || true
    done
    [ -n "$addr" ] || die "could not start auth registry (see $STATE/registry.log)"
    log "started auth registry pid $(cat "$STATE/pid") at $addr"
fi

# Only busybox is needed here; HEAD checks make a repeated push nearly free.
"$PY" "$IMAGES_DIR_SRC/build.py" "$STATE/images" --only busybox
"$PY" "$IMAGES_DIR_SRC/push.py" "$STATE/images/busybox" "$addr" busybox:latest library/busybox:latest \
    --user "$AUTH_USER" --password "$AUTH_PASS"

echo "$addr"
