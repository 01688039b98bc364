#!/bin/bash
# SPDX-License-Identifier: MIT
#
# ship-failover.sh - the main job, shorter: tools/demo.sh with 8 s of
# pgbench at scale 2 (PostgreSQL on mirrorfs, shipping every 0.2 s, mirrord
# replaying, kill -9 under load, promotion with the open segment, PostgreSQL
# on the promoted mirror). demo.sh exits non-zero if one committed
# transaction is missing on the promoted mirror or the balances disagree.
set -eu
. "$(dirname "$0")/lib.sh"
# demo.sh runs Debian's PostgreSQL 15 as the postgres user
PGBIN=/usr/lib/postgresql/15/bin
pg_need
for f in fs/mirrorfs daemon/mirrord tools/mirrorctl; do
	[ -x "$MFS_BUILD/$f" ] || skip "$f not built"
done

out=$T/demo.out
if ! MFS_BUILD=$MFS_BUILD DEMO_SKIP_SETUP=1 DEMO_SECONDS=${DEMO_SECONDS:-8} DEMO_SCALE=2 \
	bash "$MFS_SRC/tools/demo.sh" >"$out" 2>&1; then
	cat "$out"
	fail "tools/demo.sh failed"
fi
sed -n '/^closing table/,$p' "$out"
lost=$(sed -n 's/^committed transactions lost  *\([0-9]*\)$/\1/p' "$out")
[ "$lost" = 0 ] || fail "$lost committed transactions lost"
echo "ok: zero committed transactions lost"
