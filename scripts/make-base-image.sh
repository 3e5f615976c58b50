#!/usr/bin/env bash
# Make a local base image (Debian bookworm + python3 + venv + CA certificates) with debootstrap and
# `docker import`, for building Axon where no registry can be reached. Skips the work when the
# image already exists. Needs root (debootstrap) and a running engine (DOCKER_HOST).
#
#   scripts/make-base-image.sh [TAG]       # default TAG: axon-base:bookworm
set -euo pipefail

TAG="${1:-axon-base:bookworm}"
SUITE="${AXON_BASE_SUITE:-bookworm}"
MIRROR="${AXON_BASE_MIRROR:-http://deb.debian.org/debian}"
DOCKER="${DOCKER:-docker}"

log() { echo "[make-base-image] $*" >&2; }

if "$DOCKER" image inspect "$TAG" >/dev/null 2>&1; then
    log "$TAG already exists, nothing to do"
    exit 0
fi
if ! command -v debootstrap >/dev/null; then
    log "installing debootstrap (apt-get)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
fi

rootfs="$(mktemp -d /tmp/axon-rootfs.XXXXXX)"
trap 'rm -rf "$rootfs"' EXIT
log "debootstrap --variant=minbase $SUITE into $rootfs (a few minutes)"
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
    "$SUITE" "$rootfs" "$MIRROR" >"$rootfs.log" 2>&1 || { tail -20 "$rootfs.log" >&2; exit 1; }
rm -f "$rootfs.log"
# Downloaded .debs and apt lists are only weight in an image.
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*

log "importing as $TAG"
tar -C "$rootfs" -c . | "$DOCKER" import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["/bin/bash"]' \
    - "$TAG" >/dev/null
log "$TAG: $("$DOCKER" image inspect --format '{{.Size}}' "$TAG" | awk '{printf "%.0f MB", $1/1e6}')"
