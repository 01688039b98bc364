#!/bin/bash
# SPDX-License-Identifier: MIT
# mirror-e2e.sh - the whole chain on the real filesystem: mirrorfs mounted
# with rotate_interval=1, a mixed workload and SQLite transactions on the
# mount, `mirrorctl rotate`, rsync of .mirrorfs/journal/ into a mirror's
# incoming folder, mirrord applying it continuously (inotify, shipped while
# the workload runs) and with --once; `mirrorctl verify` of the backing
# folder against each mirror, PRAGMA integrity_check on the mirror copies.
# Then kill -9 of mirrord at 20 random points during apply, restart, same
# final tree.
set -eu
. "$(dirname "$0")/lib.sh"
command -v sqlite3 >/dev/null || skip "no sqlite3"
command -v rsync >/dev/null || skip "no rsync"
[ -x "$MIRRORD" ] || skip "mirrord not built"
N=${MFS_E2E_TXNS:-3000}

DPID= SPID=
EXTRA_CLEANUP='stop_pid $SPID $DPID'

J=$T/mnt/.mirrorfs/journal
ship() { # ship DEST: the closed segments, the way an operator ships them
	rsync -a "$J/" "$1/"
}
journal_last() { # the last LSN of the closed segments
	local s
	s=$(segs_upto "$J" | tail -n 1)
	[ -z "$s" ] || seg_last "$s"
}
mirror_dirs() { mkdir -p "$T/$1/in" "$T/$1/data" "$T/$1/state"; }

mkdir -p "$T/data"
mfs_mount "$T/data" "$T/mnt" -o rotate_interval=1

step "continuous mirror running, shipped every 0.5 s while the workload runs"
mirror_dirs live
"$MIRRORD" --incoming "$T/live/in" --data "$T/live/data" --state "$T/live/state" \
	2>"$T/live.log" &
DPID=$!
( while :; do rsync -a "$J/" "$T/live/in/" 2>/dev/null || true; sleep 0.5; done ) &
SPID=$!

step "mixed workload on the mount"
M=$T/mnt
mkdir -p "$M/app/logs" "$M/app/cache/a/b" "$M/tmp"
for i in $(seq 1 40); do
	head -c $((i * 1500)) /dev/urandom > "$M/app/f$i"
	printf 'line %d\n' "$i" >> "$M/app/logs/app.log"
done
dd if=/dev/urandom of="$M/app/big" bs=1M count=6 status=none
dd if=/dev/urandom of="$M/app/big" bs=4096 count=64 seek=100 conv=notrunc status=none
dd if=/dev/zero of="$M/app/big" bs=1 count=1 seek=$((9 << 20)) conv=notrunc status=none
truncate -s 5000 "$M/app/f3"
truncate -s 100000 "$M/app/f4"
mv "$M/app/f5" "$M/app/cache/a/b/moved"
mv "$M/app/cache/a" "$M/app/renamed-dir"
ln "$M/app/f6" "$M/app/f6.hard"
ln -s f7 "$M/app/f7.link"
ln -s ../outside "$M/app/dangling"
chmod 600 "$M/app/f8"
chmod 750 "$M/app/logs"
python3 -c 'import os, sys; os.setxattr(sys.argv[1], "user.tag", b"primary")' "$M/app/f9" ||
	fail "setxattr on the mount"
rm "$M/app/f10" "$M/app/f11"
echo scratch > "$M/tmp/x"
rm -r "$M/tmp"
mkdir "$M/db"

step "SQLite: $N transactions in WAL mode, $((N / 3)) in rollback-journal mode"
sqlite_workload "$M/db/wal.db" wal "$N" || fail "sqlite (wal) failed"
sqlite_workload "$M/db/rollback.db" delete $((N / 3)) || fail "sqlite (delete) failed"
sqlite_ok "$M/db/wal.db" || fail "integrity (wal) on the mount"

step "mirrorctl rotate, final rsync"
sync
"$CTL" rotate "$M" >/dev/null || fail "mirrorctl rotate"
kill "$SPID"; wait "$SPID" 2>/dev/null || true; SPID=
ship "$T/live/in"
mkdir -p "$T/segs"
ship "$T/segs" # kept for the kill -9 rounds
last=$(journal_last)
[ -n "$last" ] || fail "no closed segment in '$J'"
echo "   journal: $(ls "$J" | wc -l) segments, last LSN $last"

step "continuous mirror catches up (inotify)"
wait_for applied_ge "$T/live/state" "$last" ||
	fail "continuous mirror stuck at LSN $(applied_lsn "$T/live/state") < $last: $(tail -3 "$T/live.log")"
kill -TERM "$DPID"
wait "$DPID" || fail "mirrord did not stop cleanly on SIGTERM"
DPID=
[ "$(applied_lsn "$T/live/state")" -eq "$last" ] || fail "applied LSN beyond the journal"

step "mirrord --once on a fresh mirror"
mirror_dirs once
ship "$T/once/in"
t0=$(date +%s.%N)
"$MIRRORD" --incoming "$T/once/in" --data "$T/once/data" --state "$T/once/state" --once \
	2>"$T/once.log" || fail "--once failed: $(tail -3 "$T/once.log")"
t1=$(date +%s.%N)
APPLY_S=$(echo "$t1 - $t0" | bc -l)
[ "$(applied_lsn "$T/once/state")" -eq "$last" ] || fail "--once stopped before LSN $last"
[ -z "$(ls "$T/once/in/"*.mfsj 2>/dev/null)" ] || fail "--once left applied segments"

step "the mirrors equal the primary"
mfs_umount "$T/mnt"
verify_equal "$T/data" "$T/live/data" || fail "continuous mirror differs from the primary"
verify_equal "$T/data" "$T/once/data" || fail "--once mirror differs from the primary"
for d in live once; do
	sqlite_ok "$T/$d/data/db/wal.db" || fail "integrity (wal) on the $d mirror"
	sqlite_ok "$T/$d/data/db/rollback.db" || fail "integrity (rollback) on the $d mirror"
done
[ "$(sqlite3 "$T/data/db/wal.db" 'SELECT count(*) FROM t;')" = \
  "$(sqlite3 "$T/once/data/db/wal.db" 'SELECT count(*) FROM t;')" ] || fail "row counts differ"

step "kill -9 of mirrord at 20 random points during apply (full apply: ${APPLY_S}s)"
mirror_dirs k
# The segments arrive in 20 deliveries; each mirrord is killed at a random
# moment while it applies what arrived (a kill before its batch's flush and
# state save throws the batch away, one after it keeps it).
mapfile -t SEGS < <(ls "$T/segs" | sort)
max_ms=$(echo "$APPLY_S * 1000 / 3 + 20" | bc)
for round in $(seq 1 20); do
	upto=$(( (${#SEGS[@]} * round + 19) / 20 ))
	for s in "${SEGS[@]:0:$upto}"; do
		[ -e "$T/k/in/$s" ] || [ -e "$T/k/done.$s" ] || { cp "$T/segs/$s" "$T/k/in/.$s.tmp" &&
			mv "$T/k/in/.$s.tmp" "$T/k/in/$s" && : >"$T/k/done.$s"; }
	done
	before=$(applied_lsn "$T/k/state")
	"$MIRRORD" --incoming "$T/k/in" --data "$T/k/data" --state "$T/k/state" 2>/dev/null &
	DPID=$!
	ms=$((RANDOM % max_ms + 1))
	sleep "$((ms / 1000)).$(printf %03d $((ms % 1000)))"
	kill -9 "$DPID" 2>/dev/null || true
	wait "$DPID" 2>/dev/null || true
	DPID=
	echo "   kill $round after ${ms} ms ($upto/${#SEGS[@]} segments delivered):" \
		"applied LSN $before -> $(applied_lsn "$T/k/state")"
done
rsync -a --ignore-existing "$T/segs/" "$T/k/in/"
"$MIRRORD" --incoming "$T/k/in" --data "$T/k/data" --state "$T/k/state" --once 2>"$T/k.log" ||
	fail "final run after kill -9 failed: $(tail -3 "$T/k.log")"
[ "$(applied_lsn "$T/k/state")" -eq "$last" ] || fail "final run stopped before LSN $last"
verify_equal "$T/data" "$T/k/data" || fail "tree differs after kill -9 restarts"
sqlite_ok "$T/k/data/db/wal.db" || fail "integrity (wal) after kill -9 restarts"
echo PASS
