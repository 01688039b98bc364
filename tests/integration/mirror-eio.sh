#!/bin/bash
# SPDX-License-Identifier: MIT
# mirror-eio.sh - a segment that cannot be read (an I/O error of the disk
# under the incoming folder) is an error mirrord reports and retries, not a
# crash: the engine reads segments through a mapping, where such a page
# raises SIGBUS. The incoming folder is served by eiofs, whose reads past
# 1 MiB fail with EIO. Checks: --once exits 1 (not killed by a signal) with
# the error and nothing applied, the naive reader the same; the daemon
# stays up, says so in its status, and stops cleanly; once the disk reads
# again, the same segment applies and the data equals the reference.
set -eu
. "$(dirname "$0")/lib.sh"

EIOFS=$MFS_BUILD/tests/integration/eiofs
U=0badc0de-1111-2222-3333-444455556666
[ -x "$EIOFS" ] || skip "eiofs not built"
DPID=
EXTRA_CLEANUP='stop_pid $DPID'

# eio_mount FAIL_AT: serve $T/segs on $T/in, reads past FAIL_AT failing.
eio_mount() {
	local pid
	mkdir -p "$T/in"
	"$EIOFS" "$T/segs" "$1" "$T/in" 2>>"$T/fs.log" &
	pid=$!
	MFS_PID[$T/in]=$pid
	wait_for mountpoint -q "$T/in" || fail "eiofs did not mount"
}
eio_umount() {
	fusermount3 -u "$T/in"
	wait "${MFS_PID[$T/in]}" || true
	unset "MFS_PID[$T/in]"
}
fresh() { rm -rf "$T/data" "$T/state"; mkdir -p "$T/data"; }

step "a 4 MiB segment and its reference"
mkdir -p "$T/segs"
python3 -c "
print('mkdir d 0755'); print('mknod d/f 0100644')
for i in range(1024): print(f'write d/f {i * 4096} @4096:{i}')
" | "$MKSEG" "$T/segs" $U 1 >"$T/names"
SEG=$(cat "$T/names")
mkdir "$T/ref"
"$CTL" replay --to "$T/ref" "$T/segs/$SEG" >/dev/null
[ "$(stat -c %s "$T/segs/$SEG")" -gt $((3 << 20)) ] || fail "segment smaller than expected"

eio_mount 1048576
cmp -s -n 65536 "$T/in/$SEG" "$T/segs/$SEG" || fail "eiofs does not serve the segment's first bytes"
! cat "$T/in/$SEG" >/dev/null 2>&1 || fail "eiofs read past its failure offset"

for mode in engine naive; do
	step "--once ($mode) on an unreadable segment: exit 1 with the error, nothing applied"
	fresh
	opt=
	[ $mode = naive ] && opt=--naive
	rc=0
	timeout -s KILL 60 "$MIRRORD" --incoming "$T/in" --data "$T/data" --state "$T/state" \
		--once $opt 2>"$T/err" || rc=$?
	cat "$T/err"
	[ $rc -eq 1 ] || fail "$mode: mirrord exited $rc, expected 1 (>128: killed by a signal)"
	grep -q "reading '$SEG' failed (will retry): Input/output error" "$T/err" ||
		fail "$mode: the read error was not reported"
	# (mirrord's lock, .mirrorfs/lock, is the only thing it creates there)
	[ -z "$(ls -A "$T/data" | grep -vx .mirrorfs)" ] ||
		fail "$mode: something was applied: $(ls -A "$T/data")"
	[ "$(applied_lsn "$T/state")" = 0 ] || fail "$mode: applied LSN moved to $(applied_lsn "$T/state")"
done

step "the daemon reports the error in its status, keeps running, stops cleanly"
fresh
"$MIRRORD" --incoming "$T/in" --data "$T/data" --state "$T/state" 2>"$T/daemon.log" &
DPID=$!
wait_for grep -qs "reading '$SEG' failed (will retry): Input/output error" "$T/state/status.json" ||
	fail "no read error in status.json: $(cat "$T/state/status.json" 2>&1)"
retried() { [ "$(grep -c "failed (will retry)" "$T/daemon.log")" -ge 2 ]; }
wait_for retried || fail "no retry: $(cat "$T/daemon.log")" # retried after RETRY_MS (1 s)
kill -0 "$DPID" 2>/dev/null || fail "mirrord died: $(cat "$T/daemon.log")"
kill "$DPID"
rc=0
wait "$DPID" || rc=$?
DPID=
[ $rc -eq 0 ] || fail "mirrord exited $rc on SIGTERM"
[ -z "$(ls -A "$T/data" | grep -vx .mirrorfs)" ] || fail "daemon applied part of an unreadable segment"

step "the disk reads again: the same segment applies, data equals the reference"
eio_umount
eio_mount 1099511627776
fresh
"$MIRRORD" --incoming "$T/in" --data "$T/data" --state "$T/state" --once 2>"$T/err" ||
	fail "mirrord --once failed on a readable segment: $(cat "$T/err")"
verify_equal "$T/ref" "$T/data" || fail "data differs from the reference"
eio_umount
echo "PASS"
