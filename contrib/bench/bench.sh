#!/usr/bin/env bash
# Issue 2's benchmark: pull time of bench100 (~100 MB, 5 gzip layers) from the local
# test registry, and idle RSS, for mydockerd and, when installed, for dockerd.
#
# Usage: contrib/bench/bench.sh [--runs N] [--install-dockerd]
#   --runs N            measured pulls per daemon (default $BENCH_RUNS or 5)
#   --install-dockerd   apt-get install docker.io first if dockerd is missing
# Env:
#   BENCH_RUNS          as --runs
#   BENCH_IMAGE         repository:tag in the local registry (default bench100:latest)
#   BENCH_SETTLE        seconds to let a daemon settle before reading its RSS (default 3)
#   BENCH_WARMUP        unmeasured pulls per daemon before the runs (default 1)
#   BENCH_TMPDIR        where the private temp dir goes (default /tmp)
#   MYDOCKERD           the daemon binary (default target/release/mydockerd)
#   BENCH_OWN_CONTAINERD=1  start a private containerd for dockerd even when no system one runs
# Needs root (both daemons unpack layers with their owners), the docker CLI and a
# release build. Exits 0 whether targets are met or missed; non-zero only if
# something broke (a failed pull, a daemon that would not start, leftover layers).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# shellcheck source=contrib/bench/lib.sh
. "$REPO/contrib/bench/lib.sh"
bench_args 5 "$@"
IMAGE="${BENCH_IMAGE:-bench100:latest}"
SETTLE="${BENCH_SETTLE:-3}"
WARMUP="${BENCH_WARMUP:-1}"
MYDOCKERD="${MYDOCKERD:-$REPO/target/release/mydockerd}"

[[ "$RUNS" =~ ^[1-9][0-9]*$ ]] || die "--runs must be a positive integer, got '$RUNS'"
bench_setup
REF="$REG/$IMAGE"
log "registry $REG, image $REF, $RUNS runs per daemon, $("$DOCKER" --version)"

# timed_pull SOCK LOG: one docker pull; prints its wall time in seconds.
timed_pull() {
    local sock="$1" out="$2" t0 t1
    t0="$(now)"
    if ! DOCKER_HOST="unix://$sock" "$DOCKER" pull "$REF" >>"$out" 2>&1; then
        log "docker pull $REF failed; its output:"; tail -n 20 "$out" >&2
        die "pull failed"
    fi
    t1="$(now)"
    awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f\n", b - a }'
}

# --- mydockerd ----------------------------------------------------------------------------
# bench_mydocker: sets MY_TIMES, MY_IDLE_KB, MY_AFTER_KB, MY_HWM_KB.
bench_mydocker() {
    local d="$TMP/mydocker" sock layers blobs i t
    layers="$d/data/image/layers" blobs="$d/data/image/blobs/sha256"
    start_mydockerd "$d"
    sock="$MY_SOCK"
    sleep "$SETTLE"
    MY_IDLE_KB="$(rss_kb "$MY_PID")"
    log "mydockerd pid $MY_PID: idle RSS ${MY_IDLE_KB} kB"

    export DOCKER_HOST="unix://$sock"
    MY_TIMES=()
    # Warm-up pulls put the registry's blobs in the page cache, so the first measured
    # daemon is not penalised for a cold disk.
    for ((i = 1; i <= WARMUP + RUNS; i++)); do
        [ "$(dir_entries "$layers")" = 0 ] || die "mydocker: $layers is not empty before a pull"
        t="$(timed_pull "$sock" "$d/pull.log")"
        [ "$(dir_entries "$layers")" -gt 0 ] || die "mydocker: pull left nothing in $layers (layout changed?)"
        if ((i > WARMUP)); then MY_TIMES+=("$t"); log "mydocker pull $((i - WARMUP))/$RUNS: ${t}s"
        else log "mydocker warm-up pull: ${t}s"; fi
        ((i == WARMUP + RUNS)) && break  # keep the last pull: RSS is read with the image present
        # Every run must download every layer again: remove the image, check its layers went.
        "$DOCKER" rmi "$REF" >>"$d/pull.log" 2>&1 || die "mydocker: docker rmi $REF failed"
        [ "$(dir_entries "$layers")" = 0 ] \
            || die "mydocker: docker rmi left layer dirs in $layers: $(find "$layers" -mindepth 1 -maxdepth 1 -printf '%f ' | head -c 200)"
        [ "$(dir_entries "$blobs")" = 0 ] \
            || log "warning: mydocker: docker rmi left $(dir_entries "$blobs") blob(s) in $blobs"
    done
    unset DOCKER_HOST
    sleep "$SETTLE"
    MY_AFTER_KB="$(rss_kb "$MY_PID")" MY_HWM_KB="$(hwm_kb "$MY_PID")"
    log "mydockerd: RSS after pulls ${MY_AFTER_KB} kB, peak ${MY_HWM_KB} kB"
    stop_mydockerd
}

# --- dockerd ------------------------------------------------------------------------------
# bench_dockerd: sets DD_TIMES, DD_IDLE_KB (+ containerd), DD_AFTER_KB, DD_HWM_KB, DD_INFO.
bench_dockerd() {
    local d="$TMP/dockerd" sock data i t
    start_dockerd "$d"
    sock="$DD_SOCK" data="$d/data"
    sleep "$SETTLE"
    DD_IDLE_KB=$(($(rss_kb "$DD_PID") + $(rss_kb "$CTD_PID")))
    log "dockerd: idle RSS ${DD_IDLE_KB} kB (dockerd $(rss_kb "$DD_PID") + containerd $(rss_kb "$CTD_PID"))"

    export DOCKER_HOST="unix://$sock"
    local layerdb="$data/image/overlay2/layerdb/sha256"
    DD_TIMES=()
    for ((i = 1; i <= WARMUP + RUNS; i++)); do
        [ "$(dir_entries "$layerdb")" = 0 ] || die "dockerd: $layerdb is not empty before a pull"
        t="$(timed_pull "$sock" "$d/pull.log")"
        [ "$(dir_entries "$layerdb")" -gt 0 ] || die "dockerd: pull left nothing in $layerdb (not overlay2?)"
        if ((i > WARMUP)); then DD_TIMES+=("$t"); log "dockerd pull $((i - WARMUP))/$RUNS: ${t}s"
        else log "dockerd warm-up pull: ${t}s"; fi
        ((i == WARMUP + RUNS)) && break
        "$DOCKER" rmi "$REF" >>"$d/pull.log" 2>&1 || die "dockerd: docker rmi $REF failed"
        "$DOCKER" image prune -af >>"$d/pull.log" 2>&1 || die "dockerd: docker image prune failed"
        [ "$(dir_entries "$layerdb")" = 0 ] || die "dockerd: layers left in $layerdb after rmi + prune"
        # overlay2/ keeps only its l/ (short link names) once every layer is gone.
        [ "$(find "$data/overlay2" -mindepth 1 -maxdepth 1 ! -name l | wc -l)" = 0 ] \
            || die "dockerd: layer dirs left in $data/overlay2 after rmi + prune"
    done
    unset DOCKER_HOST
    sleep "$SETTLE"
    DD_AFTER_KB=$(($(rss_kb "$DD_PID") + $(rss_kb "$CTD_PID")))
    DD_HWM_KB=$(($(hwm_kb "$DD_PID") + $(hwm_kb "$CTD_PID")))
    log "dockerd: RSS after pulls ${DD_AFTER_KB} kB (dockerd $(rss_kb "$DD_PID") + containerd $(rss_kb "$CTD_PID")), peak ${DD_HWM_KB} kB"
    stop_dockerd
}

# --- run ----------------------------------------------------------------------------------
LOAD_START="$(load1)" NCPU="$(nproc)"
if awk -v l="$LOAD_START" -v n="$NCPU" 'BEGIN { exit !(l > n / 2) }'; then
    log "warning: load average $LOAD_START on $NCPU CPUs: other work will skew the pull times"
fi
# One daemon at a time: on a small machine they would otherwise compete for CPU and disk.
bench_mydocker
HAVE_DD=0
if [ -n "$DOCKERD" ]; then
    bench_dockerd
    HAVE_DD=1
else
    echo "dockerd not installed: skipping comparison"
fi

# --- report -------------------------------------------------------------------------------
MY_MED="$(median "${MY_TIMES[@]}")"

echo
echo "mydocker: $("$MYDOCKERD" --version 2>/dev/null || echo mydockerd); image $REF"
echo "mydocker pulls (s): ${MY_TIMES[*]}"
if [ "$HAVE_DD" = 1 ]; then
    DD_MED="$(median "${DD_TIMES[@]}")"
    echo "$DD_INFO"
    echo "dockerd pulls (s):  ${DD_TIMES[*]}"
    echo "dockerd RSS = dockerd + its containerd"
fi
echo
row metric mydocker dockerd ratio target result
row ---------------------------- ---------- ---------- -------- ---------------------- ------
my_idle_mb="$(mb "$MY_IDLE_KB")"
if [ "$HAVE_DD" = 1 ]; then
    pr="$(ratio "$MY_MED" "$DD_MED")"
    row "pull time, median (s)" "$MY_MED" "$DD_MED" "$pr" "ratio <= 0.5" "$(verdict "$MY_MED" "$(awk -v d="$DD_MED" 'BEGIN { print d * 0.5 }')")"
    row "idle RSS after start (MB)" "$my_idle_mb" "$(mb "$DD_IDLE_KB")" \
        "$(ratio "$MY_IDLE_KB" "$DD_IDLE_KB")" "mydocker <= 15 MB" "$(verdict "$((MY_IDLE_KB * 1024))" 15000000)"
    row "RSS after pulls (MB)" "$(mb "$MY_AFTER_KB")" "$(mb "$DD_AFTER_KB")" \
        "$(ratio "$MY_AFTER_KB" "$DD_AFTER_KB")" "-" "-"
    row "peak RSS, VmHWM (MB)" "$(mb "$MY_HWM_KB")" "$(mb "$DD_HWM_KB")" \
        "$(ratio "$MY_HWM_KB" "$DD_HWM_KB")" "-" "-"
else
    row "pull time, median (s)" "$MY_MED" n/a n/a "ratio <= 0.5" "n/a"
    row "idle RSS after start (MB)" "$my_idle_mb" n/a n/a "mydocker <= 15 MB" "$(verdict "$((MY_IDLE_KB * 1024))" 15000000)"
    row "RSS after pulls (MB)" "$(mb "$MY_AFTER_KB")" n/a n/a "-" "-"
    row "peak RSS, VmHWM (MB)" "$(mb "$MY_HWM_KB")" n/a n/a "-" "-"
fi
echo "load average (1 min): $LOAD_START at start, $(load1) at end, on $NCPU CPUs"
echo "(MB = 10^6 bytes; RSS from /proc/PID/status; ${RUNS} runs, ${WARMUP} warm-up; targets are informational)"
