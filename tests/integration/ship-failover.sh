#!/bin/bash
# SPDX-License-Identifier: MIT
#
# ship-failover.sh - the main job, shorter: tools/demo.sh with 8 s of
# pgbench at scale 2 (PostgreSQL on mirrorfs, shipping every 0.2 s, mirrord
# replaying, kill -9 under load, promotion with the open segment, PostgreSQL
# on the promoted mirror). demo.sh exits non-zero if one committed
# transaction is missing on the promoted mirror or the balances disagree.
set -eu

B=${MFS_BUILD:?MFS_BUILD not set}
S=${MFS_SRC:-$(cd "$(dirname "$0")/../.." && pwd)}

if [ ! -x /usr/lib/postgresql/15/bin/initdb ] || ! id postgres >/dev/null 2>&1; then
	echo "SKIP: PostgreSQL 15 not installed"
	exit 77
fi
if [ ! -e /dev/fuse ] || [ "$(id -u)" != 0 ]; then
	echo "SKIP: needs root and /dev/fuse"
	exit 77
fi
for f in fs/mirrorfs daemon/mirrord tools/mirrorctl; do
	[ -x "$B/$f" ] || { echo "SKIP: $f not built"; exit 77; }
done

out=$(mktemp /tmp/mfs-failover.XXXXXX)
trap 'rm -f "$out"' EXIT
if ! MFS_BUILD=$B DEMO_SKIP_SETUP=1 DEMO_SECONDS=${DEMO_SECONDS:-8} DEMO_SCALE=2 \
	bash "$S/tools/demo.sh" >"$out" 2>&1; then
	cat "$out"
	echo "FAIL: tools/demo.sh failed" >&2
	exit 1
fi
sed -n '/^closing table/,$p' "$out"
lost=$(sed -n 's/^committed transactions lost  *\([0-9]*\)$/\1/p' "$out")
[ "$lost" = 0 ] || { echo "FAIL: $lost committed transactions lost" >&2; exit 1; }
echo "ok: zero committed transactions lost"
