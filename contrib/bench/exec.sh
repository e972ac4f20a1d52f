#!/usr/bin/env bash
# Issue 4's benchmark: `docker exec` latency and output throughput (1 GB written by
# dd in 64 KiB blocks; a tenth of that as short lines by yes | head), for mydockerd
# and, when installed, for dockerd (containers with --network none on both).
#
# Usage: contrib/bench/exec.sh [--runs N] [--install-dockerd]
#   --runs N            measured `docker exec c true` per daemon (default $BENCH_RUNS or 15)
#   --install-dockerd   apt-get install docker.io first if dockerd is missing
# Env:
#   BENCH_RUNS          as --runs
#   BENCH_EXEC_MB       MB an exec writes to stdout for the throughput (default 1000)
#   BENCH_TMPDIR        where the private temp dir goes (default /tmp)
#   MYDOCKERD           the daemon binary (default target/release/mydockerd)
# Needs root, the docker CLI and a release build. Exits 0 whether targets are met
# or missed; non-zero only if something broke, with the daemon's log tail.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# shellcheck source=contrib/bench/lib.sh
. "$REPO/contrib/bench/lib.sh"
bench_args 15 "$@"
EXEC_MB="${BENCH_EXEC_MB:-1000}"
MYDOCKERD="${MYDOCKERD:-$REPO/target/release/mydockerd}"

for v in RUNS EXEC_MB; do
    [[ "${!v}" =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer, got '${!v}'"
done
bench_setup
IMG="$REG/busybox:latest"
log "registry $REG, image $IMG, $RUNS runs, ${EXEC_MB} MB of exec output, $("$DOCKER" --version)"


# watch_rss PID...: samples the total RSS every 50 ms while $WATCH_FILE exists.
watch_rss() {
    local max=0 kb
    while [ -e "$WATCH_FILE" ]; do
        kb="$(sum_rss_kb "$@")"
        ((kb > max)) && max=$kb
        sleep 0.05
    done
    echo "$max"
}

# bench_daemon NAME PIDS: sets <NAME>_EXEC_MED, _MBS, _RSS_GROWTH_KB.
bench_daemon() {
    local name="$1" pids="$2" i times=() t before peak bytes
    "$DOCKER" pull -q "$IMG" >/dev/null || die "$name: pull failed"
    "$DOCKER" run -d --network none --name target "$IMG" sleep 3600 >/dev/null
    for i in 1 2; do seconds "$DOCKER" exec target true >/dev/null; done
    for ((i = 1; i <= RUNS; i++)); do times+=("$(seconds "$DOCKER" exec target true)"); done
    printf -v "${name}_EXEC_MED" '%s' "$(median "${times[@]}")"
    log "$name: exec true: ${times[*]}"

    # Bulk output in 64 KiB writes (dd), the daemon's RSS watched meanwhile.
    local blocks=$((EXEC_MB * 1000000 / 65536))
    # shellcheck disable=SC2086
    before="$(sum_rss_kb $pids)"
    WATCH_FILE="$TMP/watching"
    touch "$WATCH_FILE"
    # shellcheck disable=SC2086
    watch_rss $pids >"$TMP/peak" &
    local watcher=$!
    t="$(seconds "$DOCKER" exec target sh -c "dd if=/dev/zero bs=65536 count=$blocks 2>/dev/null")"
    rm -f "$WATCH_FILE"
    wait "$watcher"
    peak="$(cat "$TMP/peak")"
    printf -v "${name}_MBS" '%s' "$(awk -v t="$t" -v b="$blocks" 'BEGIN { printf "%.1f", b * 65536 / 1e6 / t }')"
    printf -v "${name}_RSS_GROWTH_KB" '%s' "$((peak > before ? peak - before : 0))"
    log "$name: exec of ${EXEC_MB} MB (dd bs=64k) in ${t}s; daemon RSS ${before} kB before, peak ${peak} kB"
    # Line output in small writes (busybox yes | head), a tenth of the size.
    bytes=$((EXEC_MB * 100000))
    t="$(seconds "$DOCKER" exec target sh -c "yes 0123456789012345678901234567890123456789012345678901234567890123456789 | head -c $bytes")"
    printf -v "${name}_LINES_MBS" '%s' "$(awk -v t="$t" -v b="$bytes" 'BEGIN { printf "%.1f", b / 1e6 / t }')"
    log "$name: exec of $((bytes / 1000000)) MB of lines (yes | head) in ${t}s"
    "$DOCKER" rm -f target >/dev/null
}


LOAD_START="$(load1)" NCPU="$(nproc)"
if awk -v l="$LOAD_START" -v n="$NCPU" 'BEGIN { exit !(l > n / 2) }'; then
    log "warning: load average $LOAD_START on $NCPU CPUs: other work will skew the times"
fi

start_mydockerd "$TMP/mydocker"
export DOCKER_HOST="unix://$MY_SOCK"
bench_daemon MY "$MY_PID"
unset DOCKER_HOST
stop_mydockerd

bench_dd() { bench_daemon DD "$DD_PID $CTD_PID"; }
with_dockerd bench_dd

echo
echo "mydocker: $("$MYDOCKERD" --version 2>/dev/null || echo mydockerd); image $IMG"
[ "$HAVE_DD" = 0 ] || echo "$DD_INFO; dockerd RSS = dockerd + its containerd"
echo
row metric mydocker dockerd ratio target result
row -------------------------------- ---------- ---------- -------- ---------------------- ------
if [ "$HAVE_DD" = 1 ]; then
    row "exec true, median (s)" "$MY_EXEC_MED" "$DD_EXEC_MED" "$(ratio "$MY_EXEC_MED" "$DD_EXEC_MED")" \
        "ratio <= 0.3" "$(verdict "$MY_EXEC_MED" "$(awk -v d="$DD_EXEC_MED" 'BEGIN { print d * 0.3 }')")"
    row "exec stdout ${EXEC_MB} MB (MB/s)" "$MY_MBS" "$DD_MBS" "$(ratio "$MY_MBS" "$DD_MBS")" \
        "ratio >= 2" "$(verdict "$(awk -v d="$DD_MBS" 'BEGIN { print d * 2 }')" "$MY_MBS")"
    row "exec lines $((EXEC_MB / 10)) MB (MB/s)" "$MY_LINES_MBS" "$DD_LINES_MBS" "$(ratio "$MY_LINES_MBS" "$DD_LINES_MBS")" "-" "-"
    row "daemon RSS growth (MB)" "$(mb "$MY_RSS_GROWTH_KB")" "$(mb "$DD_RSS_GROWTH_KB")" "-" \
        "mydocker < 10 MB" "$(verdict "$((MY_RSS_GROWTH_KB * 1024))" 10000000)"
else
    row "exec true, median (s)" "$MY_EXEC_MED" n/a n/a "ratio <= 0.3" n/a
    row "exec stdout ${EXEC_MB} MB (MB/s)" "$MY_MBS" n/a n/a "ratio >= 2" n/a
    row "exec lines $((EXEC_MB / 10)) MB (MB/s)" "$MY_LINES_MBS" n/a n/a "-" "-"
    row "daemon RSS growth (MB)" "$(mb "$MY_RSS_GROWTH_KB")" n/a "-" \
        "mydocker < 10 MB" "$(verdict "$((MY_RSS_GROWTH_KB * 1024))" 10000000)"
fi
echo "load average (1 min): $LOAD_START at start, $(load1) at end, on $NCPU CPUs"
echo "(MB = 10^6 bytes; RSS sampled every 50 ms from /proc/PID/status during the exec; median of"
echo " $RUNS runs after 2 warm-ups; targets are informational)"
