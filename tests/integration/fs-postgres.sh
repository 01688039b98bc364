#!/bin/bash
# SPDX-License-Identifier: MIT
# fs-postgres.sh - PostgreSQL on mirrorfs: initdb on the mount, pgbench -i
# -s 10, pgbench -T 30 -c 4, stop; replay the journal into an empty folder;
# PostgreSQL starts on the copy and pg_dump of both is equal.
set -eu
. "$(dirname "$0")/lib.sh"
PGBIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[ -n "$PGBIN" ] && [ -x "$PGBIN/initdb" ] || skip "PostgreSQL is not installed"
id postgres >/dev/null 2>&1 || skip "no postgres user"
[ "$(id -u)" = 0 ] || skip "needs root (runs PostgreSQL as the postgres user)"
SECS=${MFS_PG_SECONDS:-30}
PORT=5488
PGD=
EXTRA_CLEANUP='pg_stop_any'
pg_stop_any() { [ -n "$PGD" ] && pg "$PGBIN/pg_ctl -D $PGD -m immediate stop" >/dev/null 2>&1; PGD=; return 0; }
pg() { su postgres -s /bin/sh -c "$*"; }
pg_start() {
	PGD=$1
	pg "$PGBIN/pg_ctl -D $PGD -w -t 120 -l $T/sock/pg.log -o \"-p $PORT -k $T/sock -c listen_addresses=''\" start" >/dev/null ||
		{ tail -20 "$T/sock/pg.log" >&2; fail "PostgreSQL did not start on '$1'"; }
}
pg_stop() { pg "$PGBIN/pg_ctl -D $PGD -w -m fast stop" >/dev/null; PGD=; }

mkdir -p "$T/data" "$T/sock"
chown postgres "$T/sock"
mfs_mount "$T/data" "$T/mnt" -o rotate_size=64M
mkdir "$T/mnt/pg" && chown postgres "$T/mnt/pg" && chmod 700 "$T/mnt/pg"
step "initdb on the mount"
pg "$PGBIN/initdb -D $T/mnt/pg -A trust -U postgres" >"$T/initdb.log" 2>&1 || { cat "$T/initdb.log"; fail initdb; }
pg_start "$T/mnt/pg"
step "pgbench -i -s 10, pgbench -T $SECS -c 4"
pg "$PGBIN/pgbench -h $T/sock -p $PORT -i -s 10 postgres" >/dev/null 2>&1 || fail "pgbench -i"
pg "$PGBIN/pgbench -h $T/sock -p $PORT -T $SECS -c 4 postgres" 2>&1 | grep -E "^tps|failed" || fail pgbench
dump() { pg "$PGBIN/pg_dump -h $T/sock -p $PORT postgres" | grep -v '^\\\(un\)\?restrict '; }
dump >"$T/dump-mount.sql"
pg_stop
mfs_umount "$T/mnt"

step "replay into an empty folder, start PostgreSQL on the copy"
replay_journal "$T/data/.mirrorfs" "$T/copy" || fail "replay"
verify_equal "$T/data" "$T/copy" || fail "replayed copy differs from the backing folder"
pg_start "$T/copy/pg"
dump >"$T/dump-copy.sql"
if [ -x "$PGBIN/pg_amcheck" ]; then
	pg "$PGBIN/psql -q -h $T/sock -p $PORT -c 'CREATE EXTENSION IF NOT EXISTS amcheck' postgres" >/dev/null 2>&1 &&
		{ pg "$PGBIN/pg_amcheck -h $T/sock -p $PORT --heapallindexed -d postgres" >"$T/amcheck.log" 2>&1 ||
			{ cat "$T/amcheck.log"; fail "pg_amcheck on the replayed copy"; }; }
	echo "pg_amcheck on the copy: ok"
fi
pg_stop
cmp "$T/dump-mount.sql" "$T/dump-copy.sql" || fail "pg_dump of the mount and of the copy differ"
echo "dump: $(wc -c <"$T/dump-mount.sql") bytes, equal"
echo PASS
