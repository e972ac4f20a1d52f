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
RUNS="${BENCH_RUNS:-5}"
INSTALL_DOCKERD=0
while [ $# -gt 0 ]; do
    case "$1" in
        --runs) RUNS="$2"; shift 2 ;;
        --runs=*) RUNS="${1#*=}"; shift ;;
        --install-dockerd) INSTALL_DOCKERD=1; shift ;;
        -h|--help) sed -n '2,18p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "bench: unknown argument: $1" >&2; exit 2 ;;
    esac
done
IMAGE="${BENCH_IMAGE:-bench100:latest}"
SETTLE="${BENCH_SETTLE:-3}"
WARMUP="${BENCH_WARMUP:-1}"
MYDOCKERD="${MYDOCKERD:-$REPO/target/release/mydockerd}"

log() { echo "bench: $*" >&2; }
CUR_LOG=""  # log of the daemon under test: its tail is shown when something breaks
die() {
    log "error: $*"
    if [ -n "$CUR_LOG" ] && [ -f "$CUR_LOG" ]; then
        log "last lines of $CUR_LOG:"
        tail -n 20 "$CUR_LOG" >&2 || true
    fi
    exit 1
}

[[ "$RUNS" =~ ^[1-9][0-9]*$ ]] || die "--runs must be a positive integer, got '$RUNS'"
[ "$(id -u)" = 0 ] || die "run as root (the daemons unpack layers with their owners)"
DOCKER="$(command -v docker)" || die "the docker CLI is not on PATH (Debian: docker.io or docker-ce-cli)"
[ -x "$MYDOCKERD" ] || die "$MYDOCKERD not found: build it first (cd $REPO && cargo build --release)"
# A stale binary would silently benchmark old code.
if [ -n "$(cd "$REPO" && find src Cargo.toml Cargo.lock -newer "$MYDOCKERD" -print -quit 2>/dev/null)" ]; then
    log "warning: $MYDOCKERD is older than src/: rebuild with cargo build --release for current numbers"
fi

if ! command -v dockerd >/dev/null && [ "$INSTALL_DOCKERD" = 1 ]; then
    log "installing docker.io (dockerd) for the comparison"
    # policy-rc.d 101: the package's postinst must not start a system dockerd, which
    # would create docker0 and iptables rules; we only want the binaries.
    policy_added=0
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
        policy_added=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker.io >&2 \
        || { [ "$policy_added" = 0 ] || rm -f /usr/sbin/policy-rc.d; die "apt-get install docker.io failed"; }
    [ "$policy_added" = 0 ] || rm -f /usr/sbin/policy-rc.d
fi
DOCKERD="$(command -v dockerd || true)"

# Every daemon (and the CLI) inherits these: nothing may leave the machine, while
# loopback (our registry) is reached directly.
export HTTP_PROXY=http://127.0.0.1:9 HTTPS_PROXY=http://127.0.0.1:9 NO_PROXY=127.0.0.0/8,localhost
export http_proxy=$HTTP_PROXY https_proxy=$HTTPS_PROXY no_proxy=$NO_PROXY
unset DOCKER_HOST DOCKER_CONTEXT DOCKER_TLS_VERIFY DOCKER_CERT_PATH

# --- temp dir, registry, and the cleanup that undoes both -------------------------------
TMP="$(mktemp -d "${BENCH_TMPDIR:-/tmp}/mydocker-bench.XXXXXX")"
TMP="$(cd "$TMP" && pwd -P)"
# A private CLI config: no credential helpers or contexts from the host's ~/.docker.
export DOCKER_CONFIG="$TMP/cli"
mkdir -p "$DOCKER_CONFIG"
MY_PID="" DD_PID="" CTD_PID="" OWN_CTD_PID="" started_registry=0 made_run_docker=0
REG_STATE="${MYDOCKER_REGISTRY_STATE:-/tmp/mydocker-test-registry}"

# is_proc PID COMM: alive and still the program we started (pids get reused).
is_proc() { [ -n "$1" ] && [ "$(cat "/proc/$1/comm" 2>/dev/null || true)" = "$2" ]; }

# stop_proc PID COMM: SIGTERM, up to 30 s for a clean exit, then SIGKILL.
stop_proc() {
    local pid="$1" comm="$2" i
    is_proc "$pid" "$comm" || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 1 300); do is_proc "$pid" "$comm" || return 0; sleep 0.1; done
    log "warning: $comm ($pid) ignored SIGTERM for 30 s; killing it"
    kill -KILL "$pid" 2>/dev/null || true
    sleep 0.2
}

# dockerd 20.10 always creates /run/docker/plugins (plugin discovery; not configurable).
# Remove it again if it was not there before; rmdir only ever removes empty dirs.
undo_run_docker() {
    if [ "$made_run_docker" = 1 ]; then
        rmdir /run/docker/plugins /run/docker 2>/dev/null || log "warning: could not remove /run/docker"
        made_run_docker=0
    fi
}

# Mount points at or under $TMP, deepest first (dockerd bind-mounts its data root).
mounts_under_tmp() {
    findmnt -rn -o TARGET | awk -v t="$TMP" '$0 == t || index($0, t "/") == 1' | sort -r
}

cleanup() {
    local rc=$? m
    trap - EXIT INT TERM
    stop_proc "$MY_PID" mydockerd
    stop_proc "$DD_PID" dockerd
    # dockerd stops the containerd it supervises; make sure, since we only know its pid.
    stop_proc "$CTD_PID" containerd
    stop_proc "$OWN_CTD_PID" containerd
    undo_run_docker
    for m in $(mounts_under_tmp); do umount "$m" 2>/dev/null || umount -l "$m" || true; done
    if [ -n "$(mounts_under_tmp)" ]; then
        # rm -rf through a live bind mount would delete the mount's source too.
        log "warning: still mounted under $TMP; leaving it in place:"; mounts_under_tmp >&2
    else
        rm -rf "$TMP"
    fi
    if [ "$started_registry" = 1 ]; then "$REPO/contrib/registry/stop.sh" >/dev/null 2>&1 || true; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'log interrupted; exit 130' INT
trap 'log terminated; exit 143' TERM

# Like contrib/test.sh: reuse a running registry, stop it afterwards only if we started it.
if ! [ -f "$REG_STATE/pid" ] || ! kill -0 "$(cat "$REG_STATE/pid")" 2>/dev/null; then
    started_registry=1
fi
REG="$("$REPO/contrib/registry/ensure.sh" | tail -n 1)"
[[ "$REG" =~ ^127\.0\.0\.1:[0-9]+$ ]] || die "contrib/registry/ensure.sh gave no address (got '$REG')"
REF="$REG/$IMAGE"
log "registry $REG, image $REF, $RUNS runs per daemon, $("$DOCKER" --version)"

# --- helpers -------------------------------------------------------------------------------
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
hwm_kb() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status"; }
now() { echo "$EPOCHREALTIME"; }

# wait_api SOCK PID COMM: until the daemon answers on SOCK (60 s), or it dies.
wait_api() {
    local sock="$1" pid="$2" comm="$3" i
    for i in $(seq 1 600); do
        is_proc "$pid" "$comm" || die "$comm exited during start-up"
        if [ -S "$sock" ] && DOCKER_HOST="unix://$sock" "$DOCKER" version >/dev/null 2>&1; then
            return 0
        fi
        sleep 0.1
    done
    die "$comm did not answer on $sock within 60 s"
}

# dir_entries DIR: how many entries DIR has (0 if it does not exist).
dir_entries() { find "$1" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l; }

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

median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) printf "%.3f", v[(NR + 1) / 2]; else printf "%.3f", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
mb() { awk -v k="$1" 'BEGIN { printf "%.1f", k * 1024 / 1e6 }'; }  # VmRSS kB -> MB (10^6 bytes)

# --- mydockerd ----------------------------------------------------------------------------
# bench_mydocker: sets MY_TIMES, MY_IDLE_KB, MY_AFTER_KB, MY_HWM_KB.
bench_mydocker() {
    local d="$TMP/mydocker" sock layers blobs i t
    mkdir -p "$d"
    sock="$d/mydocker.sock" layers="$d/data/image/layers" blobs="$d/data/image/blobs/sha256"
    echo '{}' >"$d/daemon.json"
    CUR_LOG="$d/mydockerd.log"
    "$MYDOCKERD" --host "unix://$sock" --data-root "$d/data" --exec-root "$d/exec" \
        --pidfile "$d/mydockerd.pid" --config-file "$d/daemon.json" </dev/null >"$CUR_LOG" 2>&1 &
    MY_PID=$!
    wait_api "$sock" "$MY_PID" mydockerd
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
    stop_proc "$MY_PID" mydockerd
    MY_PID=""
    CUR_LOG=""
}

# --- dockerd ------------------------------------------------------------------------------
# Host paths a private dockerd must not touch; compared before and after.
LEAK_PATHS=(/etc/docker /var/lib/docker /var/lib/containerd /run/docker /run/containerd
    /run/docker.sock /run/docker.pid)
host_snapshot() {
    local p
    for p in "${LEAK_PATHS[@]}"; do
        if [ -e "$p" ]; then find "$p" -maxdepth 2 2>/dev/null || true; fi
    done | sort
    ip -o link show 2>/dev/null | awk -F': ' '{print "link " $2}' | sort
}

# bench_dockerd: sets DD_TIMES, DD_IDLE_KB (+ containerd), DD_AFTER_KB, DD_HWM_KB, DD_INFO.
bench_dockerd() {
    local d="$TMP/dockerd" sock data i t ctd_args=() before after
    mkdir -p "$d"
    sock="$d/docker.sock" data="$d/data"
    [ -e /run/docker ] || made_run_docker=1
    before="$(host_snapshot)"
    # deprecated-key-path: dockerd 20.10 otherwise writes /etc/docker/key.json (no CLI flag).
    printf '{"deprecated-key-path": "%s"}\n' "$d/key.json" >"$d/daemon.json"
    # dockerd 20.10 uses /run/containerd/containerd.sock when it exists, a system daemon
    # we must neither measure nor fill; only then do we start a private one ourselves.
    # Otherwise dockerd supervises its own containerd under --exec-root/--data-root.
    if [ -S /run/containerd/containerd.sock ] || [ "${BENCH_OWN_CONTAINERD:-0}" = 1 ]; then
        log "starting a private containerd for dockerd"
        mkdir -p "$d/containerd"
        cat >"$d/containerd/config.toml" <<EOF
version = 2
root = "$d/containerd/root"
state = "$d/containerd/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$d/containerd/containerd.sock"
EOF
        containerd --config "$d/containerd/config.toml" </dev/null >"$d/containerd/log" 2>&1 &
        OWN_CTD_PID=$!
        for i in $(seq 1 300); do [ -S "$d/containerd/containerd.sock" ] && break; sleep 0.1; done
        [ -S "$d/containerd/containerd.sock" ] || { CUR_LOG="$d/containerd/log"; die "private containerd did not start"; }
        ctd_args=(--containerd "$d/containerd/containerd.sock")
    fi
    CUR_LOG="$d/dockerd.log"
    # --bridge=none and no iptables/masquerading: no docker0, no host firewall changes.
    "$DOCKERD" --data-root "$data" --exec-root "$d/exec" --pidfile "$d/dockerd.pid" \
        -H "unix://$sock" --config-file "$d/daemon.json" \
        --bridge=none --iptables=false --ip6tables=false --ip-masq=false \
        --insecure-registry "$REG" "${ctd_args[@]}" </dev/null >"$CUR_LOG" 2>&1 &
    DD_PID=$!
    wait_api "$sock" "$DD_PID" dockerd
    if [ -n "$OWN_CTD_PID" ]; then
        CTD_PID="$OWN_CTD_PID"
    else
        CTD_PID="$(cat "$d/exec/containerd/containerd.pid" 2>/dev/null || true)"
        [ -n "$CTD_PID" ] || CTD_PID="$(pgrep -P "$DD_PID" -x containerd | head -n 1 || true)"
        is_proc "$CTD_PID" containerd || die "cannot find the containerd that dockerd started"
        [ "$(awk '{print $4}' "/proc/$CTD_PID/stat")" = "$DD_PID" ] \
            || die "containerd $CTD_PID is not dockerd's child: is another one in use?"
    fi
    DD_INFO="dockerd $(DOCKER_HOST="unix://$sock" "$DOCKER" version -f '{{.Server.Version}}'), storage driver $(DOCKER_HOST="unix://$sock" "$DOCKER" info -f '{{.Driver}}')"
    log "$DD_INFO; dockerd pid $DD_PID, containerd pid $CTD_PID"
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
    stop_proc "$DD_PID" dockerd
    stop_proc "$CTD_PID" containerd
    DD_PID="" CTD_PID="" OWN_CTD_PID=""
    for i in $(mounts_under_tmp); do umount "$i" 2>/dev/null || umount -l "$i" || true; done
    CUR_LOG=""
    undo_run_docker
    after="$(host_snapshot)"
    if [ "$before" != "$after" ]; then
        log "warning: dockerd changed host paths or links:"
        diff <(echo "$before") <(echo "$after") | grep '^[<>]' >&2 || true
    fi
}

# --- run ----------------------------------------------------------------------------------
# Other work on the machine (a cargo build) skews the times: record the load to judge them.
load1() { cut -d' ' -f1 /proc/loadavg; }
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
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
# verdict A B: PASS if A <= B (unrounded inputs: 0.504 must not pass as "0.50").
verdict() { awk -v a="$1" -v b="$2" 'BEGIN { print (a <= b ? "PASS" : "MISS") }'; }

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
row() { printf '%-28s %10s %10s %8s  %-20s %s\n' "$@"; }
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
