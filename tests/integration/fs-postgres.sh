#!/bin/bash
# SPDX-License-Identifier: MIT
# fs-postgres.sh - PostgreSQL on mirrorfs: initdb on the mount, pgbench -i
# -s 10, pgbench -T 30 -c 4, stop; replay the journal into an empty folder;
# PostgreSQL starts on the copy and pg_dump of both is equal.
set -eu
. "$(dirname "$0")/lib.sh"
pg_need
SECS=${MFS_PG_SECONDS:-30}
PORT=5488

mkdir -p "$T/data"
mfs_mount "$T/data" "$T/mnt" -o rotate_size=64M
step "initdb on the mount"
pg_initdb "$T/mnt/pg" || fail initdb
pg_start "$T/mnt/pg" $PORT "$T/sock" || fail "PostgreSQL did not start on the mount"
step "pgbench -i -s 10, pgbench -T $SECS -c 4"
pg "$PGBIN/pgbench -h $T/sock -p $PORT -i -s 10 postgres" >/dev/null 2>&1 || fail "pgbench -i"
pg "$PGBIN/pgbench -h $T/sock -p $PORT -T $SECS -c 4 postgres" 2>&1 | grep -E "^tps|failed" || fail pgbench
dump() { pg "$PGBIN/pg_dump -h $T/sock -p $PORT postgres" | grep -v '^\\\(un\)\?restrict '; }
dump >"$T/dump-mount.sql"
pg_stop "$T/mnt/pg"
mfs_umount "$T/mnt"

step "replay into an empty folder, start PostgreSQL on the copy"
replay_journal "$T/data/.mirrorfs" "$T/copy" || fail "replay"
verify_equal "$T/data" "$T/copy" || fail "replayed copy differs from the backing folder"
pg_start "$T/copy/pg" $PORT "$T/sock" || fail "PostgreSQL did not start on the copy"
dump >"$T/dump-copy.sql"
if [ -x "$PGBIN/pg_amcheck" ]; then
	pg "$PGBIN/psql -q -h $T/sock -p $PORT -c 'CREATE EXTENSION IF NOT EXISTS amcheck' postgres" >/dev/null 2>&1 &&
		{ pg "$PGBIN/pg_amcheck -h $T/sock -p $PORT --heapallindexed -d postgres" >"$T/amcheck.log" 2>&1 ||
			{ cat "$T/amcheck.log"; fail "pg_amcheck on the replayed copy"; }; }
	echo "pg_amcheck on the copy: ok"
fi
pg_stop "$T/copy/pg"
cmp "$T/dump-mount.sql" "$T/dump-copy.sql" || fail "pg_dump of the mount and of the copy differ"
echo "dump: $(wc -c <"$T/dump-mount.sql") bytes, equal"
echo PASS
