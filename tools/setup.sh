#!/bin/bash
# setup.sh - install what mirrorfs needs from Debian's packages and build it.
# Usage: tools/setup.sh [BUILDDIR] [meson options...]   (as root on Debian 12)
set -eu
cd "$(dirname "$0")/.."

PACKAGES="build-essential libfuse3-dev fuse3 liburing-dev libcunit1-dev inotify-tools meson
ninja-build pkg-config rsync sqlite3 clang attr fio xfsprogs postgresql postgresql-contrib
iproute2 util-linux psmisc procps e2fsprogs"

missing=""
for p in $PACKAGES; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
	echo "setup: installing:$missing"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi
# Debian starts a cluster when postgresql is installed; tests run their own.
if command -v pg_lsclusters >/dev/null 2>&1; then
	pg_lsclusters -h 2>/dev/null | while read -r ver name port status rest; do
		[ "$status" = online ] && pg_ctlcluster "$ver" "$name" stop || true
	done
fi
modprobe fuse 2>/dev/null || true

builddir="${1:-build}"
[ $# -gt 0 ] && shift
if [ -f "$builddir/build.ninja" ]; then
	meson configure "$builddir" "$@" >/dev/null
else
	meson setup "$builddir" --wrap-mode=nofallback "$@" >/dev/null
fi
ninja -C "$builddir" >/dev/null
echo "setup: built in '$builddir'"
