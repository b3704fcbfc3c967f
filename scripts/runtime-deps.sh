#!/usr/bin/env bash
# Installs the Debian packages the platform's sandbox uses for `network: true` functions (slirp4netns for
# user-mode networking, nftables for the egress rules) when they are missing. Needs root, as `make up` runs
# here; without them the platform still starts and answers 503 sandbox_unavailable for network functions.
set -euo pipefail
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
