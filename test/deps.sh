#!/bin/sh
# Install the Debian packages msa needs that are missing (root only).
# Usage: deps.sh BUILD_PKGS... -- TEST_PKGS...
# Also creates the unprivileged 'msa' account the daemon runs as.
set -eu
missing=""
for p in "$@"; do
	[ "$p" = "--" ] && continue
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed"; then
		missing="$missing $p"
	fi
done
if [ -n "$missing" ]; then
	if [ "$(id -u)" != 0 ]; then
		echo "deps: missing packages:$missing (run as root or install them)" >&2
		exit 1
	fi
	echo "deps: installing missing packages:$missing"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	# shellcheck disable=SC2086
	apt-get install -y -qq --no-install-recommends $missing
else
	echo "deps: all packages present"
fi
if ! getent passwd msa >/dev/null 2>&1; then
	if [ "$(id -u)" = 0 ]; then
		echo "deps: creating system user msa"
		useradd --system --no-create-home --home-dir /nonexistent \
		    --shell /usr/sbin/nologin msa
	else
		echo "deps: user msa is missing (run as root to create it)" >&2
	fi
fi
