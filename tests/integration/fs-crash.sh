#!/bin/bash
# SPDX-License-Identifier: MIT
# fs-crash.sh - crash recovery.
#  1. kill -9 of mirrorfs at random points of a SQLite workload (WAL and
#     rollback journal), 20 times: remount recovers, integrity_check is ok,
#     and replaying the whole journal into an empty folder equals the
#     backing folder.
#  2. simulated power cut (WAL mode): the backing folder rolled back to its state at
#     the last checkpoint (what was never synced is lost) and the journal's
#     last 1-100 bytes of records cut off (a torn tail): the mount cuts the
#     tail, replays the journal after the checkpoint, and the databases are
#     ok. The open segment ends in its zeroed window (written zeros after the
#     last record, kept by small synced appends): the cut bytes are turned to
#     zeros in place (a torn append followed by zeros) or, every other time,
#     cut off the file with the zeros after them.
#  3. (between 1 and 2) a crash between a snapshot's switch to a new segment
#     and the seal of the old one: two open segments, which the mount seals
#     and continues without a gap; the snapshot is not kept.
#  4. (between 3 and 2) kill -9 after files' last names were unlinked (no
#     fence) and reused for a folder and a symlink: recovery replays the
#     files' writes as done, none fails; and a name so freed given to an
#     older file by a hard link: recovery leaves that file as it was.
set -eu
. "$(dirname "$0")/lib.sh"
command -v sqlite3 >/dev/null || skip "no sqlite3"
KILLS=${MFS_CRASH_KILLS:-20}
RANDOM=${MFS_SEED:-$$}
echo "seed $RANDOM"

WPID=
EXTRA_CLEANUP='stop_pid $WPID'

lsn_past() { [ "$(status_field "$1" last_lsn)" -ge "$2" ]; }

check_equivalence() {
	replay_journal "$T/data/.mirrorfs" "$T/copy" || fail "replay failed ($1)"
	verify_equal "$T/data" "$T/copy" || fail "journal and backing folder differ ($1)"
	sqlite_ok "$T/copy/wal.db" || fail "integrity of the replayed wal.db ($1)"
	sqlite_ok "$T/copy/rb.db" || fail "integrity of the replayed rb.db ($1)"
}

mkdir -p "$T/data"
mfs_mount "$T/data" "$T/mnt" -o rotate_size=4M
sqlite_workload "$T/mnt/wal.db" wal 50
sqlite_workload "$T/mnt/rb.db" delete 50
mfs_umount "$T/mnt"

step "$KILLS kill -9 at random points"
for i in $(seq "$KILLS"); do
	if [ $((i % 2)) = 0 ]; then db=wal.db mode=wal; else db=rb.db mode=delete; fi
	mfs_mount "$T/data" "$T/mnt" -o rotate_size=4M
	sqlite_ok "$T/mnt/wal.db" || fail "wal.db after crash $((i - 1))"
	sqlite_ok "$T/mnt/rb.db" || fail "rb.db after crash $((i - 1))"
	sqlite_workload "$T/mnt/$db" "$mode" 100000 2>/dev/null &
	WPID=$!
	[ $((i % 5)) = 0 ] && "$CTL" rotate "$T/mnt" >/dev/null
	sleep "0.$((RANDOM % 9 + 1))$((RANDOM % 10))"
	mfs_kill9 "$T/mnt"
	wait "$WPID" 2>/dev/null || true
	WPID=
	if [ $((i % 5)) = 0 ]; then
		# the backing folder may lack the records in flight at the kill
		# (journaled, not yet applied) until a mount recovers them
		mfs_mount "$T/data" "$T/mnt"
		mfs_umount "$T/mnt"
		check_equivalence "kill $i"
	fi
	echo -n "$i "
done
echo
mfs_mount "$T/data" "$T/mnt"
sqlite_ok "$T/mnt/wal.db" || fail "wal.db after the last crash"
sqlite_ok "$T/mnt/rb.db" || fail "rb.db after the last crash"
mfs_umount "$T/mnt"
check_equivalence "after the kills"
grep -c "recovery: replayed" "$T/fs.log" | sed 's/^/recoveries with replay: /'

# where: 1 = after the segment switch, before anything is synced (two open
# segments); sealed = after the first round of fsyncs (the old segment is
# sealed but still in open/, the snapshot still .new-NAME)
for where in 1 sealed; do
	step "crash in a snapshot ($where)"
	MFS_FAULT_CRASH_IN_SNAPSHOT=$where mfs_mount "$T/data" "$T/mnt"
	sqlite_workload "$T/mnt/wal.db" wal 30
	before=$(status_field "$T/mnt" last_lsn)
	if "$CTL" snapshot create "$T/mnt" crashed >/dev/null 2>&1; then fail "snapshot create survived the injected crash"; fi
	pid=${MFS_PID[$T/mnt]}
	rc=0; wait "$pid" || rc=$?
	[ "$rc" = 9 ] || fail "mirrorfs exited with $rc, not the injected crash's 9"
	fusermount3 -u -z "$T/mnt" 2>/dev/null || true
	unset "MFS_PID[$T/mnt]"
	n=$(ls "$T/data/.mirrorfs/open" | grep -c '^open-.*\.mfsj$')
	[ "$n" = 2 ] || fail "expected two open segments after the crash, found $n"
	[ -d "$T/data/.mirrorfs/snapshots/.new-crashed" ] || fail "no unfinished .new-crashed after the crash"
	older=$(ls "$T/data/.mirrorfs/open" | grep '^open-.*\.mfsj$' | sort | head -n 1)
	verdict=$("$CTL" dump "$T/data/.mirrorfs/open/$older" | tail -n 1)
	case $where in
	sealed) [[ $verdict == *"closed segment"* ]] || fail "the older segment is not sealed: $verdict" ;;
	*) [[ $verdict == *"closed segment"* ]] && fail "the older segment is sealed already: $verdict" ;;
	esac
	closed=$(ls "$T/data/.mirrorfs/journal" | grep -c '\.mfsj$' || true)
	mfs_mount "$T/data" "$T/mnt"
	sqlite_ok "$T/mnt/wal.db" || fail "wal.db after the crash in a snapshot ($where)"
	"$CTL" snapshot list "$T/mnt" | grep -q crashed && fail "the unacknowledged snapshot was kept"
	[ -e "$T/data/.mirrorfs/snapshots/.new-crashed" ] && fail ".new-crashed was not removed at mount"
	[ "$(status_field "$T/mnt" last_lsn)" -gt "$before" ] || fail "the snapshot's marker was lost"
	n=$(ls "$T/data/.mirrorfs/open" | grep -c '^open-.*\.mfsj$')
	[ "$n" = 1 ] || fail "recovery left $n open segments ($where)"
	# the older segment, sealed by the crash's recovery or before it, is in journal/
	[ "$(ls "$T/data/.mirrorfs/journal" | grep -c '\.mfsj$')" -gt "$closed" ] ||
		fail "the segment before the snapshot was not moved to journal/ ($where)"
	sqlite_workload "$T/mnt/wal.db" wal 10
	mfs_umount "$T/mnt"
	check_equivalence "crash in a snapshot ($where)"
done

step "names reused after the unlink of a file's last name (no fence)"
# The rename's fences put the tail's start after the files' creation; the
# writes and truncate after it are replayed onto the folder and the
# symlink later records made under the unlinked names: done, not failed.
mfs_mount "$T/data" "$T/mnt" -o checkpoint_interval=3600
mkdir "$T/mnt/re"
printf one >"$T/mnt/re/f"
printf one >"$T/mnt/re/h"
mv "$T/mnt/re/f" "$T/mnt/re/g"
printf two >>"$T/mnt/re/g"
truncate -s 2 "$T/mnt/re/g"
printf two >>"$T/mnt/re/h"
rm "$T/mnt/re/g" "$T/mnt/re/h"
mkdir "$T/mnt/re/g"
ln -s g "$T/mnt/re/h"
mfs_kill9 "$T/mnt"
: >"$T/fs.log"
mfs_mount "$T/data" "$T/mnt"
grep -q "recovery: replayed" "$T/fs.log" || fail "nothing replayed after the kill"
grep "recovery: LSN" "$T/fs.log" && fail "a replayed record failed onto a reused name"
[ -d "$T/mnt/re/g" ] && [ -L "$T/mnt/re/h" ] || fail "the reused names are not a folder and a symlink"
mfs_umount "$T/mnt"
check_equivalence "names reused"

step "a hard link made at the name of a file whose last name was unlinked"
# The rename's fences put the tail's start after f's creation; f's
# truncate and write (O_TRUNC) and its unfenced unlink are in the tail.
# Replayed onto the tree the kill left, where f is h's new name, they
# would truncate and overwrite h, unless the link has a fence of its own.
mfs_mount "$T/data" "$T/mnt" -o checkpoint_interval=3600
mkdir "$T/mnt/hl"
printf keep-this >"$T/mnt/hl/h"
printf one >"$T/mnt/hl/f"
printf x >"$T/mnt/hl/x"
mv "$T/mnt/hl/x" "$T/mnt/hl/y"
printf OVERWRITE >"$T/mnt/hl/f"
rm "$T/mnt/hl/f"
ln "$T/mnt/hl/h" "$T/mnt/hl/f"
mfs_kill9 "$T/mnt"
mfs_mount "$T/data" "$T/mnt"
[ "$(cat "$T/mnt/hl/h")" = keep-this ] || fail "recovery changed h through its new name f: '$(cat "$T/mnt/hl/h")'"
[ "$(cat "$T/mnt/hl/f")" = keep-this ] || fail "f is not h's second name after recovery"
mfs_umount "$T/mnt"
check_equivalence "hard link at an unlinked file's name"

step "power cut: backing folder rolled back to the checkpoint, torn journal tail"
# WAL mode only: this rollback models a backing folder that kept nothing
# after the checkpoint, but every removal (rollback mode deletes its journal
# per transaction) fsyncs what changed and marks the journal, and those
# marks may not be rolled back. tests/integration/fs-powercut.sh models
# power cuts faithfully, for both modes.
for i in 1 2 3; do
	db=wal.db mode=wal
	mfs_mount "$T/data" "$T/mnt" -o checkpoint_interval=3600
	sqlite_workload "$T/mnt/$db" "$mode" 20
	"$CTL" checkpoint "$T/mnt" >/dev/null
	rm -rf "$T/snap"
	rsync -a --exclude=/.mirrorfs "$T/data/" "$T/snap/"
	ckpt=$(status_field "$T/mnt" last_lsn)
	sqlite_workload "$T/mnt/$db" "$mode" 100000 2>/dev/null &
	WPID=$!
	# a loaded machine may take a while to start writing: crash only once
	# the journal holds records past the checkpoint
	wait_for lsn_past "$T/mnt" $((ckpt + 50)) || fail "the workload wrote nothing"
	sleep "0.$((RANDOM % 10))"
	mfs_kill9 "$T/mnt"
	wait "$WPID" 2>/dev/null || true
	WPID=
	rsync -a --delete --exclude=/.mirrorfs "$T/snap/" "$T/data/"
	seg=$(ls "$T/data/.mirrorfs/open/"*.mfsj)
	cut=$((RANDOM % 100 + 1))
	verdict=$("$CTL" dump "$seg" 2>/dev/null | tail -n 1 || true)
	end=$(sed -n 's/.*torn tail at byte \([0-9]*\) .*/\1/p' <<<"$verdict")
	[ -n "$end" ] || fail "no torn tail in the open segment after the kill: $verdict"
	[[ $verdict == *"(no trailer: open segment)"* ]] || fail "not a clean open end: $verdict"
	# the zeroed window is refilled only after small appends (lib/segment.c):
	# a kill after a large one (a WAL checkpoint's pages) finds none
	window=yes
	[ "$(stat -c %s "$seg")" -gt "$end" ] || { window=no; echo "(no zeroed window at the kill)"; }
	# zeros over bytes that are zeros already (a page's empty end) tear
	# nothing: cut the file then
	if [ $((i % 2)) = 1 ] && [ $window = yes ] &&
		[ -n "$(dd if="$seg" bs=1 skip=$((end - cut)) count="$cut" status=none | tr -d '\0' | head -c 1)" ]; then
		dd if=/dev/zero of="$seg" bs=1 seek=$((end - cut)) count="$cut" conv=notrunc status=none
	else
		truncate -s $((end - cut)) "$seg"
	fi
	: >"$T/fs.log"
	mfs_mount "$T/data" "$T/mnt"
	grep -q "cut a torn tail" "$T/fs.log" || fail "no torn-tail line after cutting $cut bytes"
	grep -q "recovery: replayed" "$T/fs.log" || fail "nothing replayed after the power cut"
	sqlite_ok "$T/mnt/wal.db" || fail "wal.db after power cut $i"
	sqlite_ok "$T/mnt/rb.db" || fail "rb.db after power cut $i"
	mfs_umount "$T/mnt"
	check_equivalence "power cut $i"
	echo "power cut $i: cut $cut bytes; $(grep -o 'replayed [0-9]* records' "$T/fs.log")"
done
echo PASS
