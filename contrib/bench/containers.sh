#!/usr/bin/env bash
# Issue 3's benchmark: container life cycle speed and memory, for mydockerd and,
# when installed, for dockerd (with --network none on both: dockerd runs without
# a bridge here so that it touches no host networking).
#
# Usage: contrib/bench/containers.sh [--runs N] [--install-dockerd]
#   --runs N            measured `docker run --rm` per daemon (default $BENCH_RUNS or 15)
#   --install-dockerd   apt-get install docker.io first if dockerd is missing
# Env:
#   BENCH_RUNS          as --runs
#   BENCH_PARALLEL      containers started at once (default 50) ...
#   BENCH_JOBS          ... by this many CLIs in parallel (default 8)
#   BENCH_LOG_MB        MB a container writes for the logs throughput (default 100)
#   BENCH_SETTLE        seconds before RSS readings (default 2)
#   BENCH_TMPDIR        where the private temp dir goes (default /tmp)
#   MYDOCKERD           the daemon binary (default target/release/mydockerd)
# Needs root, the docker CLI and a release build. Exits 0 whether targets are met
# or missed; non-zero only if something broke, with the daemon's log tail.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# shellcheck source=contrib/bench/lib.sh
. "$REPO/contrib/bench/lib.sh"
bench_args 15 "$@"
PARALLEL="${BENCH_PARALLEL:-50}"
JOBS="${BENCH_JOBS:-8}"
LOG_MB="${BENCH_LOG_MB:-100}"
SETTLE="${BENCH_SETTLE:-2}"
MYDOCKERD="${MYDOCKERD:-$REPO/target/release/mydockerd}"

for v in RUNS PARALLEL JOBS LOG_MB; do
    [[ "${!v}" =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer, got '${!v}'"
done
bench_setup
IMG="$REG/busybox:latest"
log "registry $REG, image $IMG, $RUNS runs, $PARALLEL containers by $JOBS jobs, $("$DOCKER" --version)"


# sum_smaps_kb FIELD PID...: total of a smaps_rollup field (Pss, Private_Dirty, ...).
sum_smaps_kb() {
    local field="$1" t=0 p v
    shift
    for p in "$@"; do
        v="$(awk -v f="$field:" '$1 == f {print $2}' "/proc/$p/smaps_rollup" 2>/dev/null || true)"
        t=$((t + ${v:-0}))
    done
    echo "$t"
}

# start_many: PARALLEL detached sleepers, JOBS CLIs at a time.
start_many() {
    seq 1 "$PARALLEL" | xargs -P "$JOBS" -I{} \
        "$DOCKER" run -d --network none --name "bench{}" "$IMG" sleep 600
}

# bench_daemon NAME: the measurements against the daemon in DOCKER_HOST; sets
# <NAME>_RUN_MED, _MANY_S, _DAEMON_KB, _PER_CT_KB, _LOGS_MBS. $2: a pattern for
# pgrep -f matching the per-container processes of this daemon.
bench_daemon() {
    local name="$1" pattern="$2" daemon_pids="$3" i t times=() running pids kb
    "$DOCKER" pull -q "$IMG" >/dev/null || die "$name: pull failed"
    for i in 1 2; do seconds "$DOCKER" run --rm --network none "$IMG" true >/dev/null; done
    for ((i = 1; i <= RUNS; i++)); do times+=("$(seconds "$DOCKER" run --rm --network none "$IMG" true)"); done
    printf -v "${name}_RUN_MED" '%s' "$(median "${times[@]}")"
    log "$name: run --rm true: ${times[*]}"
    [ -z "$("$DOCKER" ps -aq)" ] || die "$name: run --rm left containers"

    t="$(seconds start_many)"
    printf -v "${name}_MANY_S" '%s' "$t"
    running="$("$DOCKER" ps -q | wc -l)"
    [ "$running" = "$PARALLEL" ] || die "$name: $running of $PARALLEL containers running"
    sleep "$SETTLE"
    # shellcheck disable=SC2086 # pids are words
    kb="$(sum_rss_kb $daemon_pids)"
    printf -v "${name}_DAEMON_KB" '%s' "$kb"
    pids="$(pgrep -f "$pattern" || true)"
    # shellcheck disable=SC2086
    printf -v "${name}_PER_CT_KB" '%s' "$(($(sum_rss_kb $pids) / PARALLEL))"
    # RSS counts the binary's and libc's shared pages in full for every
    # process; PSS shares them out, and the private pages are what each
    # container really adds.
    # shellcheck disable=SC2086
    printf -v "${name}_PER_CT_PSS" '%s' "$(($(sum_smaps_kb Pss $pids) / PARALLEL))"
    # shellcheck disable=SC2086
    printf -v "${name}_PER_CT_PRIV" '%s' "$((($(sum_smaps_kb Private_Dirty $pids) + $(sum_smaps_kb Private_Clean $pids)) / PARALLEL))"
    log "$name: $PARALLEL containers started in ${t}s; daemon RSS ${kb} kB; $(echo "$pids" | wc -w) per-container processes"
    # shellcheck disable=SC2046
    "$DOCKER" rm -f $("$DOCKER" ps -aq) >/dev/null

    local bytes=$((LOG_MB * 1000000))
    "$DOCKER" run -d --network none --name logger "$IMG" sh -c \
        "yes 012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789012 | head -c $bytes" >/dev/null
    [ "$("$DOCKER" wait logger)" = 0 ] || die "$name: the logger failed"
    seconds "$DOCKER" logs logger >/dev/null  # warm the page cache
    t="$(seconds "$DOCKER" logs logger)"
    printf -v "${name}_LOGS_MBS" '%s' "$(awk -v t="$t" -v m="$LOG_MB" 'BEGIN { printf "%.1f", m / t }')"
    log "$name: docker logs of ${LOG_MB} MB in ${t}s"
    "$DOCKER" rm -f logger >/dev/null
}

LOAD_START="$(load1)" NCPU="$(nproc)"
if awk -v l="$LOAD_START" -v n="$NCPU" 'BEGIN { exit !(l > n / 2) }'; then
    log "warning: load average $LOAD_START on $NCPU CPUs: other work will skew the times"
fi

start_mydockerd "$TMP/mydocker"
export DOCKER_HOST="unix://$MY_SOCK"
# Our per-container process is the monitor (`mydockerd __monitor <bundle>`).
bench_daemon MY "__monitor $TMP/mydocker/" "$MY_PID"
unset DOCKER_HOST
stop_mydockerd

# dockerd's per-container process is containerd's shim.
bench_dd() { bench_daemon DD "containerd-shim.*$TMP/dockerd" "$DD_PID $CTD_PID"; }
with_dockerd bench_dd

echo
echo "mydocker: $("$MYDOCKERD" --version 2>/dev/null || echo mydockerd); image $IMG"
[ "$HAVE_DD" = 0 ] || echo "$DD_INFO; dockerd RSS = dockerd + its containerd"
echo
row metric mydocker dockerd ratio target result
row -------------------------------- ---------- ---------- -------- ---------------------- ------
dd() { if [ "$HAVE_DD" = 1 ]; then echo "$1"; else echo n/a; fi; }
vs() { if [ "$HAVE_DD" = 1 ]; then ratio "$1" "$2"; else echo n/a; fi; }
at_most() { if [ "$HAVE_DD" = 1 ]; then verdict "$1" "$(awk -v d="$2" -v f="$3" 'BEGIN { print d * f }')"; else echo n/a; fi; }
row "run --rm true, median (s)" "$MY_RUN_MED" "$(dd "${DD_RUN_MED:-}")" "$(vs "$MY_RUN_MED" "${DD_RUN_MED:-0}")" \
    "ratio <= 0.15" "$(at_most "$MY_RUN_MED" "${DD_RUN_MED:-0}" 0.15)"
row "$PARALLEL run -d, $JOBS jobs (s)" "$MY_MANY_S" "$(dd "${DD_MANY_S:-}")" "$(vs "$MY_MANY_S" "${DD_MANY_S:-0}")" \
    "ratio <= 0.2" "$(at_most "$MY_MANY_S" "${DD_MANY_S:-0}" 0.2)"
row "per container RSS (MB)" "$(mb "$MY_PER_CT_KB")" "$(dd "$(mb "${DD_PER_CT_KB:-0}")")" \
    "$(vs "$MY_PER_CT_KB" "${DD_PER_CT_KB:-0}")" "mydocker <= 1 MB" "$(verdict "$((MY_PER_CT_KB * 1024))" 1000000)"
row "per container PSS (MB)" "$(mb "$MY_PER_CT_PSS")" "$(dd "$(mb "${DD_PER_CT_PSS:-0}")")" \
    "$(vs "$MY_PER_CT_PSS" "${DD_PER_CT_PSS:-0}")" "-" "-"
row "per container private (MB)" "$(mb "$MY_PER_CT_PRIV")" "$(dd "$(mb "${DD_PER_CT_PRIV:-0}")")" \
    "$(vs "$MY_PER_CT_PRIV" "${DD_PER_CT_PRIV:-0}")" "-" "-"
row "daemon RSS, $PARALLEL running (MB)" "$(mb "$MY_DAEMON_KB")" "$(dd "$(mb "${DD_DAEMON_KB:-0}")")" \
    "$(vs "$MY_DAEMON_KB" "${DD_DAEMON_KB:-0}")" "mydocker <= 30 MB" "$(verdict "$((MY_DAEMON_KB * 1024))" 30000000)"
row "docker logs ${LOG_MB} MB (MB/s)" "$MY_LOGS_MBS" "$(dd "${DD_LOGS_MBS:-}")" "$(vs "$MY_LOGS_MBS" "${DD_LOGS_MBS:-0}")" \
    "ratio >= 10" "$(if [ "$HAVE_DD" = 1 ]; then verdict "$(awk -v d="$DD_LOGS_MBS" 'BEGIN { print d * 10 }')" "$MY_LOGS_MBS"; else echo n/a; fi)"
echo "load average (1 min): $LOAD_START at start, $(load1) at end, on $NCPU CPUs"
echo "(MB = 10^6 bytes; RSS from /proc/PID/status, PSS and private pages from smaps_rollup; per"
echo " container = the monitors' (mydocker) or shims' (dockerd) total / $PARALLEL; median of $RUNS"
echo " runs after 2 warm-ups; targets are informational)"
