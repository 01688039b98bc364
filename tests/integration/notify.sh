#!/bin/bash
# SPDX-License-Identifier: MIT
# notify.sh - readiness and watchdog for systemd's Type=notify (issue 21,
# item 2), without systemd: a small listener (notify-listen.py) is the
# NOTIFY_SOCKET. mirrorfs -f says READY=1 only once the mount serves its
# files; daemonized, the process that stays says READY=1 with its own PID
# as MAINPID; mirrord says READY=1 only after its first pass (the segment
# waiting at start is applied by then), WATCHDOG=1 when WATCHDOG_USEC asks
# for it (and not otherwise), and a STATUS= line. Skipped when the build
# has no libsystemd (the notifications are no-ops then).
set -eu
. "$(dirname "$0")/lib.sh"

LISTEN=$(dirname "$0")/notify-listen.py
grep -q '^#define HAVE_LIBSYSTEMD' "$MFS_BUILD/config.h" || skip "built without libsystemd"
command -v python3 >/dev/null || skip "no python3"

DPID=
EXTRA_CLEANUP='stop_pid $DPID'

# listen NAME [PATH...]: a listener on $T/NAME.sock logging to $T/NAME.log
listen() {
	local name=$1
	shift
	python3 "$LISTEN" "$T/$name.sock" "$T/$name.log" "$@" &
	track_pid $!
	wait_for grep -q listening "$T/$name.log" 2>/dev/null || fail "listener $name did not start"
}

step "mirrorfs -f: READY=1 once the mount serves its files"
mkdir -p "$T/d1" "$T/m1"
echo hello >"$T/d1/hello"
listen fs1 "$T/m1/hello"
NOTIFY_SOCKET=$T/fs1.sock mfs_mount "$T/d1" "$T/m1"
wait_for grep -q "READY=1" "$T/fs1.log" || fail "no READY=1 from mirrorfs -f: $(cat "$T/fs1.log")"
grep -q "READY=1 ok:$T/m1/hello" "$T/fs1.log" || fail "READY=1 before the mount served: $(cat "$T/fs1.log")"
grep -q "^pid=${MFS_PID[$T/m1]} READY=1" "$T/fs1.log" || fail "READY=1 not from mirrorfs's PID"
mfs_umount "$T/m1"

step "mirrorfs daemonized: READY=1 from the process that stays, named as MAINPID"
mkdir -p "$T/d2" "$T/m2"
echo hello >"$T/d2/hello"
listen fs2 "$T/m2/hello"
NOTIFY_SOCKET=$T/fs2.sock "$FS" "$T/d2" "$T/m2" 2>>"$T/fs.log" & started=$!
MFS_PID[$T/m2]=$started
wait "$started" || fail "mirrorfs (daemonizing) exited $?"
wait_for grep -q "READY=1" "$T/fs2.log" || fail "no READY=1 from the daemonized mirrorfs"
main=$(sed -n 's/^pid=[0-9]* MAINPID=//p' "$T/fs2.log")
[ -n "$main" ] && [ "$main" != "$started" ] || fail "no MAINPID (or the exited one): $(cat "$T/fs2.log")"
MFS_PID[$T/m2]=$main
grep -q "^pid=$main READY=1 ok:$T/m2/hello" "$T/fs2.log" || fail "READY=1: $(cat "$T/fs2.log")"
fusermount3 -u "$T/m2"
wait_for eval '! kill -0 '"$main"' 2>/dev/null' || fail "mirrorfs $main did not exit"
unset "MFS_PID[$T/m2]"

step "mirrord: READY=1 after the first pass, STATUS=, no WATCHDOG=1 unless asked"
U=0badc0de-1111-2222-3333-444455556666
mkdir -p "$T/in" "$T/data"
printf 'mknod first 0100644\nwrite first 0 @4096:1\nclose\n' | "$MKSEG" "$T/in" $U 1 >/dev/null
listen md1 "$T/data/first"
NOTIFY_SOCKET=$T/md1.sock "$MIRRORD" --incoming "$T/in" --data "$T/data" 2>"$T/md1.err" & DPID=$!
wait_for grep -q "READY=1" "$T/md1.log" || fail "no READY=1 from mirrord: $(cat "$T/md1.err")"
grep -q "READY=1 ok:$T/data/first" "$T/md1.log" || fail "READY=1 before the first pass: $(cat "$T/md1.log")"
grep -q "^pid=$DPID STATUS=applied LSN [1-9]" "$T/md1.log" || fail "no STATUS=: $(cat "$T/md1.log")"
sleep 1.5 # a watchdog of 1 s would have been fed by now: it must not be
! grep -q WATCHDOG "$T/md1.log" || fail "WATCHDOG=1 without WATCHDOG_USEC"
kill "$DPID"; wait "$DPID" || true; DPID=

step "mirrord with WATCHDOG_USEC=1000000: WATCHDOG=1 at least every half second"
listen md2
NOTIFY_SOCKET=$T/md2.sock WATCHDOG_USEC=1000000 "$MIRRORD" --incoming "$T/in" --data "$T/data" \
	2>"$T/md2.err" & DPID=$!
wait_for grep -q "READY=1" "$T/md2.log" || fail "no READY=1 from mirrord: $(cat "$T/md2.err")"
n0=$(grep -c "WATCHDOG=1" "$T/md2.log" || true)
sleep 2
n1=$(grep -c "WATCHDOG=1" "$T/md2.log" || true)
[ $((n1 - n0)) -ge 3 ] || fail "$((n1 - n0)) WATCHDOG=1 in 2 s with a 1 s watchdog"
kill "$DPID"; wait "$DPID" || true; DPID=
grep -q "STOPPING=1" "$T/md2.log" || fail "no STOPPING=1 from mirrord"
echo PASS
