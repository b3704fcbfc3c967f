#!/usr/bin/env bash
# Runs a command with CLOUDFN_DATABASE_URL pointing at a PostgreSQL started apart from the platform
# (TLS only, a non-superuser role owning just the platform's schema: scripts/external_pg.py), then stops it.
set -euo pipefail
py="$(dirname "$0")/../.venv/bin/python"
dir="$(mktemp -d /tmp/cloudfn-extpg.XXXXXX)"
trap '"$py" "$(dirname "$0")/external_pg.py" stop "$dir" || true; rm -rf "$dir"' EXIT
CLOUDFN_DATABASE_URL="$("$py" "$(dirname "$0")/external_pg.py" start "$dir")"
export CLOUDFN_DATABASE_URL
echo "external PostgreSQL: ${CLOUDFN_DATABASE_URL%%:*}://cloudfn_app:***@${CLOUDFN_DATABASE_URL##*@}" >&2
"$@"
