#!/bin/bash
# SPDX-License-Identifier: MIT
# snap-db.sh - snapshots of live databases are crash-consistent copies.
#  - PostgreSQL on the mount (initdb, pgbench -i -s 5, pgbench -c 4 -T 20)
#    and, at the same time, a WAL-mode SQLite database under a write loop
#    (synchronous=FULL; each transaction inserts a row, sometimes deletes
#    one, and counts both in a counter table);
#  - `snapshot create db1` in the middle; the view equals `mirrorctl replay
#    --until N` of the segments from empty;
#  - `cp -a` of the view's PostgreSQL folder (postmaster.pid removed, as a
#    restore does) starts as a second server (other port and socket dir)
#    while the first one still runs: crash recovery, pg_amcheck
#    --heapallindexed passes, count(*) of pgbench_accounts is 500000, and
#    the TPC-B balances agree (sum of accounts = branches = tellers =
#    history deltas);
#  - `cp -a` of the view's SQLite folder: PRAGMA integrity_check is ok, the
#    counters match the rows, and every transaction committed before the
#    create started is in it, none that started after it returned;
#  - if `mirrorctl restore` exists: restore from the real snapshot --until
#    an LSN in the middle of a later segment equals `mirrorctl replay
#    --until` that LSN of all segments from empty, and PostgreSQL starts on
#    the restored folder; restore --until N equals the view. Otherwise a
#    SKIP line for that part.
set -eu
. "$(dirname "$0")/lib.sh"
command -v python3 >/dev/null || skip "no python3"
command -v sqlite3 >/dev/null || skip "no sqlite3"
python3 -c 'import sqlite3' 2>/dev/null || skip "python3 has no sqlite3 module"
pg_need
SECS=${MFS_PG_SECONDS:-20}
PORT1=5491 PORT2=5492 PORT3=5493
D=$T/data M=$T/mnt V=$T/mnt/.mirrorfs/snapshots

ERRORS=0
bad() { echo "FAIL: $*" >&2; ERRORS=$((ERRORS + 1)); }

SQPID= PGBPID=
EXTRA_CLEANUP='stop_pid $PGBPID $SQPID' # then lib.sh stops the servers
psql1() { # SOCKDIR PORT SQL: one value
	pg "$PGBIN/psql -X -At -h $1 -p $2 -d postgres -c \"$3\""
}

# check_pg SOCKDIR PORT WHAT: amcheck, row count, balances.
check_pg() {
	local s=$1 p=$2 what=$3 n sums
	if psql1 "$s" "$p" "CREATE EXTENSION IF NOT EXISTS amcheck" >/dev/null 2>&1; then
		pg "$PGBIN/pg_amcheck -h $s -p $p --heapallindexed -d postgres" >"$T/amcheck.log" 2>&1 ||
			{ bad "$what: pg_amcheck:"; tail -n 20 "$T/amcheck.log" >&2; }
		echo "$what: pg_amcheck --heapallindexed ok"
	else
		echo "SKIP: $what: amcheck extension not available, no pg_amcheck"
	fi
	n=$(psql1 "$s" "$p" "select count(*) from pgbench_accounts") || n=error
	[ "$n" = 500000 ] || bad "$what: count(*) of pgbench_accounts is '$n', not 500000"
	sums=$(psql1 "$s" "$p" "select (select sum(abalance) from pgbench_accounts) || ' ' || (select sum(bbalance) from pgbench_branches) || ' ' || (select sum(tbalance) from pgbench_tellers) || ' ' || (select coalesce(sum(delta), 0) from pgbench_history) || ' ' || (select count(*) from pgbench_history)") || sums=error
	echo "$what: accounts branches tellers history-delta history-rows: $sums"
	set -- $sums
	[ $# = 5 ] && [ "$1" = "$2" ] && [ "$1" = "$3" ] && [ "$1" = "$4" ] ||
		bad "$what: TPC-B balances disagree: $sums"
}

# The SQLite writer: until STOP exists, one transaction at a time, each logged
# "I TIME_NS" after its COMMIT returned.
cat >"$T/sqw.py" <<'PY'
import os, sqlite3, sys, time
db, log, stop = sys.argv[1:4]
c = sqlite3.connect(db, isolation_level=None)
c.execute("PRAGMA journal_mode=WAL")
c.execute("PRAGMA synchronous=FULL")
c.execute("CREATE TABLE IF NOT EXISTS t(a INTEGER PRIMARY KEY, b TEXT, c BLOB)")
c.execute("CREATE INDEX IF NOT EXISTS tb ON t(b)")
c.execute("CREATE TABLE IF NOT EXISTS n(k INTEGER PRIMARY KEY, v INTEGER)")
c.execute("INSERT OR IGNORE INTO n VALUES(1, 0), (2, 0)")
L = open(log, "w", buffering=1)
i = 0
while not os.path.exists(stop):
    i += 1
    c.execute("BEGIN IMMEDIATE")
    c.execute("INSERT INTO t(b, c) VALUES(hex(randomblob(16)), randomblob(?))", (50 + i * 37 % 3000,))
    c.execute("UPDATE n SET v = v + 1 WHERE k = 1")
    if i % 3 == 0:
        c.execute("UPDATE t SET c = randomblob(300) WHERE a = (SELECT a FROM t ORDER BY random() LIMIT 1)")
    if i % 7 == 0:
        if c.execute("DELETE FROM t WHERE a = (SELECT min(a) FROM t)").rowcount:
            c.execute("UPDATE n SET v = v + 1 WHERE k = 2")
    c.execute("COMMIT")
    L.write("%d %d\n" % (i, time.time_ns()))
PY

mkdir -p "$D"
mfs_mount "$D" "$M" -o rotate_size=16M
mkdir "$M/sq"

step "initdb on the mount, pgbench -i -s 5"
pg_initdb "$M/pg" || fail initdb
pg_start "$M/pg" $PORT1 "$T/sock1" || fail "PostgreSQL did not start on '$M/pg'"
pg "$PGBIN/pgbench -h $T/sock1 -p $PORT1 -i -s 5 postgres" >"$T/pgbench-i.log" 2>&1 ||
	{ tail "$T/pgbench-i.log"; fail "pgbench -i"; }

step "pgbench -c 4 -T $SECS and the SQLite writer; snapshot db1 in the middle"
python3 "$T/sqw.py" "$M/sq/wal.db" "$T/sq.log" "$T/sq.stop" 2>"$T/sq.err" &
SQPID=$!
pg "$PGBIN/pgbench -h $T/sock1 -p $PORT1 -T $SECS -c 4 postgres" >"$T/pgbench.log" 2>&1 &
PGBPID=$!
sleep $((SECS / 2))
kill -0 "$SQPID" || { cat "$T/sq.err"; fail "the SQLite writer died"; }
kill -0 "$PGBPID" || { cat "$T/pgbench.log"; fail "pgbench ended early"; }
T0=$(date +%s%N)
out=$("$CTL" snapshot create "$M" db1) || fail "snapshot create db1"
T1=$(date +%s%N)
echo "$out"
[[ "$out" =~ ^db1\ lsn=([0-9]+)\ window_us=([0-9]+)$ ]] || fail "snapshot create output '$out'"
N=${BASH_REMATCH[1]}
wait "$PGBPID" || { cat "$T/pgbench.log"; bad "pgbench failed after the snapshot"; }
PGBPID=
grep -E "^tps|failed" "$T/pgbench.log" || true
touch "$T/sq.stop"
wait "$SQPID" || { cat "$T/sq.err"; bad "the SQLite writer failed"; }
SQPID=
echo "SQLite writer: $(wc -l <"$T/sq.log") transactions"
"$CTL" rotate "$M" >/dev/null || fail rotate

step "the view equals replay --until $N"
make_ref() { # UNTIL DEST
	rm -rf "$2"
	mkdir -p "$2"
	# shellcheck disable=SC2046
	"$CTL" replay --to "$2" --until "$1" $(segs_upto "$D/.mirrorfs/journal" "$1") >"$T/replay.log" 2>&1 ||
		{ cat "$T/replay.log" >&2; fail "replay --until $1"; }
}
make_ref "$N" "$T/refN"
"$CTL" verify "$V/db1" "$T/refN" >"$T/verify.log" 2>&1 ||
	{ bad "view db1 differs from replay --until $N:"; head -n 12 "$T/verify.log" >&2; }

step "PostgreSQL on a cp -a of the view, next to the live one"
cp -a "$V/db1/pg" "$T/pgcopy" || bad "cp -a of the view's pg folder"
rm -f "$T/pgcopy/postmaster.pid"
pg_start "$T/pgcopy" $PORT2 "$T/sock2" || fail "PostgreSQL did not start on '$T/pgcopy'"
check_pg "$T/sock2" $PORT2 "snapshot copy"
pg_stop "$T/pgcopy" || bad "pg_ctl stop '$T/pgcopy'"
grep -q "redo done\|database system was not properly shut down" "$T/sock2/pg.log" &&
	echo "snapshot copy: crash recovery ran, as expected"
check_pg "$T/sock1" $PORT1 "live cluster"
pg_stop "$M/pg" || bad "pg_ctl stop '$M/pg'"

step "SQLite: PRAGMA integrity_check on a cp -a of the view"
cp -a "$V/db1/sq" "$T/sqcopy" || bad "cp -a of the view's sq folder"
sqlite_ok "$T/sqcopy/wal.db" || bad "integrity_check of the snapshot's SQLite copy"
sqlite_ok "$M/sq/wal.db" || bad "integrity_check of the live SQLite database"
python3 - "$T/sqcopy/wal.db" "$T/sq.log" "$T0" "$T1" <<'PY' || bad "SQLite snapshot contents (see above)"
import sqlite3, sys
db, log, t0, t1 = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
c = sqlite3.connect(db)
ins = c.execute("SELECT v FROM n WHERE k = 1").fetchone()[0]
dels = c.execute("SELECT v FROM n WHERE k = 2").fetchone()[0]
rows = c.execute("SELECT count(*) FROM t").fetchone()[0]
done = [tuple(map(int, l.split())) for l in open(log)]
before = max([i for i, t in done if t < t0], default=0)
upto = max([i for i, t in done if t <= t1], default=0)
print("SQLite snapshot: %d transactions (committed before create: %d, by its end: %d), %d rows" % (ins, before, upto, rows))
ok = True
if rows != ins - dels:
    print("rows %d != inserted %d - deleted %d" % (rows, ins, dels)); ok = False
if not before <= ins <= upto + 1:
    print("the snapshot holds %d transactions, not in [%d, %d]" % (ins, before, upto + 1)); ok = False
sys.exit(0 if ok else 1)
PY

step "restore from the snapshot"
if ! "$CTL" --help 2>/dev/null | grep -q '^  restore '; then
	echo "SKIP: mirrorctl restore does not exist yet (not in 'mirrorctl --help')"
else
	mapfile -t LATER < <(for f in $(ls "$D/.mirrorfs/journal/"*.mfsj | sort); do
		b=$(basename "$f" .mfsj)
		[ $((10#${b%%-*})) -gt $((N + 1)) ] && echo "$b"
	done)
	[ ${#LATER[@]} -ge 1 ] || fail "no closed segment after the one following the snapshot"
	seg=${LATER[$(((${#LATER[@]} - 1) / 2))]}
	first=$((10#${seg%%-*})) last=$((10#${seg##*-}))
	L=$(((first + last) / 2))
	echo "snapshot at $N; restoring --until $L, inside segment $seg (of ${#LATER[@]} later ones)"
	"$CTL" restore --snapshot "$V/db1" --until "$L" --segments "$D/.mirrorfs/journal" \
		--to "$T/restored" >"$T/restore.log" 2>&1 || { cat "$T/restore.log" >&2; bad "restore --until $L"; }
	make_ref "$L" "$T/refL"
	"$CTL" verify "$T/restored" "$T/refL" >"$T/verify.log" 2>&1 ||
		{ bad "restore --until $L differs from replay --until $L:"; head -n 12 "$T/verify.log" >&2; }
	if [ -f "$T/restored/pg/PG_VERSION" ]; then
		rm -f "$T/restored/pg/postmaster.pid"
		pg_start "$T/restored/pg" $PORT3 "$T/sock3" || fail "PostgreSQL did not start on '$T/restored/pg'"
		n=$(psql1 "$T/sock3" $PORT3 "select count(*) from pgbench_accounts") || n=error
		[ "$n" = 500000 ] || bad "restored cluster: count(*) of pgbench_accounts is '$n'"
		pg_stop "$T/restored/pg" || bad "pg_ctl stop '$T/restored/pg'"
		echo "restored cluster started, pgbench_accounts: $n rows"
	fi
	rm -rf "$T/restored" "$T/refL"
	"$CTL" restore --snapshot "$V/db1" --until "$N" --segments "$D/.mirrorfs/journal" \
		--to "$T/restoredN" >"$T/restore.log" 2>&1 || { cat "$T/restore.log" >&2; bad "restore --until $N"; }
	"$CTL" verify "$T/restoredN" "$T/refN" >"$T/verify.log" 2>&1 ||
		{ bad "restore --until $N (the snapshot's own LSN) differs from replay --until $N:"; head -n 12 "$T/verify.log" >&2; }
fi

"$CTL" snapshot delete "$M" db1 >/dev/null || bad "snapshot delete db1"
mfs_umount "$M"
[ "$ERRORS" = 0 ] || fail "$ERRORS checks failed"
echo PASS
