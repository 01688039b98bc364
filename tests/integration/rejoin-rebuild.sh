#!/bin/bash
# SPDX-License-Identifier: MIT
#
# rejoin-rebuild.sh - the rebuild path of a diverged old primary, from a
# snapshot of the new primary, without stopping the new primary's workload
# (docs/runbook.md, step 7, "Rebuild").
#
#  1. primary A (rotate_interval=1) with a workload (files + SQLite in WAL
#     mode, one transaction per iteration), mirrorfs-ship to mirror B's
#     incoming, mirrord on B;
#  2. kill -9 of A's mirrorfs under load, promote B with A's last closed
#     segments and its open segment, mount B as the new primary, the
#     workload continues on B, shipped to an incoming folder of A;
#  3. split brain: A's old data dir is mounted again and gets a few records
#     B never sees; `mirrorctl rejoin` refuses (naming both LSNs) and
#     mirrord refuses the old primary's data dir (short: mirror-rejoin.sh
#     covers this in detail);
#  4. rebuild while B keeps writing: `snapshot create` on B, rsync of the
#     view over A's data dir, A's old journal (.mirrorfs) removed, A's
#     mirror state set to the snapshot's data set and LSN, `snapshot
#     delete`, mirrord on A applying B's segments (those <= the snapshot LSN
#     skipped); then the workload stops, B rotates, the rest is shipped,
#     `mirrord --once`.
#
# Asserts: `mirrorctl verify` B = A; SQLite integrity on A's copy; the same
# rows on both (count, rows per writer, md5 of .dump); the split-brain rows and
# file are gone from A; A's applied LSN is B's last LSN; mirrord applied
# exactly B's segments after the snapshot and skipped the others.
set -eu
. "$(dirname "$0")/lib.sh"
[ -x "$MIRRORD" ] || skip "mirrord not built"
[ "$(id -u)" = 0 ] || skip "needs root"
for c in rsync sqlite3 python3 getfattr; do
	command -v "$c" >/dev/null || skip "no $c"
done

A=$T/a B=$T/b
mkdir -p "$A/data" "$A/incoming" "$B/data" "$B/incoming" "$B/state"
STOP=$T/stop
declare -A BG=() # name -> pid of a background helper (workload, shipper, mirrord)

# The background helpers stopped by PID (before lib.sh unmounts everything).
EXTRA_CLEANUP='stop_pid ${BG[*]}'

# bg_stop NAME: stop one helper, wait for it.
bg_stop() {
	[ -z "${BG[$1]:-}" ] || stop_pid "${BG[$1]}"
	unset "BG[$1]"
}

# has_segments DIR: DIR holds at least one closed segment.
has_segments() {
	ls "$1" | grep -q '\.mfsj$'
}

# Workload: until $STOP exists, one SQLite transaction (insert, sometimes an
# update and a delete, rows tagged with WHO) and a few file operations per
# iteration, in MNT/db. Exits 1 at the first I/O error (the mount died).
cat >"$T/workload.py" <<'PY'
import os, sqlite3, sys, time
mnt, who, stop = sys.argv[1], sys.argv[2], sys.argv[3]
d = os.path.join(mnt, "db")
os.makedirs(os.path.join(d, "files"), exist_ok=True)
db = sqlite3.connect(os.path.join(d, "s.db"), timeout=10, isolation_level=None)
db.execute("PRAGMA journal_mode=WAL")
db.execute("PRAGMA synchronous=FULL")
db.execute("CREATE TABLE IF NOT EXISTS t(a INTEGER PRIMARY KEY, who TEXT, i INT, b BLOB)")
i = 0
while not os.path.exists(stop):
    i += 1
    db.execute("BEGIN")
    db.execute("INSERT INTO t(who, i, b) VALUES(?, ?, randomblob(?))", (who, i, 100 + i % 900))
    if i % 3 == 0:
        db.execute("UPDATE t SET b = randomblob(300) WHERE a = (SELECT max(a) - 5 FROM t)")
    if i % 7 == 0:
        db.execute("DELETE FROM t WHERE a = (SELECT min(a) FROM t WHERE who = ?)", (who,))
    db.execute("COMMIT")
    with open(os.path.join(d, "log.txt"), "a") as f:
        f.write("%s %d\n" % (who, i))
    p = os.path.join(d, "files", "%s-%d" % (who, i % 40))
    with open(p, "wb") as f:
        f.write(os.urandom(512 + (i * 37) % 8192))
    if i % 5 == 0:
        os.rename(p, p + ".old")
    time.sleep(0.01)
db.close()
PY

# start_workload NAME MNT WHO
start_workload() {
	rm -f "$STOP"
	python3 "$T/workload.py" "$2" "$3" "$STOP" 2>>"$T/workload-$3.log" &
	BG[$1]=$!
}

# start_ship NAME MNT DEST: mirrorfs-ship every 0.2 s, no trim.
start_ship() {
	"$SHIP" --interval 0.2 --status "$T/$1.json" --mirrorctl "$CTL" "$2" "$3" \
		2>>"$T/$1.log" &
	BG[$1]=$!
}

# start_mirrord NAME DATA STATE INCOMING
start_mirrord() {
	"$MIRRORD" --incoming "$4" --data "$2" --state "$3" 2>>"$T/$1.log" &
	BG[$1]=$!
}

# db_facts DB: "ROWS|PER-WRITER-COUNTS|MD5 OF .dump" of a copy of DB (never
# opened in place: a data dir is not touched behind mirrorfs's back).
db_facts() {
	local c=$T/dbcopy.$RANDOM facts
	mkdir "$c"
	cp "$1" "$c/s.db"
	[ ! -e "$1-wal" ] || cp "$1-wal" "$c/s.db-wal"
	facts=$(sqlite3 "$c/s.db" "SELECT (SELECT count(*) FROM t) || '|' ||
		(SELECT group_concat(x) FROM (SELECT who || ':' || count(*) AS x FROM t
					     GROUP BY who ORDER BY who));")
	echo "$facts|$(sqlite3 "$c/s.db" .dump | md5sum | cut -d' ' -f1)"
	rm -rf "$c"
}

# =============================================================== 1. set up
step "primary A with a workload, shipped to mirror B (mirrord running)"
mfs_mount "$A/data" "$A/mnt" -o rotate_interval=1
start_workload wlA "$A/mnt" A
start_ship shipA "$A/mnt" "$B/incoming"
start_mirrord mdB "$B/data" "$B/state" "$B/incoming"
wait_for test -s "$A/mnt/db/log.txt" || fail "the workload on A did not start"
sleep 4 # let A rotate and ship a few segments under load
wait_for applied_ge "$B/state" 1 ||
	fail "mirror B applied nothing from A"

# ============================================ 2. A dies, B is promoted
step "kill -9 of A under load; B promoted with A's remaining segments"
mfs_kill9 "$A/mnt"
bg_stop wlA
bg_stop shipA
bg_stop mdB
# runbook step 5: the closed segments still in A's journal, and its open one
rsync -a --include='*.mfsj' --exclude='*' "$A/data/.mirrorfs/journal/" "$B/incoming/"
# A kill between the sealing of a segment and the creation of the next one
# leaves no open segment: everything is in closed ones, promote without it
current=()
open_seg=$(ls "$A/data/.mirrorfs/open/" | grep '^open-.*\.mfsj$' | tail -n 1 || true)
if [ -n "$open_seg" ]; then
	cp "$A/data/.mirrorfs/open/$open_seg" "$T/current.mfsj"
	current=(--current "$T/current.mfsj")
else
	echo "A died with no open segment"
fi
"$CTL" promote --data "$B/data" --state "$B/state" --incoming "$B/incoming" \
	"${current[@]}" >"$T/promote.log" 2>&1 ||
	{ cat "$T/promote.log"; fail "promote B"; }
P=$(sed -n 's/.*final LSN \([0-9]*\).*/\1/p' "$T/promote.log")
[ -n "$P" ] || { cat "$T/promote.log"; fail "promote did not print the final LSN"; }
echo "promoted at LSN $P"

step "B is the new primary; the workload goes on there, shipped to A's incoming"
mfs_mount "$B/data" "$B/mnt" -o rotate_interval=1
DS=$(status_field "$B/mnt" dataset)
start_workload wlB "$B/mnt" B
start_ship shipB "$B/mnt" "$A/incoming"

# ===================================================== 3. split brain
step "split brain: A's old data dir gets records B never sees"
mfs_mount "$A/data" "$A/mnt2" # crash recovery of A's journal
sqlite3 "$A/mnt2/db/s.db" ".timeout 5000" \
	"INSERT INTO t(who, i, b) VALUES('split', 1, randomblob(100));
	 INSERT INTO t(who, i, b) VALUES('split', 2, randomblob(100));
	 INSERT INTO t(who, i, b) VALUES('split', 3, randomblob(100));" ||
	fail "split-brain writes on A"
echo "unseen change" >"$A/mnt2/db/unseen"
mfs_umount "$A/mnt2"
[ "$(db_facts "$A/data/db/s.db" | grep -c 'split:3')" = 1 ] || fail "split-brain rows not in A's data"

wait_for has_segments "$A/incoming" || fail "no segment of B shipped to A"
if "$CTL" rejoin --data "$A/data" --state "$A/state" --incoming "$A/incoming" \
	2>"$T/rejoin.log"; then
	fail "mirrorctl rejoin accepted a diverged old primary"
fi
grep -q "refusing to rejoin.*LSNs up to [0-9]*.*from LSN [0-9]*" "$T/rejoin.log" ||
	{ cat "$T/rejoin.log"; fail "the refusal does not name both LSNs"; }
[ ! -e "$A/state/applied" ] || fail "a refused rejoin wrote a mirror state"
if "$MIRRORD" --once --incoming "$A/incoming" --data "$A/data" --state "$A/state" \
	2>"$T/md-refuse.log"; then
	fail "mirrord applied onto a diverged old primary"
fi
grep -q "was a primary" "$T/md-refuse.log" || { cat "$T/md-refuse.log"; fail "mirrord refusal unclear"; }

# ======================================= 4. rebuild, B keeps writing
step "rebuild of A from a snapshot of B, B's workload running"
out=$("$CTL" snapshot create "$B/mnt" rebuild) || fail "snapshot create on B"
N=$(echo "$out" | sed -n 's/^rebuild lsn=\([0-9]*\) window_us=[0-9]*$/\1/p')
[ -n "$N" ] || fail "snapshot create printed '$out', not 'rebuild lsn=N window_us=W'"
[ "$N" -gt "$P" ] || fail "snapshot LSN $N not after the promotion LSN $P"
V=$B/mnt/.mirrorfs/snapshots/rebuild
[ "$(getfattr --absolute-names -n user.mirrorfs.lsn --only-values "$V")" = "$N" ] ||
	fail "user.mirrorfs.lsn of the view is not $N"
VDS=$(getfattr --absolute-names -n user.mirrorfs.dataset --only-values "$V")
[ "$VDS" = "$DS" ] || fail "user.mirrorfs.dataset of the view '$VDS' is not B's data set '$DS'"
echo "snapshot 'rebuild' at LSN $N, data set $VDS"
# The view's root shows two synthetic xattrs (user.mirrorfs.lsn/.dataset);
# rsync -X would copy them onto A's root: filter them out.
rsync -aHAX --numeric-ids --delete --exclude=/.mirrorfs --filter='-x user.mirrorfs.*' \
	"$V/" "$A/data/" || fail "rsync of the snapshot view to A"
# A's own journal folder must go: it holds the split-brain history, and
# mirrord (given the applied state below) would not mind it, but a later
# promote + mount of A would continue A's stale open segment at its old LSNs
# (mount continues any open/open-*.mfsj, whatever .mirrorfs/state says).
# A fresh state folder too: A's is the one the refusals above used.
rm -rf "$A/data/.mirrorfs"
rm -rf "$A/state"
mkdir -p "$A/state"
printf 'data_set %s\napplied_lsn %s\n' "$VDS" "$N" >"$A/state/applied"
"$CTL" snapshot delete "$B/mnt" rebuild || fail "snapshot delete on B"
[ ! -e "$V" ] || fail "the view is still there after snapshot delete"
start_mirrord mdA "$A/data" "$A/state" "$A/incoming"

wait_for applied_ge "$A/state" $((N + 1)) ||
	{ cat "$T/mdA.log"; fail "mirrord on the rebuilt A applied nothing after LSN $N"; }
sleep 3 # B keeps writing, rotating, shipping; A keeps applying

step "B's workload stops; B rotates, ships the rest; mirrord --once on A"
touch "$STOP"
wait "${BG[wlB]}" || fail "the workload on B failed: $(tail -n 5 "$T/workload-B.log")"
unset "BG[wlB]"
"$CTL" rotate "$B/mnt" >/dev/null || fail "rotate B"
bg_stop shipB
"$SHIP" --once --status "$T/shipB-once.json" --mirrorctl "$CTL" "$B/mnt" "$A/incoming" \
	2>>"$T/shipB.log" || fail "last shipping B -> A"
bg_stop mdA
"$MIRRORD" --once --incoming "$A/incoming" --data "$A/data" --state "$A/state" \
	2>>"$T/mdA.log" || { tail -n 20 "$T/mdA.log"; fail "mirrord --once on A"; }

last=$(seg_last "$(segs_upto "$B/mnt/.mirrorfs/journal" | tail -n 1)")
[ "$(applied_lsn "$A/state")" = "$last" ] ||
	fail "A applied up to LSN $(applied_lsn "$A/state"), B's last closed segment ends at $last"
# every segment after the snapshot applied, every one up to it skipped
after=0 before=0
for s in $(segs_upto "$B/mnt/.mirrorfs/journal"); do
	first=$(seg_first "$s")
	if [ "$first" -gt "$N" ]; then after=$((after + 1)); else before=$((before + 1)); fi
done
napplied=$(sed -n 's/^segments_applied \([0-9]*\)$/\1/p' "$A/state/applied")
[ "$napplied" = "$after" ] ||
	fail "mirrord on A applied $napplied segments; B has $after after LSN $N ($before up to it)"
[ "$before" -gt 0 ] || fail "no segment of B up to the snapshot LSN: nothing was skipped"
! has_segments "$A/incoming" ||
	fail "segments left in A's incoming: $(ls "$A/incoming/")"
echo "A: $napplied segments applied, $before skipped, applied LSN $last"

mfs_umount "$B/mnt"
verify_equal "$B/data" "$A/data" || fail "the rebuilt A differs from the new primary B"
sqlite_ok "$A/data/db/s.db" || fail "SQLite integrity on A's copy"
fa=$(db_facts "$A/data/db/s.db") fb=$(db_facts "$B/data/db/s.db")
echo "rows B: $fb"
[ "$fa" = "$fb" ] || fail "A's SQLite rows '$fa' differ from B's '$fb'"
case "$fa" in *split*) fail "split-brain rows still in the rebuilt A: $fa" ;; esac
case "$fa" in *B:*) ;; *) fail "no row of B's workload in A: $fa" ;; esac
[ ! -e "$A/data/db/unseen" ] || fail "the split-brain file is still in the rebuilt A"
grep -q '^B ' "$A/data/db/log.txt" || fail "B's workload log lines missing in A"
# mirrord keeps only its lock there (.mirrorfs/lock): never a journal or a state
[ -z "$(ls -A "$A/data/.mirrorfs" 2>/dev/null | grep -vx lock)" ] ||
	fail "mirrord recreated a journal in A: $(ls -A "$A/data/.mirrorfs")"
# verify does not compare the top directories themselves: check A's root
[ -z "$(getfattr --absolute-names -d -m '^user\.mirrorfs\.' "$A/data" 2>/dev/null)" ] ||
	fail "the snapshot view's root xattrs were copied onto A's data dir"
[ "$(stat -c '%a %u %g' "$A/data")" = "$(stat -c '%a %u %g' "$B/data")" ] ||
	fail "A's data dir root differs from B's: $(stat -c '%a %u %g' "$A/data" "$B/data")"
echo "PASS rejoin-rebuild"
