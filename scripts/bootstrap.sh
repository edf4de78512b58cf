#!/usr/bin/env bash
# Prepares a fresh Linux (Debian/Ubuntu) machine for cortex-dev: system packages, a Docker
# engine when none answers, and the tooling's Python packages. Safe to run again.
# On macOS: install Docker Desktop/OrbStack/Colima yourself, then run only the pip line.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(uname -s)" = Linux ] && command -v apt-get >/dev/null; then
  sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  need=()
  # OpenBLAS: the fast BLAS the service preloads on Linux; debootstrap: the offline Python
  # base image; iproute2: addresses of the Docker bridge.
  [ -e /usr/lib/"$(uname -m)"-linux-gnu/openblas-pthread/libopenblas.so.0 ] || need+=(libopenblas0-pthread)
  command -v debootstrap >/dev/null || [ -x /usr/sbin/debootstrap ] || need+=(debootstrap)
  command -v ip >/dev/null || need+=(iproute2)
  if [ ${#need[@]} -gt 0 ]; then
    echo "== installing ${need[*]}"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
  fi
  if ! docker info >/dev/null 2>&1; then
    echo "== docker engine"
    $sudo bash scripts/install-docker-engine.sh
  fi
fi

echo "== tooling (requirements.txt)"
python3 -m pip install -q --disable-pip-version-check -r requirements.txt
echo "bootstrap done: next, inv setup (or inv start)"
