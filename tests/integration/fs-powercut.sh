#!/bin/bash
# SPDX-License-Identifier: MIT
# fs-powercut.sh - power cuts under mirrorfs (issue 16): cutfs (an in-memory
# disk with a volatile write cache, tests/integration/cutfs.c) holds DATADIR
# and the journal. Per cut point, on a fresh cutfs:
#  - mirrorfs on C/data (small rotate_size, checkpoints every second) under
#    a workload: a writer of pwrite+fsync/fdatasync and fsync'ed new files
#    that logs every acknowledged fsync outside the layer; small files made,
#    written and unlinked, names reused for folders and symlinks, hard
#    links, and fsynced kept files it logs; SQLite in WAL and
#    in rollback (delete) mode, synchronous FULL or EXTRA, whose committers
#    log committed ids outside the layer; a loop of `mirrorctl rotate`,
#    `snapshot create`, `lock --timeout 2 -- true` and `checkpoint`; some
#    cut points also with MFS_FAULT_CHECKPOINT_DELAY_MS (long checkpoints)
#    or MFS_FAULT_CRASH_IN_SNAPSHOT (mirrorfs dies inside a snapshot);
#    optionally PostgreSQL (MFS_POWERCUT_PG=K: every K-th cut point, with a
#    committer that logs committed ids, pg_amcheck after the cut);
#  - at a seeded random moment kill -9 of mirrorfs, then the power cut:
#    drop (all that is not durable is lost) and torn (a seeded subset of the
#    unsynced sectors and entries persists) alternate. A cut is a reboot:
#    nothing of mirrorfs's memory survives;
#  - checks: (a) mirrorfs mounts again; (b) every acknowledged write and
#    every logged commit is there, SQLite integrity_check is ok (pg_amcheck);
#    (c) replaying every segment from the first into an empty folder equals
#    DATADIR as the mount shows it (mirrorctl verify); (d) every snapshot
#    that `snapshot list` shows as ok equals `mirrorctl replay --until` its
#    LSN (checked through the mount, before (c)); mirrorfs then unmounts
#    cleanly.
# Prints the counts per category at the end and exits 1 if any failure
# count is non-zero. Every cut point prints its parameters; rerun one with
# MFS_SEED=S MFS_POWERCUT_ONLY=I (the workload's timing is not replayed,
# its parameters, contents and the cut's choices are).
#
# Environment: MFS_POWERCUT=0 (skip), MFS_POWERCUT_CUTS (50), MFS_SEED, MFS_POWERCUT_ONLY (one cut
# point), MFS_POWERCUT_PG (0), MFS_POWERCUT_KEEP (a folder: the data of
# failing cut points is copied there), MFS_CUTFS (the cutfs binary),
# MFS_POWERCUT_LENIENT=1 (cut points 1..N fsync DATADIR after the first
# mount, so that the bug cut point 0 looks for, a DATADIR/.mirrorfs never
# made durable, could not hide the others; fixed, so off by default),
# MFS_POWERCUT_CONTROL=1 (negative control of the harness: every cut point
# makes everything durable instead of cutting, i.e. a kill -9 of mirrorfs
# alone, which must show no failure).
set -eu
. "$(dirname "$0")/lib.sh"
[ "${MFS_POWERCUT:-1}" = 1 ] || skip "MFS_POWERCUT=0"
command -v sqlite3 >/dev/null || skip "no sqlite3"
command -v python3 >/dev/null || skip "no python3"
CUTFS=${MFS_CUTFS:-$MFS_BUILD/tests/integration/cutfs}
[ -x "$CUTFS" ] || skip "cutfs not built ($CUTFS)"
CUTS=${MFS_POWERCUT_CUTS:-50}
SEED=${MFS_SEED:-$$}
ONLY=${MFS_POWERCUT_ONLY:-}
PGEVERY=${MFS_POWERCUT_PG:-0}
KEEP=${MFS_POWERCUT_KEEP:-}
STRICT=${MFS_POWERCUT_STRICT:-1}
[ -z "${MFS_POWERCUT_LENIENT:-}" ] || STRICT=
CONTROL=${MFS_POWERCUT_CONTROL:-}
echo "seed $SEED, $CUTS cut points"

C=$T/c M=$T/m D=$T/c/data
CUT_PID= WPIDS= OPS_PID= PGD= PG_PID=
declare -A COUNT=([cuts]=0 [divergences]=0 [acked_losses]=0 [refused_mounts]=0
	[wrong_snapshots]=0 [corrupt_databases]=0 [harness_errors]=0)

# ---- processes and mounts ---------------------------------------------------

stop_workload() {
	local p
	touch "$T/stop"
	for p in $WPIDS; do kill "$p" 2>/dev/null || true; done
	for p in $WPIDS $OPS_PID; do wait "$p" 2>/dev/null || true; done
	WPIDS= OPS_PID=
	pg_kill
	return 0
}
cut_umount() {
	[ -n "$CUT_PID" ] || return 0
	fusermount3 -u "$C" 2>/dev/null || fusermount3 -u -z "$C" 2>/dev/null || true
	wait "$CUT_PID" 2>/dev/null || true
	CUT_PID=
}
pc_cleanup() {
	stop_workload
	[ -n "${MFS_PID[$M]:-}" ] && pc_kill9
	cut_umount
	return 0
}
EXTRA_CLEANUP=pc_cleanup

# pc_kill9: crash mirrorfs on $M (it may have died already: a fault hook)
pc_kill9() {
	local pid=${MFS_PID[$M]:-}
	if [ -n "$pid" ]; then
		kill -9 "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	fi
	fusermount3 -u -z "$M" 2>/dev/null || true
	unset "MFS_PID[$M]"
	return 0
}

cut_mount() {
	mkdir -p "$C"
	"$CUTFS" -f "$C" 2>>"$T/cutfs.log" &
	CUT_PID=$!
	wait_for mountpoint -q "$C" || fail "cutfs did not mount on '$C'"
}
ctl() { echo "$*" >"$C/.cutfs-ctl"; }

# mfs_try_umount MNT: clean unmount; returns mirrorfs's exit status.
mfs_try_umount() {
	local mnt=$1 pid=${MFS_PID[$1]:-} rc=0
	fusermount3 -u "$mnt" 2>/dev/null || fusermount3 -u -z "$mnt"
	[ -n "$pid" ] && { wait "$pid" || rc=$?; }
	unset "MFS_PID[$mnt]"
	return $rc
}

# ---- workload programs (python3) ---------------------------------------------

cat >"$T/writer.py" <<'PY'
# writer MNT LOG SEED: pwrite + fsync/fdatasync, new files with a folder
# fsync; logs "I seq name off len" before and "A seq" after each fsync.
import os, random, sys
mnt, log, seed = sys.argv[1], sys.argv[2], int(sys.argv[3])
rnd = random.Random(seed)
L = open(log, "a")
def note(s):
    L.write(s + "\n"); L.flush(); os.fsync(L.fileno())
def fsync_dir(p):
    fd = os.open(p, os.O_RDONLY | os.O_DIRECTORY); os.fsync(fd); os.close(fd)
def content(seq, n):
    return random.Random(seed * 1000003 + seq).randbytes(n)
try:
    w = mnt + "/w"
    os.mkdir(w); fsync_dir(mnt)
    files, sizes, seq = [], {}, 0
    while True:
        seq += 1
        if not files or (rnd.random() < 0.05 and len(files) < 16):
            name = "f%d" % len(files); n = rnd.randint(1, 20000)
            note("I %d %s 0 %d" % (seq, name, n))
            fd = os.open(w + "/" + name, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
            os.pwrite(fd, content(seq, n), 0); os.fsync(fd); os.close(fd)
            fsync_dir(w)
            files.append(name); sizes[name] = n
        else:
            name = rnd.choice(files); size = sizes[name]
            n = rnd.randint(1, 600) if rnd.random() < 0.5 else rnd.randint(1, 16384)
            off = size if rnd.random() < 0.3 else rnd.randint(0, min(size, 262144))
            note("I %d %s %d %d" % (seq, name, off, n))
            fd = os.open(w + "/" + name, os.O_RDWR)
            if os.pwrite(fd, content(seq, n), off) != n:
                sys.exit(0)
            (os.fdatasync if rnd.random() < 0.5 else os.fsync)(fd)
            os.close(fd)
            sizes[name] = max(size, off + n)
        note("A %d" % seq)
except OSError:
    sys.exit(0)
PY

cat >"$T/check_writer.py" <<'PY'
# check_writer MNT LOG SEED: every acknowledged write is readable; bytes of
# the one write in flight at the crash may hold its new content.
import os, random, sys
mnt, log, seed = sys.argv[1], sys.argv[2], int(sys.argv[3])
def content(seq, n):
    return random.Random(seed * 1000003 + seq).randbytes(n)
intents, acked = [], set()
for line in open(log):
    f = line.split()
    if len(f) == 5 and f[0] == "I":
        intents.append((int(f[1]), f[2], int(f[3]), int(f[4])))
    elif len(f) == 2 and f[0] == "A":
        acked.add(int(f[1]))
exp, alt, who = {}, {}, {}
for seq, name, off, n in intents:
    data = content(seq, n)
    if seq in acked:
        e = exp.setdefault(name, bytearray())
        if len(e) < off + n:
            e.extend(bytes(off + n - len(e)))
        e[off:off + n] = data
        who.setdefault(name, []).append((seq, off, n))
    else:
        alt[name] = (off, data, seq)
bad = 0
for name, e in sorted(exp.items()):
    p = mnt + "/w/" + name
    try:
        got = open(p, "rb").read()
    except OSError as err:
        print("acked loss: %s: %s (acked writes %s)" % (name, err.strerror, [s for s, _, _ in who[name]][:5]))
        bad += 1
        continue
    if len(got) < len(e):
        print("acked loss: %s is %d bytes, acknowledged writes reached %d" % (name, len(got), len(e)))
        bad += 1
        continue
    if got[:len(e)] == bytes(e):
        continue
    a = alt.get(name)
    wrong = []
    for i in range(0, len(e), 4096):
        if got[i:i + 4096] == e[i:i + 4096]:
            continue
        for j in range(i, min(i + 4096, len(e))):
            if got[j] == e[j]:
                continue
            if a and a[0] <= j < a[0] + len(a[1]) and got[j] == a[1][j - a[0]]:
                continue
            wrong.append(j)
    if wrong:
        j = wrong[0]
        last = [s for s, o, n in who[name] if o <= j < o + n]
        print("acked loss: %s: %d bytes differ from the acknowledged writes, first at %d "
              "(0x%02x, not 0x%02x of acked write seq %s)"
              % (name, len(wrong), j, got[j], e[j], last[-1] if last else "none (a hole)"))
        bad += 1
print("writer: %d acknowledged writes in %d files checked, %d files bad" % (len(acked), len(exp), bad))
sys.exit(1 if bad else 0)
PY

cat >"$T/small.py" <<'PY'
# small MNT LOG SEED: small files made, written, closed and unlinked (most
# without any sync: the unlink of a last name runs without a fence), names
# reused for folders and symlinks, hard links (the unlink of a name that
# is not the last runs after a fence); a kept file now and then, fsynced
# with its folder, logs "A name seq" once durable.
import os, random, sys
mnt, log, seed = sys.argv[1], sys.argv[2], int(sys.argv[3])
rnd = random.Random(seed)
L = open(log, "a")
def note(s):
    L.write(s + "\n"); L.flush(); os.fsync(L.fileno())
def content(seq, n):
    return random.Random(seed * 1000003 + seq).randbytes(n)
def put(p, seq, sync=False):
    fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.write(fd, content(seq, rnd.randint(1, 9000)))
    if sync: os.fsync(fd)
    os.close(fd)
def gone(p):
    if os.path.isdir(p) and not os.path.islink(p): os.rmdir(p)
    elif os.path.lexists(p): os.unlink(p)
try:
    s = mnt + "/s"
    os.mkdir(s)
    seq = 0
    while True:
        seq += 1
        p = s + "/n%d" % rnd.randrange(8)
        x = rnd.random()
        gone(p)
        if x < 0.6:
            put(p, seq); os.unlink(p)
        elif x < 0.7:
            put(p, seq) # left for a later round to unlink
        elif x < 0.8:
            put(p, seq); os.unlink(p); os.mkdir(p)
        elif x < 0.85:
            put(p, seq); os.unlink(p); os.symlink("n0", p)
        elif x < 0.95:
            put(p, seq); os.link(p, p + "h"); put(p, seq + 1000000)
            os.unlink(p); os.unlink(p + "h")
        else:
            k = s + "/k%d" % seq
            put(k, seq, True)
            d = os.open(s, os.O_RDONLY | os.O_DIRECTORY); os.fsync(d); os.close(d)
            note("A k%d %d" % (seq, len(open(k, "rb").read())))
except OSError:
    sys.exit(0)
PY

cat >"$T/check_small.py" <<'PY'
# check_small MNT LOG SEED: every kept file logged as durable is there, whole.
import os, random, sys
mnt, log, seed = sys.argv[1], sys.argv[2], int(sys.argv[3])
bad = n = 0
for line in open(log):
    f = line.split()
    if len(f) != 3 or f[0] != "A":
        continue
    n += 1
    name, size = f[1], int(f[2])
    try:
        got = open(mnt + "/s/" + name, "rb").read()
    except OSError as err:
        print("acked loss: s/%s: %s" % (name, err.strerror)); bad += 1; continue
    if len(got) != size:
        print("acked loss: s/%s is %d bytes, not %d" % (name, len(got), size)); bad += 1
print("small: %d kept files checked, %d bad" % (n, bad))
sys.exit(1 if bad else 0)
PY

cat >"$T/committer.py" <<'PY'
# committer DB MODE SYNC LOG SEED: transactions; logs the id of each commit.
import os, random, sqlite3, sys
db, mode, sync, log, seed = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
rnd = random.Random(seed)
L = open(log, "a")
try:
    con = sqlite3.connect(db, isolation_level=None, timeout=10)
    con.execute("PRAGMA journal_mode=%s" % mode).fetchall()
    con.execute("PRAGMA synchronous=%s" % sync)
    con.execute("CREATE TABLE IF NOT EXISTS acked(id INTEGER PRIMARY KEY, v BLOB)")
    con.execute("CREATE TABLE IF NOT EXISTS churn(k INTEGER PRIMARY KEY, v BLOB)")
    con.execute("CREATE INDEX IF NOT EXISTS churn_v ON churn(v)")
    i = 0
    while True:
        i += 1
        con.execute("BEGIN")
        con.execute("INSERT INTO acked VALUES(?, randomblob(?))", (i, rnd.randint(10, 3000)))
        for _ in range(rnd.randint(0, 3)):
            con.execute("INSERT OR REPLACE INTO churn VALUES(?, randomblob(?))",
                        (rnd.randint(1, 400), rnd.randint(10, 2500)))
        if rnd.random() < 0.2:
            con.execute("DELETE FROM churn WHERE k = ?", (rnd.randint(1, 400),))
        con.execute("COMMIT")
        L.write("%d\n" % i); L.flush(); os.fsync(L.fileno())
except Exception:
    sys.exit(0)
PY

cat >"$T/check_ids.py" <<'PY'
# check_ids LOG IDS-FILE WHAT: every logged id is in the ids file.
import sys
want = set(int(x) for x in open(sys.argv[1]).read().split())
have = set(int(x) for x in open(sys.argv[2]).read().split())
miss = sorted(want - have)
if miss:
    print("acked loss: %s: %d of %d committed ids missing, e.g. %s (highest present %s)"
          % (sys.argv[3], len(miss), len(want), miss[:5], max(have) if have else "none"))
    sys.exit(1)
PY

cat >"$T/snaps.py" <<'PY'
# snaps: "NAME LSN STATE" per snapshot of `snapshot list --json` (stdin)
import json, sys
for s in json.load(sys.stdin):
    print(s.get("name"), s.get("lsn"), s.get("state"))
PY

# ---- PostgreSQL (optional) ----------------------------------------------------

PGPORT=5489
pg_kill() { # the postmaster, by the PID pg_start read (its folder may be gone)
	[ -n "$PGD" ] || return 0
	if [ -n "$PG_PID" ]; then
		kill -9 "$PG_PID" 2>/dev/null || true
		while kill -0 "$PG_PID" 2>/dev/null; do sleep 0.1; done
	fi
	unset "PG_RUNNING[$PGD]"
	PGD= PG_PID=
	return 0
}
pg_ready() {
	[ "$PGEVERY" -gt 0 ] || return 0
	pg_available || { echo "PostgreSQL cut points skipped: $PG_WHY"; PGEVERY=0; return 0; }
	step "PostgreSQL template: initdb, pgbench -i -s 1 (on the real disk)"
	pg_initdb "$T/pgtpl" || fail "initdb"
	pc_pg_start "$T/pgtpl" || fail "PostgreSQL did not start on the template"
	pg "$PGBIN/pgbench -h $T/pgsock -p $PGPORT -i -s 1 postgres" >/dev/null 2>&1 || fail "pgbench -i"
	pg "$PGBIN/psql -X -q -h $T/pgsock -p $PGPORT -c 'CREATE TABLE acked(id int primary key)' postgres" >/dev/null
	pg "$PGBIN/psql -X -q -h $T/pgsock -p $PGPORT -c 'CREATE EXTENSION IF NOT EXISTS amcheck' postgres" >/dev/null 2>&1 || true
	pg_stop "$T/pgtpl"
	PGD= PG_PID=
}
# pc_pg_start DATADIR: PostgreSQL on $T/pgsock, port $PGPORT; 1 if it does not start
pc_pg_start() {
	PGD=$1
	pg_start "$1" "$PGPORT" "$T/pgsock" 2>/dev/null
}
cat >"$T/pgcommit.py" <<'PY'
# pgcommit PSQL SOCK PORT LOG: autocommitted inserts, each id logged once psql echoes it.
import os, subprocess, sys
psql, sock, port, log = sys.argv[1:5]
p = subprocess.Popen([psql, "-X", "-q", "-U", "postgres", "-h", sock, "-p", port, "-v", "ON_ERROR_STOP=1", "postgres"],
                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
L = open(log, "a")
i = 0
try:
    while True:
        i += 1
        p.stdin.write("INSERT INTO acked VALUES (%d);\n\\echo ok %d\n" % (i, i)); p.stdin.flush()
        line = p.stdout.readline()
        if line.strip() != "ok %d" % i:
            break
        L.write("%d\n" % i); L.flush(); os.fsync(L.fileno())
except Exception:
    pass
PY

# ---- one cut point -------------------------------------------------------------

CUT_TAG=
note() { # note CATEGORY MESSAGE: count a failure, with the cut point's parameters
	COUNT[$1]=$((COUNT[$1] + 1))
	echo "FAIL [$CUT_TAG] $1: $2"
	FAILED_HERE=1
}

# start_workload SEED SYNC PG
start_workload() {
	local s=$1 sync=$2 with_pg=$3
	rm -f "$T/stop"
	: >"$T/writer.log"; : >"$T/wal.ids"; : >"$T/rb.ids"; : >"$T/pg.ids"
	python3 "$T/writer.py" "$M" "$T/writer.log" "$s" 2>/dev/null &
	WPIDS="$!"
	: >"$T/small.log"
	python3 "$T/small.py" "$M" "$T/small.log" "$s" 2>/dev/null &
	WPIDS="$WPIDS $!"
	python3 "$T/committer.py" "$M/wal.db" wal "$sync" "$T/wal.ids" "$s" 2>/dev/null &
	WPIDS="$WPIDS $!"
	python3 "$T/committer.py" "$M/rb.db" delete "$sync" "$T/rb.ids" $((s + 1)) 2>/dev/null &
	WPIDS="$WPIDS $!"
	if [ "$with_pg" = 1 ]; then
		python3 "$T/pgcommit.py" "$PGBIN/psql" "$T/pgsock" "$PGPORT" "$T/pg.ids" 2>/dev/null &
		WPIDS="$WPIDS $!"
		pg "$PGBIN/pgbench -h $T/pgsock -p $PGPORT -c 2 -T 60 postgres" >/dev/null 2>&1 &
		WPIDS="$WPIDS $!"
	fi
	ops_loop "$s" &
	OPS_PID=$!
}

# rotate, snapshot create (at most 3), lock, checkpoint, in a loop
ops_loop() {
	local k=0 snaps=0
	RANDOM=$1
	sleep "0.$((RANDOM % 10))" # the first snapshot (a fault hook may crash in it) is worth waiting for
	while [ ! -e "$T/stop" ]; do
		k=$((k + 1))
		case $((RANDOM % 4)) in
		0) "$CTL" rotate "$M" ;;
		1) [ $snaps -lt 3 ] && snaps=$((snaps + 1)) && "$CTL" snapshot create "$M" "s$k" ;;
		2) "$CTL" lock --timeout 2 "$M" -- true ;;
		3) "$CTL" checkpoint "$M" ;;
		esac >/dev/null 2>&1 || true
		sleep "0.$((RANDOM % 3))$((RANDOM % 10))"
	done
}

check_sqlite() { # DB IDS
	local db=$M/$1 r
	[ -s "$T/$2" ] || return 0 # nothing committed
	[ -e "$db" ] || { note acked_losses "$1 is missing, $(wc -l <"$T/$2") commits were acknowledged"; return 0; }
	r=$(sqlite3 "$db" "PRAGMA integrity_check;" 2>&1 | head -n 5) || true
	[ "$r" = ok ] || { note corrupt_databases "$1: integrity_check: $r"; return 0; }
	sqlite3 "$db" "SELECT id FROM acked;" >"$T/have.ids" 2>"$T/sq.err" ||
		{ note corrupt_databases "$1: $(head -n 1 "$T/sq.err")"; return 0; }
	python3 "$T/check_ids.py" "$T/$2" "$T/have.ids" "$1" >"$T/ids.out" || note acked_losses "$(cat "$T/ids.out")"
}

check_pg() {
	[ -s "$T/pg.ids" ] || [ -e "$M/pg/PG_VERSION" ] || return 0
	[ -e "$M/pg/PG_VERSION" ] ||
		{ note acked_losses "PostgreSQL's data folder is gone, $(wc -l <"$T/pg.ids") commits were acknowledged"; return 0; }
	: >"$T/pgsock/pg.log"
	pc_pg_start "$M/pg" || { note corrupt_databases "PostgreSQL did not start after the cut: $(tail -n 3 "$T/pgsock/pg.log" | tr '\n' ' ')"; pg_kill; return 0; }
	pg "$PGBIN/psql -X -A -t -h $T/pgsock -p $PGPORT -c 'SELECT id FROM acked' postgres" >"$T/have.ids" 2>/dev/null ||
		note corrupt_databases "PostgreSQL: SELECT from acked failed"
	python3 "$T/check_ids.py" "$T/pg.ids" "$T/have.ids" postgres >"$T/ids.out" || note acked_losses "$(cat "$T/ids.out")"
	if [ -x "$PGBIN/pg_amcheck" ]; then
		pg "$PGBIN/pg_amcheck -h $T/pgsock -p $PGPORT --heapallindexed -d postgres" >"$T/amcheck.log" 2>&1 ||
			note corrupt_databases "pg_amcheck: $(head -n 3 "$T/amcheck.log" | tr '\n' ' ')"
	fi
	pg_stop "$M/pg" 2>/dev/null || pg_kill
	PGD= PG_PID=
}

# check_snapshots: each snapshot listed ok equals the replay --until its LSN
check_snapshots() {
	local name lsn state json
	json=$("$CTL" snapshot list --json "$M" 2>"$T/list.err") ||
		{ note wrong_snapshots "snapshot list failed: $(head -n 1 "$T/list.err")"; return 0; }
	while read -r name lsn state; do
		[ "$state" = ok ] || { echo "  snapshot $name (lsn $lsn) listed as '$state'"; continue; }
		rm -rf "$T/sref" && mkdir -p "$T/sref"
		# shellcheck disable=SC2046
		if ! "$CTL" replay --to "$T/sref" --until "$lsn" $(segs_upto "$D/.mirrorfs/journal") \
			>"$T/sreplay.log" 2>&1; then
			note wrong_snapshots "snapshot $name (lsn $lsn): replay --until failed: $(tail -n 1 "$T/sreplay.log")"
			continue
		fi
		"$CTL" verify "$M/.mirrorfs/snapshots/$name" "$T/sref" >"$T/sverify.log" 2>&1 ||
			note wrong_snapshots "snapshot $name (lsn $lsn, listed ok) differs from replay --until $lsn: $(head -n 3 "$T/sverify.log" | tr '\n' ' ')"
	done < <(echo "$json" | python3 "$T/snaps.py")
}

keep_evidence() { # I
	[ -n "$KEEP" ] || return 0
	mkdir -p "$KEEP/cut-$1"
	cp -a "$D" "$KEEP/cut-$1/data" 2>/dev/null || true
	cp "$T/fs.log" "$T/writer.log" "$T/small.log" "$T/wal.ids" "$T/rb.ids" "$KEEP/cut-$1/" 2>/dev/null || true
	echo "  evidence kept in $KEEP/cut-$1"
}

one_cut() {
	local i=$1 s mode tseed delay sync fault="" with_pg=0 t0 stats
	FAILED_HERE=0
	s=$(((SEED * 7919 + i * 104729) % 2147483647))
	RANDOM=$((s % 32768))
	if [ $((i % 2)) = 0 ]; then mode=drop tseed=; else mode=torn tseed=$((s ^ RANDOM)); fi
	delay=$((1000 + RANDOM % 2500)) # the workload needs about 1 s to start
	if [ $((RANDOM % 2)) = 0 ]; then sync=FULL; else sync=EXTRA; fi
	case $((RANDOM % 10)) in
	0 | 1) fault=MFS_FAULT_CHECKPOINT_DELAY_MS=200 ;;
	2) fault=MFS_FAULT_CRASH_IN_SNAPSHOT=1 ;;
	3) fault=MFS_FAULT_CRASH_IN_SNAPSHOT=sealed ;;
	esac
	[ "$PGEVERY" -gt 0 ] && [ $((i % PGEVERY)) = 0 ] && with_pg=1
	CUT_TAG="cut $i seed $s: $mode${tseed:+ $tseed}, kill at ${delay} ms, sqlite $sync${fault:+, $fault}"
	[ "$with_pg" = 1 ] && CUT_TAG="$CUT_TAG, postgres"
	t0=$(date +%s%N)
	: >"$T/fs.log"

	cut_mount
	mkdir "$D"
	mkdir -p "$M"
	ctl sync # the empty DATADIR is durable before mirrorfs starts
	# shellcheck disable=SC2086
	env $fault "$FS" -f -o rotate_size=256K,rotate_interval=2,checkpoint_interval=1 "$D" "$M" 2>>"$T/fs.log" &
	MFS_PID[$M]=$!
	wait_for mountpoint -q "$M" || { note harness_errors "first mount failed: $(tail -n 2 "$T/fs.log" | tr '\n' ' ')"; pc_kill9; cut_umount; return 0; }
	# the new data set's '.mirrorfs' entry durable in DATADIR: checked once, by cut point 0
	[ -n "$STRICT" ] || fsync_dir "$D"
	if [ "$with_pg" = 1 ]; then
		# no ACLs: cutfs keeps system.posix_acl_* as plain xattrs, the replay's folder does not
		mkdir "$M/pg"
		tar -C "$T/pgtpl" --no-acls --no-xattrs -cf - . | tar -C "$M/pg" --no-acls --no-xattrs -xpf -
		pc_pg_start "$M/pg" || note harness_errors "PostgreSQL did not start on the mount"
	fi
	start_workload "$s" "$sync" "$with_pg"
	sleep "$((delay / 1000)).$(printf %03d $((delay % 1000)))"

	# the crash, then the power cut (with the kernel's dirty pages of cutfs first).
	# The workload is frozen first: after the lazy unmount, a process that
	# opens a path under $M would write into the bare mountpoint folder and
	# log commits mirrorfs never saw (a false acknowledged loss, seen under
	# load); its requests in flight still meet the crash.
	for p in $WPIDS; do kill -STOP "$p" 2>/dev/null || true; done
	pc_kill9
	for p in $WPIDS; do kill -KILL "$p" 2>/dev/null || true; done
	stop_workload
	sync -f "$C" 2>/dev/null || true
	stats=$(tr '\n' ' ' <"$C/.cutfs-ctl")
	if [ -n "$CONTROL" ]; then
		ctl sync # negative control: a crash of mirrorfs alone, nothing lost
	else
		ctl "cut $mode${tseed:+ $tseed}"
	fi
	COUNT[cuts]=$((COUNT[cuts] + 1))

	# (a) the mount
	if ! mfs_try_mount "$D" "$M"; then
		note refused_mounts "mirrorfs refused to mount: $(grep -v '^$' "$T/fs.log" | tail -n 3 | tr '\n' ' ')"
		keep_evidence "$i"
		cut_umount
		return 0
	fi
	# (b) acknowledged writes and commits
	[ -s "$T/writer.log" ] && { python3 "$T/check_writer.py" "$M" "$T/writer.log" "$s" >"$T/cw.out" 2>&1 ||
		note acked_losses "$(grep -v '^writer:' "$T/cw.out" | head -n 3 | tr '\n' ' ')"; }
	[ -s "$T/small.log" ] && { python3 "$T/check_small.py" "$M" "$T/small.log" "$s" >"$T/cs.out" 2>&1 ||
		note acked_losses "$(grep -v '^small:' "$T/cs.out" | head -n 3 | tr '\n' ' ')"; }
	check_sqlite wal.db wal.ids
	check_sqlite rb.db rb.ids
	[ "$with_pg" = 1 ] && check_pg
	# (d) snapshots
	check_snapshots
	# (c) the replay of every segment equals DATADIR, seen through the mount
	# (which hides the hard links of live snapshots' trees in DATADIR)
	"$CTL" rotate "$M" >/dev/null 2>&1 || note harness_errors "rotate after the cut failed"
	if ! replay_journal "$D/.mirrorfs" "$T/copy" 2>"$T/replay.err"; then
		note divergences "replay of all segments failed: $(tail -n 2 "$T/replay.err" | tr '\n' ' ')"
	elif ! "$CTL" verify "$M" "$T/copy" >"$T/verify.log" 2>&1; then
		note divergences "DATADIR differs from the replay of all segments: $(head -n 4 "$T/verify.log" | tr '\n' ' ')"
	fi
	if ! mfs_try_umount "$M"; then
		note harness_errors "mirrorfs exited non-zero at unmount: $(tail -n 2 "$T/fs.log" | tr '\n' ' ')"
	fi
	[ "$FAILED_HERE" = 1 ] && keep_evidence "$i"
	cut_umount
	rm -rf "$T/copy" "$T/sref"
	echo "ok [$CUT_TAG] $(((($(date +%s%N) - t0)) / 1000000)) ms; before the cut: $stats" |
		{ if [ "$FAILED_HERE" = 1 ]; then sed 's/^ok/--/'; else cat; fi; }
}

fsync_dir() { python3 -c 'import os, sys; fd = os.open(sys.argv[1], os.O_RDONLY | os.O_DIRECTORY); os.fsync(fd)' "$1"; }

# Cut point 0: a new data set, one acknowledged write, kill -9, drop cut.
# The data set must survive: mirrorfs must make DATADIR/.mirrorfs durable
# (fsync DATADIR) before it acknowledges anything.
first_mount_cut() {
	CUT_TAG="cut 0: a new data set, drop"
	FAILED_HERE=0
	: >"$T/fs.log"
	cut_mount
	mkdir "$D" "$M" 2>/dev/null || mkdir -p "$D" "$M"
	ctl sync
	mfs_try_mount "$D" "$M" -o checkpoint_interval=3600 || fail "cut 0: mirrorfs did not mount on a fresh DATADIR"
	python3 -c 'import os, sys; fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o644); os.write(fd, b"acked"); os.fsync(fd)' "$M/first"
	fsync_dir "$M"
	pc_kill9
	sync -f "$C" 2>/dev/null || true
	if [ -n "$CONTROL" ]; then ctl sync; else ctl "cut drop"; fi
	COUNT[cuts]=$((COUNT[cuts] + 1))
	if ! mfs_try_mount "$D" "$M"; then
		note refused_mounts "mirrorfs refused to mount: $(grep -v '^$' "$T/fs.log" | tail -n 3 | tr '\n' ' ')"
	else
		[ "$(cat "$M/first" 2>/dev/null)" = acked ] ||
			note acked_losses "an acknowledged write to a new data set is gone after the cut$(grep -c 'new data set' "$T/fs.log" | sed 's/^2$/ (mirrorfs started a second new data set: DATADIR\/.mirrorfs was never made durable)/;s/^[0-9]*$//')"
		mfs_try_umount "$M" || true
	fi
	cut_umount
	echo "$([ "$FAILED_HERE" = 1 ] && echo -- || echo ok) [$CUT_TAG]"
}

# ---- cutfs itself -------------------------------------------------------------------

# The model, checked before anything depends on it: fsync'ed data and
# fsync'ed entries survive a drop cut, nothing else does; a torn cut keeps a
# mixture at 512-byte granularity; mmap'ed writes reach cutfs with sync -f;
# a rename is one change across two folders.
cutfs_selfcheck() {
	step "cutfs self-check"
	cut_mount
	python3 - "$C" <<'PY' || fail "cutfs self-check (the harness's disk model is wrong)"
import mmap, os, sys
c = sys.argv[1]
def ctl(cmd):
    with open(c + "/.cutfs-ctl", "w") as f: f.write(cmd)
def fsync_path(p, d=False):
    fd = os.open(p, os.O_RDONLY | (os.O_DIRECTORY if d else 0)); os.fsync(fd); os.close(fd)
def put(p, data, sync=False):
    fd = os.open(p, os.O_RDWR | os.O_CREAT, 0o644); os.pwrite(fd, data, 0)
    if sync: os.fsync(fd)
    os.close(fd)
def read(p):
    try: return open(p, "rb").read()
    except FileNotFoundError: return None
assert ".cutfs-ctl" not in os.listdir(c)
os.mkdir(c + "/d"); os.mkdir(c + "/e"); os.mkdir(c + "/f"); fsync_path(c, True)
put(c + "/d/synced", b"A" * 10000, sync=True); fsync_path(c + "/d", True)
put(c + "/f/nodirsync", b"B" * 100, sync=True)          # entry never made durable
fd = os.open(c + "/d/synced", os.O_RDWR); os.pwrite(fd, b"C" * 3000, 9000); os.close(fd)  # unsynced
put(c + "/d/moved", b"M" * 10, sync=True); fsync_path(c + "/d", True)
os.rename(c + "/d/moved", c + "/e/moved"); fsync_path(c + "/e", True)  # one change, both folders
put(c + "/d/mm", bytes(8192), sync=True); fsync_path(c + "/d", True)
fd = os.open(c + "/d/mm", os.O_RDWR); m = mmap.mmap(fd, 8192); m[0:4] = b"MMAP"; m.close(); os.close(fd)
os.system("sync -f " + c)
stats = open(c + "/.cutfs-ctl").read()
assert "unsynced_bytes 0\n" not in stats, stats
ctl("cut drop")
assert read(c + "/d/synced") == b"A" * 10000, "fsync'ed data lost or unsynced data kept"
assert read(c + "/f/nodirsync") is None, "an entry without a folder fsync survived"
assert read(c + "/d/moved") is None and read(c + "/e/moved") == b"M" * 10, "rename not one change"
assert read(c + "/d/mm") == bytes(8192), "unsynced mmap'ed write survived a drop cut"
# the same after a reboot: the durable state goes on
put(c + "/d/synced", b"D" * 20000, sync=True)
fsync_path(c + "/d", True)
os.truncate(c + "/d/synced", 100)
ctl("cut drop")
assert read(c + "/d/synced") == b"D" * 20000, "truncate without fsync survived"
# torn: sectors of both, sizes old or new, over seeds
seen_mix = seen_old = seen_new = False
seen_entry = {True: False, False: False}
for seed in range(1, 40):
    if os.path.exists(c + "/d/t"): os.unlink(c + "/d/t")
    put(c + "/d/t", b"o" * 8192, sync=True); fsync_path(c + "/d", True)
    fd = os.open(c + "/d/t", os.O_RDWR); os.pwrite(fd, b"n" * 12288, 0); os.close(fd)
    put(c + "/d/new%d" % seed, b"x")
    ctl("cut torn %d" % seed)
    t = read(c + "/d/t")
    assert len(t) in (8192, 12288), len(t)
    for k in range(0, len(t), 512):
        s = t[k:k + 512]
        assert s in (b"o" * 512, b"n" * 512) or (k >= 8192 and s == bytes(512)), "torn inside a sector"
    kinds = set(t[k:k + 1] for k in range(0, 8192, 512))
    seen_mix |= len(kinds) == 2
    seen_old |= len(t) == 8192
    seen_new |= len(t) == 12288
    seen_entry[os.path.exists(c + "/d/new%d" % seed)] = True
assert seen_mix and seen_old and seen_new, "torn cuts never mixed sectors, or never kept a size"
assert seen_entry[True] and seen_entry[False], "torn cuts always or never kept an unsynced entry"
print("cutfs self-check: ok")
PY
	cut_umount
}

# ---- main -------------------------------------------------------------------------

cutfs_selfcheck
pg_ready
step "power cuts"
T_START=$(date +%s)
if [ -n "$ONLY" ]; then
	if [ "$ONLY" = 0 ]; then first_mount_cut; else one_cut "$ONLY"; fi
else
	first_mount_cut
	for i in $(seq "$CUTS"); do one_cut "$i"; done
fi
T_END=$(date +%s)
echo
echo "seed $SEED: ${COUNT[cuts]} cut points in $((T_END - T_START)) s"
bad=0
for k in divergences acked_losses refused_mounts wrong_snapshots corrupt_databases harness_errors; do
	printf '%-18s %d\n' "$k" "${COUNT[$k]}"
	bad=$((bad + COUNT[$k]))
done
printf '%-18s %d\n' cut_points "${COUNT[cuts]}"
[ "$bad" = 0 ] || fail "$bad failures over ${COUNT[cuts]} cut points (seed $SEED)"
echo PASS
