#!/usr/bin/env bash
# Issue 5's benchmark: `docker run --rm --network <user network> busybox true` and
# TCP throughput through a published 127.0.0.1 port, for mydockerd and, when
# installed, for dockerd (its docker-proxy; it runs with --iptables=false here so
# that it changes no host firewall, which leaves the proxy as the only path).
#
# Usage: contrib/bench/network.sh [--runs N] [--install-dockerd]
# Env:
#   BENCH_RUNS          measured runs per daemon (default 15)
#   BENCH_NET_MB        MB sent through the published port (default 500)
#   BENCH_SUBNET        the user network's subnet (default 172.30.251.0/24)
#   BENCH_PORT          the published host port (default 18080)
#   MYDOCKERD           the daemon binary (default target/release/mydockerd)
# Needs root, the docker CLI and a release build. Exits 0 whether targets are met
# or missed; non-zero only if something broke.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# shellcheck source=contrib/bench/lib.sh
. "$REPO/contrib/bench/lib.sh"
bench_args 15 "$@"
NET_MB="${BENCH_NET_MB:-500}"
SUBNET="${BENCH_SUBNET:-172.30.251.0/24}"
PORT="${BENCH_PORT:-18080}"
MYDOCKERD="${MYDOCKERD:-$REPO/target/release/mydockerd}"

for v in RUNS NET_MB PORT; do
    [[ "${!v}" =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer, got '${!v}'"
done
bench_setup
IMG="$REG/busybox:latest"
log "registry $REG, image $IMG, $RUNS runs, ${NET_MB} MB through 127.0.0.1:$PORT, network $SUBNET"


# send_mb: NET_MB of zeros to 127.0.0.1:PORT through bash's /dev/tcp.
send_mb() { head -c "$((NET_MB * 1000000))" /dev/zero >"/dev/tcp/127.0.0.1/$PORT"; }

# bench_daemon NAME: sets <NAME>_RUN_MED and <NAME>_MBS.
bench_daemon() {
    local name="$1" i times=() t
    "$DOCKER" pull -q "$IMG" >/dev/null || die "$name: pull failed"
    "$DOCKER" network create --subnet "$SUBNET" benchnet >/dev/null || die "$name: network create failed"
    for i in 1 2; do seconds "$DOCKER" run --rm --network benchnet "$IMG" true >/dev/null; done
    for ((i = 1; i <= RUNS; i++)); do times+=("$(seconds "$DOCKER" run --rm --network benchnet "$IMG" true)"); done
    printf -v "${name}_RUN_MED" '%s' "$(median "${times[@]}")"
    log "$name: run --rm --network benchnet true: ${times[*]}"

    # A sink in the container: busybox nc reads one connection to its end.
    "$DOCKER" run -d --name sink --network benchnet -p "127.0.0.1:$PORT:80" "$IMG" \
        sh -c 'while true; do nc -l -p 80 >/dev/null; done' >/dev/null
    # Ready once nc listens inside (a probe connection would use up its accept).
    for i in $(seq 1 100); do
        "$DOCKER" exec sink netstat -ltn 2>/dev/null | grep -q ':80 ' && break
        sleep 0.1
    done
    t="$(seconds send_mb)"
    printf -v "${name}_MBS" '%s' "$(awk -v t="$t" -v m="$NET_MB" 'BEGIN { printf "%.1f", m / t }')"
    log "$name: ${NET_MB} MB through the published port in ${t}s"
    "$DOCKER" rm -f sink >/dev/null
    "$DOCKER" network rm benchnet >/dev/null
}

LOAD_START="$(load1)" NCPU="$(nproc)"
start_mydockerd "$TMP/mydocker"
export DOCKER_HOST="unix://$MY_SOCK"
bench_daemon MY
unset DOCKER_HOST
stop_mydockerd

bench_dd() { bench_daemon DD; }
with_dockerd bench_dd

echo
echo "mydocker: $("$MYDOCKERD" --version 2>/dev/null || echo mydockerd); image $IMG"
[ "$HAVE_DD" = 0 ] || echo "$DD_INFO"
echo
row metric mydocker dockerd ratio target result
row -------------------------------- ---------- ---------- -------- ---------------------- ------
if [ "$HAVE_DD" = 1 ]; then
    row "run --rm, user network (s)" "$MY_RUN_MED" "$DD_RUN_MED" "$(ratio "$MY_RUN_MED" "$DD_RUN_MED")" \
        "ratio <= 0.2" "$(verdict "$MY_RUN_MED" "$(awk -v d="$DD_RUN_MED" 'BEGIN { print d * 0.2 }')")"
    row "published port TCP (MB/s)" "$MY_MBS" "$DD_MBS" "$(ratio "$MY_MBS" "$DD_MBS")" \
        "ratio >= 1" "$(verdict "$DD_MBS" "$MY_MBS")"
else
    row "run --rm, user network (s)" "$MY_RUN_MED" n/a n/a "ratio <= 0.2" n/a
    row "published port TCP (MB/s)" "$MY_MBS" n/a n/a "ratio >= 1" n/a
fi
echo "load average (1 min): $LOAD_START at start, $(load1) at end, on $NCPU CPUs"
echo "(MB = 10^6 bytes; median of $RUNS runs after 2 warm-ups; targets are informational)"
