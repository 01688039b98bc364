#!/bin/bash
# SPDX-License-Identifier: MIT
# fs-journal.sh - the journal as operators see it: rotation (mirrorctl,
# rotate_size, rotate_interval) makes closed segments appear whole and at
# once in .mirrorfs/journal/; rsync (also --remove-source-files) ships
# them; journal_dir elsewhere; refusal to mount on errors (missing data
# folder, already mounted, unwritable or full journal folder); ENOSPC on the
# journal while mounted fails the change instead of applying it.
set -eu
. "$(dirname "$0")/lib.sh"
command -v rsync >/dev/null || skip "no rsync"

J=.mirrorfs/journal
nseg() { ls "$T/mnt/$J" | wc -l; }
nseg_ge() { [ "$(nseg)" -ge "$1" ]; }

step "rotation by mirrorctl"
mkdir -p "$T/data" "$T/ship"
mfs_mount "$T/data" "$T/mnt"
[ -z "$(ls "$T/mnt/$J")" ] || fail "journal/ not empty at start"
seq 1 1000 >"$T/mnt/a"
name=$("$CTL" rotate "$T/mnt")
[ -f "$T/mnt/$J/$name" ] || fail "rotated segment '$name' not in journal/"
cmp "$T/mnt/$J/$name" "$T/data/.mirrorfs/journal/$name" || fail "segment contents differ"
[ "$(stat -c %s "$T/mnt/$J/$name")" = "$(stat -c %s "$T/data/.mirrorfs/journal/$name")" ] || fail "size"
[ "$(stat -c %a "$T/data/.mirrorfs/journal/$name")" = 600 ] || fail "segment mode is not 0600"
"$CTL" dump "$T/mnt/$J/$name" | tail -1 | grep -q "ok" || fail "closed segment does not validate"
[ -z "$("$CTL" rotate "$T/mnt")" ] || fail "empty segment was closed"
[ "$(ls "$T/mnt/$J" | wc -l)" = 1 ] || fail "expected one segment"

step "segments appear whole: readers racing rotations never see a partial one"
( for i in $(seq 200); do dd if=/dev/zero of="$T/mnt/w$((i % 5))" bs=64k count=4 conv=notrunc status=none; done ) &
W=$!
for i in $(seq 15); do "$CTL" rotate "$T/mnt" >/dev/null; done &
R=$!
while kill -0 $R 2>/dev/null; do
	for s in "$T/mnt/$J"/*.mfsj; do
		"$CTL" dump "$s" >/dev/null 2>&1 || fail "partial segment visible: $s"
	done
done
wait $W $R
"$CTL" rotate "$T/mnt" >/dev/null

step "rsync, then rsync --remove-source-files"
rsync -a "$T/mnt/$J/" "$T/ship/"
diff -r "$T/mnt/$J" "$T/ship" || fail "rsync copy differs"
n=$(ls "$T/ship" | wc -l)
echo more >"$T/mnt/b"
"$CTL" rotate "$T/mnt" >/dev/null
rsync -a --remove-source-files "$T/mnt/$J/" "$T/ship/"
[ -z "$(ls "$T/mnt/$J")" ] || fail "--remove-source-files left segments behind"
[ -z "$(ls "$T/data/.mirrorfs/journal")" ] || fail "trim did not delete the real files"
[ "$(ls "$T/ship" | wc -l)" -gt "$n" ] || fail "nothing new shipped"
cp "$T/data/.mirrorfs/open/"*.mfsj "$T/ship-open.mfsj"
replay_dir="$T/replayed"
mkdir -p "$replay_dir"
"$CTL" replay --to "$replay_dir" "$T/ship"/*.mfsj "$T/ship-open.mfsj" >/dev/null 2>&1
verify_equal "$T/mnt" "$replay_dir" || fail "shipped segments do not rebuild the data"
grep -q '"segments":0' "$T/mnt/.mirrorfs/status" || fail "status segments count"
[ -s "$T/mnt/.mirrorfs/current" ] || fail "current is empty"
cmp "$T/mnt/.mirrorfs/current" "$T/data/.mirrorfs/open/"*.mfsj || fail "current differs from the open segment"
# small synced appends keep a zeroed window after the last record: current
# shows the records only
for k in $(seq 20); do
	dd if=/dev/urandom of="$T/mnt/small" bs=4k count=1 seek="$k" conv=notrunc,fdatasync status=none
done
open=$(ls "$T/data/.mirrorfs/open/"*.mfsj)
end=$("$CTL" dump "$open" 2>/dev/null | tail -n 1 | sed -n 's/.*torn tail at byte \([0-9]*\) .*/\1/p' || true)
[ -n "$end" ] && [ "$(stat -c %s "$open")" -gt "$end" ] || fail "no zeroed window after small syncs ($end)"
[ "$(stat -c %s "$T/mnt/.mirrorfs/current")" = "$end" ] || fail "current's size is not its records' end"
head -c "$end" "$open" | cmp - "$T/mnt/.mirrorfs/current" || fail "current differs from the open segment's records"

step "unwritable virtual files"
if (echo x >"$T/mnt/.mirrorfs/status") 2>/dev/null; then fail "status writable"; fi
if (echo x >"$T/mnt/$J/x.mfsj") 2>/dev/null; then fail "journal/ writable"; fi
echo checkpoint >"$T/mnt/.mirrorfs/ctl" || fail "ctl write"
mfs_umount "$T/mnt"

step "refusals: missing data folder, already mounted"
if "$FS" -f "$T/nope" "$T/mnt" 2>"$T/err"; then fail "mounted a missing folder"; fi
[ "$(wc -l <"$T/err")" -ge 1 ] && grep -q "nope" "$T/err" || fail "no clear message: $(cat "$T/err")"
mfs_mount "$T/data" "$T/mnt"
mkdir -p "$T/mnt2"
if "$FS" -f "$T/data" "$T/mnt2" 2>"$T/err"; then fail "mounted twice"; fi
grep -q "already mounted" "$T/err" || fail "no 'already mounted': $(cat "$T/err")"
mountpoint -q "$T/mnt2" && fail "second mount happened"
mfs_umount "$T/mnt"

step "journal_dir elsewhere, rotate_size, rotate_interval"
mkdir -p "$T/data2" "$T/jdir"
mfs_mount "$T/data2" "$T/mnt" -o journal_dir="$T/jdir",rotate_size=256K
# only the data folder's lock (.mirrorfs/lock, which mirrord and rejoin respect) is there
[ -z "$(ls -A "$T/data2/.mirrorfs" 2>/dev/null | grep -vx lock)" ] ||
	fail "journal written into the data folder: $(ls -A "$T/data2/.mirrorfs")"
dd if=/dev/zero of="$T/mnt/big" bs=64k count=32 status=none
wait_for nseg_ge 1 || fail "rotate_size did not rotate"
dd if=/dev/zero of="$T/mnt/big2" bs=64k count=32 status=none
wait_for nseg_ge 2 || fail "rotate_size did not rotate again"
mfs_umount "$T/mnt"
mfs_mount "$T/data2" "$T/mnt" -o journal_dir="$T/jdir",rotate_interval=1
n=$(ls "$T/mnt/$J" | wc -l)
echo tick >"$T/mnt/tick"
wait_for nseg_ge $((n + 1)) || fail "rotate_interval did not rotate"
sleep 2.5 # idle: nothing to close
m=$(ls "$T/mnt/$J" | wc -l)
sleep 2.5
[ "$(ls "$T/mnt/$J" | wc -l)" = "$m" ] || fail "an empty segment was closed"
mfs_umount "$T/mnt"
if "$FS" -f -o journal_dir="$T/data2/sub" "$T/data2" "$T/mnt" 2>"$T/err"; then
	fail "journal inside the data folder accepted"
fi

step "unwritable and full journal folders"
if [ "$(id -u)" = 0 ] && command -v mount >/dev/null && mount -t tmpfs -o size=16M tmpfs "$T/jdir" 2>/dev/null; then
	EXTRA_CLEANUP="umount -l $T/jdir"
	mount -o remount,ro "$T/jdir"
	if "$FS" -f -o journal_dir="$T/jdir/j" "$T/data2" "$T/mnt" 2>"$T/err"; then fail "mounted with a read-only journal"; fi
	grep -q "jdir/j" "$T/err" || fail "no clear message: $(cat "$T/err")"
	mount -o remount,rw "$T/jdir"
	dd if=/dev/zero of="$T/jdir/fill" bs=64k status=none 2>/dev/null || true
	if "$FS" -f -o journal_dir="$T/jdir/j" "$T/data2" "$T/mnt" 2>"$T/err"; then fail "mounted with a full journal"; fi
	grep -qi "space\|room" "$T/err" || fail "no clear ENOSPC message: $(cat "$T/err")"
	rm -f "$T/jdir/fill"
	step "ENOSPC on the journal while mounted"
	rm -rf "$T/data3"; mkdir -p "$T/data3"
	mfs_mount "$T/data3" "$T/mnt" -o journal_dir="$T/jdir/j3"
	dd if=/dev/zero of="$T/jdir/fill" bs=64k status=none 2>/dev/null || true
	if dd if=/dev/zero of="$T/mnt/x" bs=64k count=64 status=none 2>"$T/err"; then fail "write beyond the journal's room succeeded"; fi
	grep -q "No space" "$T/err" || fail "expected ENOSPC: $(cat "$T/err")"
	grep -q "journal '$T/jdir/j3' is full" "$T/fs.log" || fail "the log does not name the full journal"
	rm -f "$T/jdir/fill"
	echo fine >"$T/mnt/after" || fail "writes do not work again after space was freed"
	mfs_umount "$T/mnt"
	replay_journal "$T/jdir/j3" "$T/rep3" || fail "replay"
	verify_equal "$T/data3" "$T/rep3" || fail "journal and data disagree after ENOSPC"
	umount -l "$T/jdir"; EXTRA_CLEANUP=:
else
	echo "(no tmpfs: full-journal checks skipped)"
fi

# The timer once took the checkpoint lock while holding its own, which
# writers take under the namespace lock that a checkpoint waits for: a
# writer, a trim and the timer then waited for each other for ever. A
# checkpoint that holds its lock 50 ms before its barrier made that
# happen within a few trims.
step "writers, rotations and trims at once: no deadlock"
rm -rf "$T/data5"; mkdir -p "$T/data5"
MFS_FAULT_CHECKPOINT_DELAY_MS=50 mfs_mount "$T/data5" "$T/mnt"
python3 - "$T/mnt/f" 6 <<'PY' &
import os, random, sys, threading, time
end = time.time() + int(sys.argv[2])
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o644)
def writer():
    b = os.urandom(65536)
    while time.time() < end:
        os.pwrite(fd, b, random.randrange(1024) * 65536)
ts = [threading.Thread(target=writer) for _ in range(3)]
for t in ts:
    t.start()
for t in ts:
    t.join()
PY
WPID=$!
# rotations and trims in the background: a hung request may sit in the
# kernel where no signal reaches it, until the daemon is gone
(
	for _ in $(seq 20); do
		"$CTL" rotate "$T/mnt" >/dev/null 2>&1 || true
		rm -f "$T/mnt"/.mirrorfs/journal/*.mfsj || true
		sleep 0.2
	done
) &
TPID=$!
EXTRA_CLEANUP='kill $WPID $TPID 2>/dev/null; wait $WPID $TPID 2>/dev/null'
for _ in $(seq 600); do
	kill -0 "$WPID" 2>/dev/null || kill -0 "$TPID" 2>/dev/null || break
	sleep 0.1
done
if kill -0 "$WPID" 2>/dev/null || kill -0 "$TPID" 2>/dev/null; then
	mfs_kill9 "$T/mnt"
	fail "mirrorfs hung: writers, rotations and trims not done after 60 s"
fi
wait "$WPID" || fail "the writers failed"
wait "$TPID"
EXTRA_CLEANUP=:
mfs_umount "$T/mnt"
echo PASS
