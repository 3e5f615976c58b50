#!/usr/bin/env bash
# Start (or stop) a private Docker engine for this sandbox: Debian's dockerd with its data-root,
# exec-root and socket under one folder, and default ulimits the sandbox can grant (it cannot
# raise nofile/nproc, so containers inheriting dockerd's huge defaults would fail to start).
#
#   scripts/docker-engine.sh start    # idempotent; prints the DOCKER_HOST line to export
#   scripts/docker-engine.sh stop     # stops the engine this folder's pidfile names
#   scripts/docker-engine.sh status
#   eval "$(scripts/docker-engine.sh env)"
#
# AXON_DOCKER_ROOT picks the folder (default /tmp/axon-docker); root is required (dockerd).
set -euo pipefail

ROOT="${AXON_DOCKER_ROOT:-/tmp/axon-docker}"
SOCK="$ROOT/docker.sock"
PIDFILE="$ROOT/dockerd.pid"
LOG="$ROOT/dockerd.log"
export DOCKER_HOST="unix://$SOCK"

log() { echo "[docker-engine] $*" >&2; }

running() {
    [[ -f "$PIDFILE" ]] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null \
        && docker version --format '{{.Server.Version}}' >/dev/null 2>&1
}

install_engine() {
    if ! command -v dockerd >/dev/null; then
        log "installing Debian's docker.io (apt-get)"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io >/dev/null
    fi
}

write_config() {
    mkdir -p "$ROOT"
    cat >"$ROOT/daemon.json" <<JSON
{
  "data-root": "$ROOT/data",
  "exec-root": "$ROOT/exec",
  "pidfile": "$PIDFILE",
  "hosts": ["unix://$SOCK"],
  "default-ulimits": {
    "nofile": {"Name": "nofile", "Soft": 1024, "Hard": 1024},
    "nproc": {"Name": "nproc", "Soft": 1024, "Hard": 1024}
  }
}
JSON
}

start() {
    if running; then
        log "already running (pid $(cat "$PIDFILE"), $DOCKER_HOST)"
        return 0
    fi
    install_engine
    write_config
    log "starting dockerd (config $ROOT/daemon.json, log $LOG)"
    # setsid: the engine outlives this script's process group, like a service would.
    setsid dockerd --config-file "$ROOT/daemon.json" >"$LOG" 2>&1 </dev/null &
    for _ in $(seq 1 60); do
        if running; then
            log "ready: server $(docker version --format '{{.Server.Version}}') at $DOCKER_HOST"
            return 0
        fi
        sleep 1
    done
    log "dockerd did not become ready in 60 s; last log lines:"
    tail -20 "$LOG" >&2
    return 1
}

stop() {
    if [[ ! -f "$PIDFILE" ]] || ! kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
        log "not running"
        return 0
    fi
    local pid
    pid="$(cat "$PIDFILE")"
    log "stopping dockerd (pid $pid)"
    kill "$pid"
    for _ in $(seq 1 30); do
        kill -0 "$pid" 2>/dev/null || { log "stopped"; return 0; }
        sleep 1
    done
    log "dockerd still alive after 30 s"
    return 1
}

case "${1:-start}" in
    start) start; echo "export DOCKER_HOST=$DOCKER_HOST" ;;
    stop) stop ;;
    status) if running; then log "running (pid $(cat "$PIDFILE"))"; else log "not running"; exit 1; fi ;;
    env) echo "export DOCKER_HOST=$DOCKER_HOST" ;;
    *) echo "usage: $0 {start|stop|status|env}" >&2; exit 2 ;;
esac
