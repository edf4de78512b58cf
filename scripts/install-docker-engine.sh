#!/usr/bin/env bash
# Installs and starts a real Docker engine (dockerd + compose v2 plugin) on Debian bookworm.
# bookworm's own docker-compose is the retired v1, so docker.io and docker-compose come from
# trixie, pinned low so nothing else is upgraded. The trixie source is derived from the
# machine's own Debian sources file: no registry host is named here.
set -euo pipefail

if ! docker compose version >/dev/null 2>&1 || ! command -v dockerd >/dev/null 2>&1; then
  src=/etc/apt/sources.list.d/debian.sources
  trixie=/etc/apt/sources.list.d/cortex-trixie.sources
  if [ ! -f "$trixie" ]; then
    # First stanza only (the main archive), suite switched to trixie.
    awk 'BEGIN{RS=""; ORS="\n\n"} NR==1' "$src" \
      | sed -E 's/^Suites:.*/Suites: trixie/' >"$trixie"
    printf 'Package: *\nPin: release n=trixie\nPin-Priority: 100\n' \
      >/etc/apt/preferences.d/cortex-trixie
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -t trixie docker.io docker-compose >/dev/null
fi

if ! docker info >/dev/null 2>&1; then
  mkdir -p /var/log
  nohup dockerd >/var/log/cortex-dockerd.log 2>&1 &
  for _ in $(seq 1 60); do
    docker info >/dev/null 2>&1 && break
    sleep 1
  done
fi
docker info >/dev/null 2>&1 || { echo "dockerd did not start; see /var/log/cortex-dockerd.log" >&2; tail -20 /var/log/cortex-dockerd.log >&2; exit 1; }
echo "docker engine: $(docker version --format '{{.Server.Version}}'), $(docker compose version --short)"
