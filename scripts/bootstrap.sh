#!/usr/bin/env bash
# Prepares a fresh machine for cortex-dev: on Debian/Ubuntu the system packages and a Docker
# engine when none answers; everywhere the tooling's venv (.venv, from requirements.txt), so
# `.venv/bin/inv` works without touching the system Python (PEP 668). Safe to run again.
# On macOS: install Docker Desktop, OrbStack or Colima yourself first.
set -euo pipefail
cd "$(dirname "$0")/.."

sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
if [ "$(uname -s)" = Linux ] && command -v apt-get >/dev/null; then
  need=()
  # OpenBLAS: the fast BLAS the service preloads on Linux; debootstrap: the offline Python
  # base image; iproute2: addresses of the Docker bridge.
  [ -e /usr/lib/"$(uname -m)"-linux-gnu/openblas-pthread/libopenblas.so.0 ] || need+=(libopenblas0-pthread)
  command -v debootstrap >/dev/null || [ -x /usr/sbin/debootstrap ] || need+=(debootstrap)
  command -v ip >/dev/null || need+=(iproute2)
  python3 -c "import ensurepip" 2>/dev/null || need+=(python3-venv)
  # A C compiler and glibc's libmvec: the service builds its exp/GELU kernels at first start
  # (mlx_service/kernels/native_math.py; without them it runs numpy's, slower).
  command -v cc >/dev/null || need+=(gcc)
  [ -e /usr/lib/"$(uname -m)"-linux-gnu/libmvec.so ] || need+=(libc6-dev)
  if [ ${#need[@]} -gt 0 ]; then
    echo "== installing ${need[*]}"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
  fi
  # An engine that answers is left alone. "permission denied" on the socket means an engine
  # is there but this user may not use it: that needs the docker group, not a reinstall.
  if ! info=$(docker info 2>&1 >/dev/null); then
    if [[ "$info" == *"ermission denied while trying to connect"* ]]; then
      echo "== docker engine: permission denied on its socket for $(id -un): add yourself to" \
        "the docker group (sudo usermod -aG docker \$USER), then log in again." >&2
    else
      echo "== docker engine"
      $sudo bash scripts/install-docker-engine.sh
    fi
  fi
fi

echo "== tooling venv .venv (requirements.txt)"
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -r requirements.txt
# The locally built images (NATS, the Python base) need root for debootstrap: build them here,
# where sudo is at hand, so `inv start` needs none. Built once; later runs find them.
if [ "$(uname -s)" = Linux ] && [ "${CORTEX_IMAGES:-auto}" != upstream ] \
    && $sudo docker info >/dev/null 2>&1; then
  echo "== local images (inv setup --no-install)"
  $sudo .venv/bin/inv setup --no-install
fi
echo "bootstrap done: run .venv/bin/inv start (or 'source .venv/bin/activate', then inv ...)"
