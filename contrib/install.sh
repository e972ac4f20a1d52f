#!/usr/bin/env bash
# Builds mydockerd, installs it and starts it: the README's first command.
# With systemd as init it installs and starts the unit; otherwise it starts
# the daemon in the background, logging to /var/log/mydockerd.log.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null; then
    echo "cargo is required (https://rustup.rs or Debian's cargo package)" >&2
    exit 1
fi
# A C toolchain and libseccomp (the seccomp filters are compiled with it).
need=()
command -v cc >/dev/null || need+=(gcc)
dpkg -s libseccomp-dev >/dev/null 2>&1 || need+=(libseccomp-dev)
if [ ${#need[@]} -gt 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

cargo build --release
install -m 0755 target/release/mydockerd /usr/local/bin/mydockerd

if [ "$(ps -p 1 -o comm= 2>/dev/null)" = systemd ]; then
    install -m 0644 contrib/systemd/mydocker.service /etc/systemd/system/mydocker.service
    systemctl daemon-reload
    systemctl enable --now mydocker.service
    systemctl restart mydocker.service
else
    if [ -f /var/run/mydocker.pid ] && kill -0 "$(cat /var/run/mydocker.pid)" 2>/dev/null; then
        kill -TERM "$(cat /var/run/mydocker.pid)"
        for _ in $(seq 50); do kill -0 "$(cat /var/run/mydocker.pid 2>/dev/null)" 2>/dev/null || break; sleep 0.2; done
    fi
    setsid nohup /usr/local/bin/mydockerd "$@" >>/var/log/mydockerd.log 2>&1 < /dev/null &
fi
for _ in $(seq 100); do
    [ -S /var/run/mydocker.sock ] && break
    sleep 0.1
done
[ -S /var/run/mydocker.sock ] || { echo "mydockerd did not start; see /var/log/mydockerd.log or journalctl -u mydocker" >&2; exit 1; }
echo "mydockerd is running. Use it with: export DOCKER_HOST=unix:///var/run/mydocker.sock" >&2
