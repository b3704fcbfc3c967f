#!/usr/bin/env bash
# Installs the Debian packages the test suite needs (headless Chromium for the dashboard test,
# promtool for the Prometheus exposition check,
# a PostgreSQL server for the external-database run: scripts/with-external-pg.sh) when they are missing. Needs root, as CI is.
set -euo pipefail
need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
compgen -G '/usr/lib/postgresql/*/bin/pg_ctl' >/dev/null || need+=(postgresql)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then echo "test-deps: missing ${need[*]} and not root; those tests will skip" >&2; exit 0; fi
export DEBIAN_FRONTEND=noninteractive
if ! { apt-get update -qq >/dev/null && apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null; }; then
  echo "test-deps: could not install ${need[*]}; the browser and promtool tests will skip" >&2
  exit 0
fi
# The prometheus package starts a server on install where systemd runs; we only want promtool.
command -v systemctl >/dev/null 2>&1 && systemctl stop prometheus prometheus-node-exporter >/dev/null 2>&1 || true
