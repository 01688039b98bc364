#!/bin/bash
# SPDX-License-Identifier: MIT
# lock-basic.sh - flush-and-lock (mirrorctl lock/unlock): with a command
# (its exit status is returned; writes issued during the lock complete only
# after it, in order, nothing lost); detached lock + unlock, a second lock
# refused; holder killed with -9 releases it; the timeout releases it;
# reads, listings and stat work while writers are parked; more parked
# writers than FUSE worker threads (-o max_threads=4) still let a read and
# the unlock through; every kind of mutation is parked and resumed in
# order; the journal still replays to the backing tree afterwards.
#
# Reads here avoid the page a parked write is filling: the kernel keeps a
# partially written page that is not in the page cache locked until the
# write's reply, so a read of that very page waits for the unlock (in the
# kernel, holding no FUSE worker).
set -eu
. "$(dirname "$0")/lib.sh"
command -v python3 >/dev/null || skip "no python3"

M=$T/mnt
D=$T/data
mkdir -p "$D"
mfs_mount "$D" "$M" -o max_threads=4

is_locked() { [ "$(status_field "$M" locked)" = true ]; }
is_unlocked() { [ "$(status_field "$M" locked)" = false ]; }
parked_ge() { [ "$(status_field "$M" parked)" -ge "$1" ]; }
now_ns() { date +%s%N; }

# A writer: appends "I\n" to FILE (which must exist: a create would be
# parked) through one O_APPEND fd until STOP exists (at least MIN lines, at
# most 120 s), logging "I completion_time_ns" to LOG.
cat >"$T/writer.py" <<'PY'
import os, sys, time
path, log, stop, least = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
fd = os.open(path, os.O_WRONLY | os.O_APPEND)
i = 0
end = time.monotonic() + 120
with open(log, "w") as L:
    while (i < least or not os.path.exists(stop)) and time.monotonic() < end:
        i += 1
        os.write(fd, b"%d\n" % i)
        L.write("%d %d\n" % (i, time.clock_gettime_ns(time.CLOCK_REALTIME)))
        L.flush()
os.close(fd)
PY
WPIDS=()
lock_cleanup() {
	"$CTL" unlock "$M" >/dev/null 2>&1 # lets parked writers and holders finish
	stop_pid "${WPIDS[@]}"
}
EXTRA_CLEANUP=lock_cleanup

# start_writer FILE MIN: background writer, its pid in WPIDS
start_writer() {
	[ -f "$1" ] || fail "start_writer: create '$1' before locking"
	python3 "$T/writer.py" "$1" "$T/$(basename "$1").log" "$T/stop" "$2" &
	WPIDS+=($!)
}
# check_seq FILE: FILE holds exactly 1..N (N from its writer's log)
check_seq() {
	local n
	n=$(tail -n 1 "$T/$(basename "$1").log" | cut -d' ' -f1)
	seq 1 "$n" | cmp -s - "$1" || fail "'$1' is not 1..$n (lost or reordered writes)"
}
stop_writers() {
	touch "$T/stop"
	for p in "${WPIDS[@]}"; do wait "$p" || fail "a writer failed"; done
	WPIDS=()
	rm -f "$T/stop"
}

step "lock -- COMMAND: exit status, writes issued during it complete after it"
: >"$M/seq"
start_writer "$M/seq" 200
wait_for test -s "$M/seq" || fail "the writer did not start"
cat >"$T/during.sh" <<EOF
set -eu
date +%s%N >"$T/cmd.start"
for i in \$(seq 300); do [ "\$(python3 -c "import json; print(json.load(open('$M/.mirrorfs/status'))['parked'])")" -ge 1 ] && break; sleep 0.1; done
cp "$D/seq" "$T/seq.during1"
grep -q '"locked":true' "$M/.mirrorfs/status"
cp "$D/seq" "$T/seq.during2"
date +%s%N >"$T/cmd.end"
exit 3
EOF
rc=0
"$CTL" lock --timeout 60 "$M" -- sh "$T/during.sh" || rc=$?
[ "$rc" = 3 ] || fail "lock -- COMMAND returned $rc, not the command's 3"
wait_for is_unlocked || fail "still locked after the command ended"
stop_writers
check_seq "$M/seq"
cmp -s "$T/seq.during1" "$T/seq.during2" || fail "the file changed while locked"
start=$(cat "$T/cmd.start")
end=$(cat "$T/cmd.end")
python3 - "$T/seq.log" "$start" "$end" <<'PY' || fail "a write completed while locked"
import sys
log, start, end = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rows = [tuple(map(int, l.split())) for l in open(log)]
inside = [i for i, t in rows if start <= t <= end]
after = [i for i, t in rows if t > end]
assert not inside, "completed during the lock: %r" % inside[:5]
assert after, "no write after the lock"
PY
n_during=$(wc -l <"$T/seq.during1")
head -n "$n_during" "$M/seq" | cmp -s - "$T/seq.during1" || fail "content seen during the lock is not a prefix"

step "detached lock, reads work, a second lock is refused, unlock"
echo "read me" >"$M/r"
mkdir -p "$M/dir"
echo x >"$M/dir/y"
: >"$M/seq2"
: >"$M/seq3"
: >"$M/seq4"
for k in $(seq 24); do : >"$M/w$k"; done
# (into a file: the background holder keeps mirrorctl's stdout open)
"$CTL" lock "$M" >"$T/lock.out"
grep -q "holder pid" "$T/lock.out" || fail "no holder: $(cat "$T/lock.out")"
is_locked || fail "status does not say locked"
[ "$(status_field "$M" lock_timeout_ms)" = 60000 ] || fail "default timeout is not 60 s"
[ "$(status_field "$M" lock_since_ns)" -gt 0 ] || fail "lock_since_ns missing"
start_writer "$M/seq2" 1
wait_for parked_ge 1 || fail "the writer was not parked"
[ "$(timeout 10 cat "$M/r")" = "read me" ] || fail "read during the lock"
timeout 10 ls -la "$M" "$M/dir" >/dev/null || fail "ls during the lock"
timeout 10 stat "$M/r" "$M/seq2" >/dev/null || fail "stat during the lock"
timeout 10 df "$M" >/dev/null || fail "statfs during the lock"
[ ! -s "$D/seq2" ] || fail "a parked write reached the backing file"
rc=0
timeout 10 "$CTL" lock --timeout 5 "$M" -- true 2>"$T/second.err" || rc=$?
[ "$rc" != 0 ] && grep -q "already locked" "$T/second.err" || fail "second lock not refused ($rc)"
is_locked || fail "the refused lock released the first"
timeout 10 "$CTL" unlock "$M" >/dev/null || fail "unlock"
is_unlocked || fail "still locked after unlock"
rc=0
"$CTL" unlock "$M" 2>/dev/null || rc=$?
[ "$rc" != 0 ] || fail "unlock while unlocked succeeded"
stop_writers
check_seq "$M/seq2"

step "holder killed with -9: lock released, parked writers complete"
"$CTL" lock "$M" >"$T/lock.out"
holder=$(sed -n 's/.*holder pid \([0-9]*\).*/\1/p' "$T/lock.out")
[ -n "$holder" ] || fail "no holder pid in: $(cat "$T/lock.out")"
start_writer "$M/seq3" 1
wait_for parked_ge 1 || fail "the writer was not parked"
kill -9 "$holder"
wait_for is_unlocked || fail "lock of a killed holder not released"
stop_writers
check_seq "$M/seq3"

step "timeout releases the lock"
start_writer "$M/seq4" 1 # writing continuously, parked as soon as locked
wait_for test -s "$M/seq4" || fail "the writer did not start"
"$CTL" lock --timeout 2 "$M" >"$T/lock.out"
grep -q "timeout 2 s" "$T/lock.out" || fail "lock --timeout 2: $(cat "$T/lock.out")"
wait_for is_unlocked || fail "lock not released at its timeout"
grep -q "lock released (timeout)" "$T/fs.log" || fail "not released by the timeout"
stop_writers
check_seq "$M/seq4"

step "24 parked writers, -o max_threads=4: reads and the unlock get through"
"$CTL" lock "$M" >/dev/null
for k in $(seq 24); do start_writer "$M/w$k" 1; done
wait_for parked_ge 24 || fail "only $(status_field "$M" parked) of 24 writers parked"
[ "$(timeout 10 cat "$M/r")" = "read me" ] || fail "read with 24 parked writers"
timeout 10 ls "$M" >/dev/null || fail "ls with 24 parked writers"
timeout 10 cat "$M/.mirrorfs/status" >/dev/null || fail "status with 24 parked writers"
timeout 10 "$CTL" unlock "$M" >/dev/null || fail "unlock with 24 parked writers"
stop_writers
for k in $(seq 24); do check_seq "$M/w$k"; done
[ "$(status_field "$M" parked)" = 0 ] || fail "parked requests left"

step "lock/unlock storm under continuous writers (relocking while resuming)"
: >"$M/s1"
: >"$M/s2"
start_writer "$M/s1" 1
start_writer "$M/s2" 1
wait_for test -s "$M/s2" || fail "the writers did not start"
python3 - "$M/.mirrorfs/ctl" <<'PY' || fail "lock/unlock storm"
import os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
for k in range(40):
    for cmd in ("lock 30000", "unlock"):
        os.pwrite(fd, cmd.encode(), 0)
        r = os.pread(fd, 4096, 0).decode()
        assert r.startswith("ok"), "%s: %s" % (cmd, r)
PY
stop_writers
check_seq "$M/s1"
check_seq "$M/s2"
is_unlocked || fail "locked after the storm"

step "every kind of mutation is parked, then resumed in order"
mkdir "$M/ns"
echo old >"$M/ns/trunc"
echo data >"$M/ns/keep"
"$CTL" lock "$M" >/dev/null
(
	set -e
	cd "$M/ns"
	mkdir d
	echo one >d/f
	mv d/f d/g
	ln -s g d/s
	ln d/g d/h
	chmod 600 d/g
	truncate -s 2 d/h
	echo new >trunc
	setfattr -n user.k -v v keep 2>/dev/null || true
	rm d/s
	mknod d/fifo p
	rmdir d 2>/dev/null || echo refused >"$T/rmdir"
) >"$T/ns.log" 2>&1 &
NS=$!
wait_for parked_ge 1 || fail "mkdir not parked"
[ ! -e "$D/ns/d" ] || fail "mkdir applied while locked"
[ "$(cat "$D/ns/trunc")" = old ] || fail "O_TRUNC applied while locked"
echo unlock >"$M/.mirrorfs/ctl" # O_TRUNC open + write of the ctl file: never parked
wait "$NS" || { cat "$T/ns.log" >&2; fail "namespace sequence failed"; }
[ "$(cat "$M/ns/d/g")" = on ] || fail "truncate/link/rename sequence gave '$(cat "$M/ns/d/g")'"
[ "$(stat -c %a "$M/ns/d/g")" = 600 ] || fail "chmod lost"
[ ! -e "$M/ns/d/s" ] && [ ! -e "$M/ns/d/f" ] && [ -p "$M/ns/d/fifo" ] || fail "ns tree wrong"
[ "$(cat "$M/ns/trunc")" = new ] || fail "O_TRUNC open lost"
[ -f "$T/rmdir" ] || fail "rmdir of a non-empty dir succeeded"

step "parked writers resume in arrival order (journal order)"
for k in $(seq 6); do : >"$M/o$k"; done
"$CTL" lock "$M" >/dev/null
OPIDS=()
for k in $(seq 6); do
	echo "$k" >>"$M/o$k" &
	OPIDS+=($!)
	wait_for parked_ge "$k" || fail "writer $k not parked"
done
"$CTL" unlock "$M" >/dev/null
for p in "${OPIDS[@]}"; do wait "$p" || fail "an ordered writer failed"; done
name=$("$CTL" rotate "$M")
"$CTL" dump "$D/.mirrorfs/journal/$name" | sed -n "s/.* write *'o\([0-9]\)' .*/\1/p" >"$T/order"
seq 6 | cmp -s - "$T/order" || fail "resumed out of order: $(tr '\n' ' ' <"$T/order")"

step "xattrs, fallocate, copy_file_range are parked too"
echo src >"$M/ns/x"
: >"$M/ns/y"
"$CTL" lock "$M" >/dev/null
python3 - "$M/ns" >"$T/xattr.log" 2>&1 <<'PY' &
import os, sys
d = sys.argv[1]
os.setxattr(d + "/x", "user.a", b"1")
os.setxattr(d + "/x", "user.b", b"2")
os.removexattr(d + "/x", "user.b")
fd = os.open(d + "/x", os.O_RDWR)
os.posix_fallocate(fd, 0, 8192)
out = os.open(d + "/y", os.O_WRONLY)
assert os.copy_file_range(fd, out, 4, 0, 0) == 4
PY
X=$!
wait_for parked_ge 1 || fail "setxattr not parked"
python3 -c "import os,sys; sys.exit(1 if os.listxattr(sys.argv[1]) else 0)" "$D/ns/x" ||
	fail "setxattr applied while locked"
"$CTL" unlock "$M" >/dev/null
wait "$X" || { cat "$T/xattr.log" >&2; fail "xattr/fallocate/copy sequence failed"; }
[ "$(python3 -c "import os,sys; print(os.listxattr(sys.argv[1]))" "$M/ns/x")" = "['user.a']" ] ||
	fail "xattrs after resume"
[ "$(stat -c %s "$M/ns/x")" = 8192 ] || fail "fallocate lost"
[ "$(cat "$M/ns/y")" = src ] || fail "copy_file_range lost"

step "the journal replays to the backing tree"
mfs_umount "$M"
replay_journal "$D/.mirrorfs" "$T/replayed" || fail "replay"
verify_equal "$D" "$T/replayed" || fail "replayed journal differs from the backing tree"
echo "PASS"
