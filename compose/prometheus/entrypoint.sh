#!/bin/sh
# Writes the scrape configuration from its template, then runs Prometheus in this shell's
# place. The host service's address comes from MLX_HOST_URL (as the model gateway's does):
# http://host.docker.internal:8081/ -> host.docker.internal:8081.
set -eu
target="${MLX_HOST_URL:-http://host.docker.internal:8081}"
target="${target#*://}"
target="${target%%/*}"
# /tmp where the image has a writable one, else the data volume (always Prometheus's own).
config=/tmp/prometheus.yml
[ -d /tmp ] && [ -w /tmp ] || config=/prometheus/cortex-prometheus.yml
sed "s|__MLX_TARGET__|${target}|" /etc/prometheus/cortex/prometheus.yml.in > "$config"
exec prometheus --config.file="$config" --storage.tsdb.path=/prometheus \
  --storage.tsdb.retention.time="${PROMETHEUS_RETENTION:-7d}" --web.listen-address=:9090 "$@"
