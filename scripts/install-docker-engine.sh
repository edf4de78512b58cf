#!/usr/bin/env bash
# Installs and starts a real Docker engine (dockerd + compose v2 plugin) on Debian or Ubuntu.
# - Debian bookworm: its own docker-compose is the retired v1, so docker.io and docker-compose
#   come from trixie, pinned low (priority 100) and asked for as pkg/trixie, so only what they
#   need is taken from trixie. The trixie and trixie-security sources are derived from the
#   machine's own Debian sources (deb822 debian.sources, else the one-line sources.list): no
#   host is named here. If apt-get update or the install fails, the sources and pins this run
#   added are removed again.
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

# A trixie source's file name and text on stdout (first line: the file name), derived from the
# machine's own Debian sources: the first deb822 stanza of debian.sources whose suites match
# $1 (a regex), else the first matching `deb ` line of sources.list; $2 is the new suite.
# $3 (optional) is the file name's suffix; nothing printed when nothing matches.
derive_source() {
  local want=$1 suite=$2 suffix=${3:-} deb822="$APT_ETC/sources.list.d/debian.sources"
  local oneline="$APT_ETC/sources.list" line
  if [ -f "$deb822" ]; then
    # The first stanza of type deb whose Suites: field has a suite matching $want.
    line=$(awk -v want="$want" 'BEGIN{RS=""}
      /(^|\n)Types:[^\n]*[ \t]deb([ \t]|\n|$)/ {
        n = split($0, rows, "\n")
        for (i = 1; i <= n; i++) if (rows[i] ~ /^Suites:/) {
          m = split(substr(rows[i], 8), suites, /[ \t]+/)
          for (j = 1; j <= m; j++) if (suites[j] ~ ("^" want "$")) { print; exit }
        }
      }' "$deb822")
    if [ -n "$line" ]; then
      echo "cortex-trixie$suffix.sources"
      printf '%s\n' "$line" | sed -E -e "s/^Suites:.*/Suites: $suite/" \
        -e 's/^Components:.*/Components: main/'
    fi
    return 0
  fi
  if [ -f "$oneline" ]; then
    # First uncommented `deb` line with a matching suite that is not a CD-ROM; options kept.
    line=$(grep -E '^[[:space:]]*deb[[:space:]]' "$oneline" | grep -v 'cdrom:' \
      | awk -v want="$want" '{ i = 2; if ($2 ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
                               if ($(i + 1) ~ ("^" want "$")) { print; exit } }' || true)
    if [ -n "$line" ]; then
      echo "cortex-trixie$suffix.list"
      printf '%s\n' "$line" | sed -E \
        "s/^[[:space:]]*deb[[:space:]]+(\[[^]]*\][[:space:]]+)?([^[:space:]]+)[[:space:]].*/deb \1\2 $suite main/"
    fi
  fi
}

# The trixie source (from the main archive's entry); dies when there is none to derive from.
trixie_source() {
  local out
  out=$(derive_source '[a-z]+' trixie)
  if [ -z "$out" ]; then
    if [ -f "$APT_ETC/sources.list.d/debian.sources" ]; then
      die "$APT_ETC/sources.list.d/debian.sources has no stanza of type deb to derive a trixie source from."
    fi
    die "No Debian archive is configured in $APT_ETC/sources.list.d/debian.sources or $APT_ETC/sources.list to derive a trixie source from."
  fi
  printf '%s\n' "$out"
}

# trixie-security, from the machine's own security entry (bookworm-security); none, none added.
trixie_security_source() { derive_source '[a-z]+-security' trixie-security -security; }

# Files this run added, so that a failure before the install completes takes them back.
ADDED_FILES=()

# Writes $2 (and a newline) to $1 unless it exists, and records it as added by this run.
# (An argument, not stdin: a function at the end of a pipe runs in a subshell, and the
# record would be lost.)
write_new() {
  [ -f "$1" ] && return 0
  printf '%s\n' "$2" >"$1"
  ADDED_FILES+=("$1")
}

remove_added() {
  local file
  for file in ${ADDED_FILES[@]+"${ADDED_FILES[@]}"}; do
    rm -f "$file"
    echo "install-docker-engine: removed $file again (the install from trixie did not complete)" >&2
  done
  ADDED_FILES=()
}

# Writes a derived source once (either format counts as written); $1 is trixie_source or
# trixie_security_source.
write_source() {
  local dir="$APT_ETC/sources.list.d" out name base
  base=cortex-trixie${2:-}
  [ -f "$dir/$base.sources" ] || [ -f "$dir/$base.list" ] && return 0
  out=$("$1") || exit 1
  [ -n "$out" ] || return 0
  name=$(printf '%s\n' "$out" | head -1)
  write_new "$dir/$name" "$(printf '%s\n' "$out" | tail -n +2)"
}

# The trixie source, trixie-security where the machine has a security source, and their pins
# (both low, priority 100: only what is asked for as pkg/trixie comes from there).
add_trixie_source() {
  write_source trixie_source
  write_source trixie_security_source -security
  [ -n "$(ls "$APT_ETC/sources.list.d"/cortex-trixie-security.* 2>/dev/null)" ] \
    || echo "install-docker-engine: no Debian security source is configured, so none is added for trixie" >&2
  mkdir -p "$APT_ETC/preferences.d"
  write_new "$APT_ETC/preferences.d/cortex-trixie" "$(printf '%s\n' 'Package: *' \
    'Pin: release n=trixie' 'Pin-Priority: 100' '' 'Package: *' \
    'Pin: release n=trixie-security' 'Pin-Priority: 100')"
}

# Adds the trixie sources and installs from them; on any failure before the install completes
# (apt-get update or install), the sources and pins this run added are removed again.
install_from_trixie() {
  trap remove_added EXIT
  add_trixie_source
  apt-get update -qq
  apt_install docker.io/trixie docker-compose/trixie
  trap - EXIT
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
  install_from_trixie
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
