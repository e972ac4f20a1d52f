# Shared by the benchmarks in contrib/bench: checks, the private temp dir, the
# local registry, starting and stopping a private mydockerd or dockerd, and
# the cleanup that leaves nothing behind (containers, daemons, mounts, the
# registry if we started it). Source it, set the variables below, then call
# bench_setup.
#
# Caller variables: REPO, MYDOCKERD (and RUNS, INSTALL_DOCKERD from bench_args).
# Sets: DOCKER, DOCKERD (empty if not installed), TMP, REG (127.0.0.1:PORT),
#   and, while a daemon runs, MY_PID/MY_SOCK or DD_PID/CTD_PID/DD_SOCK/DD_INFO.

log() { echo "bench: $*" >&2; }

# bench_args DEFAULT_RUNS "$@": the options every benchmark takes (--runs N,
# --install-dockerd, -h); sets RUNS (BENCH_RUNS overrides the default) and
# INSTALL_DOCKERD. -h prints the script's leading comment.
bench_args() {
    RUNS="${BENCH_RUNS:-$1}"
    INSTALL_DOCKERD=0
    shift
    while [ $# -gt 0 ]; do
        case "$1" in
            --runs) RUNS="$2"; shift 2 ;;
            --runs=*) RUNS="${1#*=}"; shift ;;
            --install-dockerd) INSTALL_DOCKERD=1; shift ;;
            -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
            *) echo "bench: unknown argument: $1" >&2; exit 2 ;;
        esac
    done
}

# with_dockerd FN: runs FN against a private dockerd (DOCKER_HOST set), then
# stops it; HAVE_DD=1. Without dockerd installed: HAVE_DD=0 and a note.
with_dockerd() {
    HAVE_DD=0
    if [ -z "$DOCKERD" ]; then
        echo "dockerd not installed: skipping comparison"
        return 0
    fi
    start_dockerd "$TMP/dockerd"
    export DOCKER_HOST="unix://$DD_SOCK"
    "$1"
    unset DOCKER_HOST
    log "$DD_INFO"
    stop_dockerd
    HAVE_DD=1
}
CUR_LOG=""  # log of the daemon under test: its tail is shown when something breaks
die() {
    log "error: $*"
    if [ -n "$CUR_LOG" ] && [ -f "$CUR_LOG" ]; then
        log "last lines of $CUR_LOG:"
        tail -n 20 "$CUR_LOG" >&2 || true
    fi
    exit 1
}

MY_PID="" MY_SOCK="" DD_PID="" DD_SOCK="" CTD_PID="" OWN_CTD_PID="" started_registry=0 made_run_docker=0
DD_INFO=""

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

# remove_containers SOCK PID COMM: docker rm -f every container of a daemon still
# running, then its unused user networks.
remove_containers() {
    local sock="$1" pid="$2" comm="$3" ids
    [ -n "$sock" ] && is_proc "$pid" "$comm" || return 0
    ids="$(DOCKER_HOST="unix://$sock" "$DOCKER" ps -aq 2>/dev/null || true)"
    if [ -n "$ids" ]; then
        # shellcheck disable=SC2086 # one ID per word
        DOCKER_HOST="unix://$sock" timeout 120 "$DOCKER" rm -f $ids >/dev/null 2>&1 || log "warning: could not remove $comm's containers"
    fi
    DOCKER_HOST="unix://$sock" timeout 60 "$DOCKER" network prune -f >/dev/null 2>&1 || true
}

cleanup() {
    local rc=$? m
    trap - EXIT INT TERM
    # Containers first: mydocker's outlive their daemon by design.
    remove_containers "$MY_SOCK" "$MY_PID" mydockerd
    remove_containers "$DD_SOCK" "$DD_PID" dockerd
    stop_proc "$MY_PID" mydockerd
    [ -z "$MY_SOCK" ] || remove_mydocker_net
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

# seconds CMD...: wall time of a command (stdout discarded; failure is fatal).
seconds() {
    local t0 t1
    t0="$(now)"
    "$@" >/dev/null 2>>"$TMP/cmd.err" || { tail -n 5 "$TMP/cmd.err" >&2; die "failed: $*"; }
    t1="$(now)"
    awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.4f\n", b - a }'
}

# sum_rss_kb PID...: total VmRSS.
sum_rss_kb() {
    local t=0 p
    for p in "$@"; do t=$((t + $(rss_kb "$p" 2>/dev/null || echo 0))); done
    echo "$t"
}

median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) printf "%.3f", v[(NR + 1) / 2]; else printf "%.3f", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
mb() { awk -v k="$1" 'BEGIN { printf "%.1f", k * 1024 / 1e6 }'; }  # VmRSS kB -> MB (10^6 bytes)

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
# verdict A B: PASS if A <= B (unrounded inputs: 0.504 must not pass as "0.50").
verdict() { awk -v a="$1" -v b="$2" 'BEGIN { print (a <= b ? "PASS" : "MISS") }'; }
row() { printf '%-32s %10s %10s %8s  %-22s %s\n' "$@"; }
# Other work on the machine (a cargo build) skews the times: record the load to judge them.
load1() { cut -d' ' -f1 /proc/loadavg; }

# start_mydockerd DIR: a private daemon with everything under DIR; sets MY_PID, MY_SOCK.
start_mydockerd() {
    local d="$1"
    mkdir -p "$d"
    MY_SOCK="$d/mydocker.sock"
    echo '{}' >"$d/daemon.json"
    CUR_LOG="$d/mydockerd.log"
    # A bridge, subnet and iptables chains of the benchmark's own, removed again
    # by remove_mydocker_net (a daemon keeps them when it stops, as dockerd does).
    "$MYDOCKERD" --host "unix://$MY_SOCK" --data-root "$d/data" --exec-root "$d/exec" \
        --pidfile "$d/mydockerd.pid" --config-file "$d/daemon.json" \
        --bridge "$MY_BRIDGE" --bip "$MY_BIP" --iptables-chain-prefix "$MY_CHAINS" \
        </dev/null >"$CUR_LOG" 2>&1 &
    MY_PID=$!
    wait_api "$MY_SOCK" "$MY_PID" mydockerd
}

# stop_mydockerd: removes its containers and networks, stops it, then removes its
# bridges and iptables chains.
stop_mydockerd() {
    remove_containers "$MY_SOCK" "$MY_PID" mydockerd
    stop_proc "$MY_PID" mydockerd
    remove_mydocker_net
    MY_PID="" MY_SOCK="" CUR_LOG=""
}

MY_BRIDGE="${BENCH_BRIDGE:-mdbench0}" MY_BIP="${BENCH_BIP:-172.30.252.1/24}" MY_CHAINS="${BENCH_CHAINS:-MDBENCH}"

# remove_mydocker_net: the benchmark daemon's default bridge and every iptables
# chain with its prefix (user networks go with `docker network prune` before).
remove_mydocker_net() {
    local t r c
    ip link del "$MY_BRIDGE" 2>/dev/null || true
    for t in filter nat; do
        iptables -t "$t" -S 2>/dev/null | grep -- "-j $MY_CHAINS" | sed 's/^-A/-D/' \
            | while read -r r; do
                # shellcheck disable=SC2086 # a rule is words
                iptables -t "$t" $r 2>/dev/null || true
            done
        for c in $(iptables -t "$t" -S 2>/dev/null | awk -v p="$MY_CHAINS" '$1 == "-N" && index($2, p) == 1 {print $2}'); do
            iptables -t "$t" -F "$c" 2>/dev/null || true
        done
        for c in $(iptables -t "$t" -S 2>/dev/null | awk -v p="$MY_CHAINS" '$1 == "-N" && index($2, p) == 1 {print $2}'); do
            iptables -t "$t" -X "$c" 2>/dev/null || true
        done
    done
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

# start_dockerd DIR: a private dockerd (and containerd) with everything under DIR,
# no bridge and no iptables; sets DD_PID, CTD_PID, DD_SOCK, DD_INFO, DD_HOST_BEFORE.
start_dockerd() {
    local d="$1" sock data i ctd_args=()
    mkdir -p "$d"
    sock="$d/docker.sock" data="$d/data"
    DD_SOCK="$sock"
    [ -e /run/docker ] || made_run_docker=1
    DD_HOST_BEFORE="$(host_snapshot)"
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
}

# stop_dockerd: removes its containers, stops it and its containerd, unmounts, and
# warns if it changed host paths or links.
stop_dockerd() {
    local i after
    remove_containers "$DD_SOCK" "$DD_PID" dockerd
    stop_proc "$DD_PID" dockerd
    stop_proc "$CTD_PID" containerd
    DD_PID="" CTD_PID="" OWN_CTD_PID=""
    for i in $(mounts_under_tmp); do umount "$i" 2>/dev/null || umount -l "$i" || true; done
    CUR_LOG=""
    undo_run_docker
    DD_SOCK=""
    # containerd's shims keep their sockets in /run/containerd/s whatever its state dir.
    if ! grep -q '^/run/containerd$' <<<"$DD_HOST_BEFORE"; then
        rmdir /run/containerd/s /run/containerd 2>/dev/null || true
    fi
    after="$(host_snapshot)"
    if [ "$DD_HOST_BEFORE" != "$after" ]; then
        log "warning: dockerd changed host paths or links:"
        diff <(echo "$DD_HOST_BEFORE") <(echo "$after") | grep '^[<>]' >&2 || true
    fi
}


# bench_setup: checks, dockerd install (--install-dockerd), the temp dir, traps, registry.
bench_setup() {
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

    TMP="$(mktemp -d "${BENCH_TMPDIR:-/tmp}/mydocker-bench.XXXXXX")"
    TMP="$(cd "$TMP" && pwd -P)"
    # A private CLI config: no credential helpers or contexts from the host's ~/.docker.
    export DOCKER_CONFIG="$TMP/cli"
    mkdir -p "$DOCKER_CONFIG"
    REG_STATE="${MYDOCKER_REGISTRY_STATE:-/tmp/mydocker-test-registry}"
    trap cleanup EXIT
    trap 'log interrupted; exit 130' INT
    trap 'log terminated; exit 143' TERM

    # Like contrib/test.sh: reuse a running registry, stop it afterwards only if we started it.
    if ! [ -f "$REG_STATE/pid" ] || ! kill -0 "$(cat "$REG_STATE/pid")" 2>/dev/null; then
        started_registry=1
    fi
    REG="$("$REPO/contrib/registry/ensure.sh" | tail -n 1)"
    [[ "$REG" =~ ^127\.0\.0\.1:[0-9]+$ ]] || die "contrib/registry/ensure.sh gave no address (got '$REG')"
}
