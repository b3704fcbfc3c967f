#!/usr/bin/env bash
# Installs the Debian packages the platform's sandbox uses for `network: true` functions (slirp4netns for
# user-mode networking, nftables for the egress rules) when they are missing, and Node.js 20 or later for
# `runtime: nodejs20` functions when `node` is missing or older. Needs root, as `make up` runs here; without
# them the platform still starts and answers 503 sandbox_unavailable for network (or Node.js) functions.
set -euo pipefail

node_major() { command -v node >/dev/null 2>&1 && node --version 2>/dev/null | sed -n 's/^v\([0-9]*\)\..*/\1/p' || true; }

# Node.js: Debian's own `nodejs` when its candidate is 20 or later (Debian 13, Ubuntu 24.10+); else NodeSource's
# node_20.x apt repository (Debian 12 ships 18), added once with its signing key.
ensure_node() {
  local have; have="$(node_major)"
  [ -n "$have" ] && [ "$have" -ge 20 ] && return 0
  if [ "$(id -u)" != 0 ]; then echo "runtime-deps: Node.js >= 20 missing and not root; nodejs20 functions will be refused" >&2; return 0; fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null || true
  local cand; cand="$(apt-cache policy nodejs 2>/dev/null | sed -n 's/^ *Candidate: *//p')"
  cand="${cand#*:}"; cand="${cand%%.*}"  # the upstream major version, without a Debian epoch
  case "$cand" in ''|*[!0-9]*) cand=0;; esac
  if [ "$cand" -lt 20 ]; then
    if [ ! -f /etc/apt/sources.list.d/nodesource.list ]; then
      command -v curl >/dev/null 2>&1 || apt-get install -y -qq --no-install-recommends curl ca-certificates gnupg >/dev/null
      command -v gpg >/dev/null 2>&1 || apt-get install -y -qq --no-install-recommends gnupg >/dev/null
      mkdir -p /usr/share/keyrings
      curl -fsSL https://deb.nodesource.com/gpgkey/nodesource-repo.gpg.key | gpg --dearmor --yes -o /usr/share/keyrings/nodesource.gpg \
        && echo "deb [signed-by=/usr/share/keyrings/nodesource.gpg] https://deb.nodesource.com/node_20.x nodistro main" \
          > /etc/apt/sources.list.d/nodesource.list \
        && apt-get update -qq >/dev/null || true
    fi
  fi
  apt-get install -y -qq --no-install-recommends nodejs >/dev/null || true
  have="$(node_major)"
  if [ -z "$have" ] || [ "$have" -lt 20 ]; then
    echo "runtime-deps: could not install Node.js >= 20 (have: ${have:-none}); nodejs20 functions will be refused" >&2
  fi
}
ensure_node

need=()
command -v slirp4netns >/dev/null 2>&1 || need+=(slirp4netns)
command -v nft >/dev/null 2>&1 || need+=(nftables)
command -v nsenter >/dev/null 2>&1 || need+=(util-linux)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then echo "runtime-deps: missing ${need[*]} and not root; network: true functions will be refused" >&2; exit 0; fi
export DEBIAN_FRONTEND=noninteractive
if ! { apt-get update -qq >/dev/null && apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null; }; then
  echo "runtime-deps: could not install ${need[*]}; network: true functions will be refused" >&2
fi
exit 0
