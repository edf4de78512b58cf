#!/usr/bin/env bash
# Installs and starts a real Docker engine (dockerd + compose v2 plugin) on Debian or Ubuntu.
# - Debian bookworm: its own docker-compose is the retired v1, so docker.io and docker-compose
#   come from trixie, pinned low (priority 100) and asked for as pkg/trixie, so only what they
#   need is taken from trixie. The trixie source is derived from the machine's own Debian
#   sources (deb822 debian.sources, else the one-line sources.list): no host is named here.
#   A Debian whose own archive already has compose v2 installs from it.
# - Ubuntu: its own docker.io and docker-compose-v2 packages.
# Then starts the engine: `systemctl start docker` where systemd runs the machine, else a
# nohup dockerd (containers, CI). Safe to run again: an installed engine is only started.
# CORTEX_APT_ETC and CORTEX_OS_RELEASE override /etc/apt and /etc/os-release (for tests).
set -euo pipefail

APT_ETC=${CORTEX_APT_ETC:-/etc/apt}
OS_RELEASE=${CORTEX_OS_RELEASE:-/etc/os-release}
DOCKERD_LOG=/var/log/cortex-dockerd.log

die() { echo "install-docker-engine: $*" >&2; exit 1; }

is_ubuntu() {
  [ -r "$OS_RELEASE" ] || return 1
  local id like
  id=$(. "$OS_RELEASE"; echo "${ID:-}")
  like=$(. "$OS_RELEASE"; echo "${ID_LIKE:-}")
  [ "$id" = ubuntu ] || [[ " $like " == *" ubuntu "* ]]
}

# The trixie source file's name and text on stdout (first line: the file name), derived from
# the first deb822 stanza of debian.sources, else from the first `deb ` line of sources.list.
trixie_source() {
  local deb822="$APT_ETC/sources.list.d/debian.sources" oneline="$APT_ETC/sources.list" line
  if [ -f "$deb822" ]; then
    # The first stanza of type deb (the main archive), suite trixie, component main.
    line=$(awk 'BEGIN{RS=""} /(^|\n)Types:[^\n]*[ \t]deb([ \t]|\n|$)/ {print; exit}' "$deb822")
    [ -n "$line" ] || die "$deb822 has no stanza of type deb to derive a trixie source from."
    echo cortex-trixie.sources
    printf '%s\n' "$line" | sed -E -e 's/^Suites:.*/Suites: trixie/' \
      -e 's/^Components:.*/Components: main/'
    return
  fi
  if [ -f "$oneline" ]; then
    # First uncommented `deb` line that is not a CD-ROM; options ([signed-by=...]) kept.
    line=$(grep -E '^[[:space:]]*deb[[:space:]]' "$oneline" | grep -v 'cdrom:' | head -1 || true)
    if [ -n "$line" ]; then
      echo cortex-trixie.list
      printf '%s\n' "$line" | sed -E \
        's/^[[:space:]]*deb[[:space:]]+(\[[^]]*\][[:space:]]+)?([^[:space:]]+)[[:space:]].*/deb \1\2 trixie main/'
      return
    fi
  fi
  die "No Debian archive is configured in $deb822 or $oneline to derive a trixie source from."
}

# Writes the trixie source and its pin once (either format counts as written).
add_trixie_source() {
  local dir="$APT_ETC/sources.list.d" out name
  if [ ! -f "$dir/cortex-trixie.sources" ] && [ ! -f "$dir/cortex-trixie.list" ]; then
    out=$(trixie_source)
    name=$(printf '%s\n' "$out" | head -1)
    printf '%s\n' "$out" | tail -n +2 >"$dir/$name"
  fi
  mkdir -p "$APT_ETC/preferences.d"
  [ -f "$APT_ETC/preferences.d/cortex-trixie" ] \
    || printf 'Package: *\nPin: release n=trixie\nPin-Priority: 100\n' >"$APT_ETC/preferences.d/cortex-trixie"
}

candidate() { apt-cache policy "$1" 2>/dev/null | awk '/Candidate:/ {print $2; exit}'; }

apt_install() { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null; }

install_engine() {
  apt-get update -qq
  if is_ubuntu; then
    local p
    for p in docker.io docker-compose-v2; do
      case "$(candidate "$p")" in ''|'(none)')
        die "Ubuntu's archive offers no $p on this machine: install Docker Engine as Docker's documentation describes (\"Install Docker Engine on Ubuntu\"), then run this again." ;;
      esac
    done
    apt_install docker.io docker-compose-v2
    return
  fi
  case "$(candidate docker-compose)" in
    2.*) apt_install docker.io docker-compose; return ;;  # trixie and later: compose v2 already
  esac
  add_trixie_source
  apt-get update -qq
  apt_install docker.io/trixie docker-compose/trixie
}

systemd_runs() { [ -d /run/systemd/system ] && command -v systemctl >/dev/null; }

wait_engine() {
  local _
  for _ in $(seq 1 60); do
    docker info >/dev/null 2>&1 && return 0
    sleep 1
  done
  return 1
}

start_engine() {
  docker info >/dev/null 2>&1 && return 0
  if systemd_runs && systemctl list-unit-files docker.service >/dev/null 2>&1; then
    systemctl start docker || true
    wait_engine || die "systemctl start docker did not bring the engine up; see journalctl -u docker."
    return
  fi
  mkdir -p "$(dirname "$DOCKERD_LOG")"
  nohup dockerd >"$DOCKERD_LOG" 2>&1 &
  if ! wait_engine; then
    tail -20 "$DOCKERD_LOG" >&2 || true
    die "dockerd did not start; see $DOCKERD_LOG."
  fi
}

main() {
  if ! docker compose version >/dev/null 2>&1 || ! command -v dockerd >/dev/null 2>&1; then
    install_engine
  fi
  start_engine
  echo "docker engine: $(docker version --format '{{.Server.Version}}'), $(docker compose version --short)"
}

# Sourced (by tests), it only defines the functions.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  main "$@"
fi
