#!/bin/bash
# SPDX-License-Identifier: MIT
#
# ship-retry.sh - mirrorfs-ship with two destinations (hub and spoke), one of
# them down for 30 s then back:
#  - nothing trimmed early: while destination 1 is down (its applied LSN
#    frozen), no segment past that LSN leaves the primary;
#  - nothing lost: at the end both mirrors applied the last LSN and equal
#    the reference (all segments replayed into an empty folder), and every
#    segment was trimmed from the primary;
#  - the backlog warning fires (--backlog-warn 3) and clears;
#  - SIGTERM stops the shipper and its children.
# Destination 1 is an rsync daemon on loopback (acknowledgement pulled from
# a read-only module), destination 2 a local folder (acknowledgement from
# mirrord's default state folder, DEST/.mirrord).
#
# The primary is a mirrorfs mount when the filesystem is built (segments
# rotated every second, trimmed through the mount); otherwise a folder of
# segments written by mkseg (the library's writer).
set -eu
MFS_NO_FUSE=1 # the primary is a mirrorfs mount only when it can be
. "$(dirname "$0")/lib.sh"
U=5a1b0c0d-1111-2222-3333-444455556666
DOWN=${SHIP_TEST_DOWN:-30}

for c in rsync inotifywait; do
	command -v $c >/dev/null || skip "$c missing"
done
[ -x "$MIRRORD" ] && [ -x "$CTL" ] || skip "mirrord/mirrorctl not built"

RSYNCD='' SHIPPER='' MNT=
EXTRA_CLEANUP='stop_pid $SHIPPER $RSYNCD'

# ------------------------------------------------------------ mirrors
port=$((20000 + $$ % 20000))
mkdir -p "$T/m1/in" "$T/m1/data" "$T/m1/state" "$T/m2/in" "$T/m2/data" "$T/ref" "$T/all"
cat >"$T/rsyncd.conf" <<EOF
use chroot = no
reverse lookup = no
uid = root
gid = root
[in]
	path = $T/m1/in
	read only = false
[state]
	path = $T/m1/state
	read only = true
EOF
start_rsyncd() {
	rsync --daemon --no-detach --config="$T/rsyncd.conf" --address=127.0.0.1 --port=$port \
		>>"$T/rsyncd.log" 2>&1 &
	RSYNCD=$!
	wait_for -t 10 rsync --contimeout=2 "rsync://127.0.0.1:$port/" >/dev/null 2>&1 ||
		fail "rsync daemon did not start on port $port"
}
start_rsyncd
"$MIRRORD" --incoming "$T/m1/in" --data "$T/m1/data" --state "$T/m1/state" >"$T/mirrord1.log" 2>&1 &
track_pid $!
"$MIRRORD" --incoming "$T/m2/in" --data "$T/m2/data" >"$T/mirrord2.log" 2>&1 &
track_pid $!

# ------------------------------------------------------------ primary
if [ "${SHIP_TEST_MODE:-}" != mkseg ] && [ -x "$FS" ] && [ -e /dev/fuse ] &&
   command -v fusermount3 >/dev/null; then
	mode=mirrorfs
	mkdir -p "$T/pdata" "$T/mnt"
	MNT=$T/mnt
	mfs_mount "$T/pdata" "$MNT" -o rotate_interval=1
	SRC=$MNT
	JDIR=$MNT/.mirrorfs/journal
else
	mode=mkseg
	mkdir -p "$T/segs"
	SRC=$T/segs
	JDIR=$T/segs
fi
step "primary: $mode"

# the workload: something every 0.3 s; each step ends up in a segment
next_lsn=1 segno=1 k=0
produce() {
	k=$((k + 1))
	if [ $mode = mirrorfs ]; then
		mkdir -p "$MNT/w"
		head -c $((4096 + k * 97)) /dev/urandom >"$MNT/w/f$((k % 7))"
		printf 'line %d\n' "$k" >>"$MNT/w/log"
		[ $((k % 5)) = 0 ] && mv "$MNT/w/f$((k % 7))" "$MNT/w/g$k"
		return 0
	fi
	local names n
	names=$(printf 'mknod f%d 0100644\nwrite f%d 0 @%d:%d\nwrite log %d line%d\n' \
		"$k" "$k" $((4096 + k * 97)) "$k" $((k * 8)) "$k" |
		"$MKSEG" "$T/segs" $U "$next_lsn" "$segno") || fail "mkseg failed"
	for n in $names; do
		cp "$T/segs/$n" "$T/all/$n"
		next_lsn=$(($(seg_last "$n") + 1))
		segno=$((segno + 1))
	done
}
if [ $mode = mkseg ]; then
	# LSN 1 creates "log"
	names=$(printf 'mknod log 0100644\n' | "$MKSEG" "$T/segs" $U 1 1) || fail "mkseg failed"
	cp "$T/segs/$names" "$T/all/"
	next_lsn=$(($(seg_last "$names") + 1)) segno=2
fi

# segments the primary holds now, "name" per line
held() { (cd "$JDIR" && ls) 2>/dev/null | grep -E '^[0-9]{20}-[0-9]{20}\.mfsj$' || true; }
nothing_held() { [ -z "$(held)" ]; }

"$SHIP" --interval 1 --trim --backlog-warn 3 --max-backoff 4 --mirrorctl "$CTL" \
	--status "$T/ship.json" \
	--state-of "rsync://127.0.0.1:$port/in/=rsync://127.0.0.1:$port/state/" \
	"$SRC" "rsync://127.0.0.1:$port/in/" "$T/m2/in" >"$T/ship.log" 2>&1 &
SHIPPER=$!

step "both destinations up"
end=$(($(date +%s) + 5))
while [ "$(date +%s)" -lt "$end" ]; do produce; sleep 0.3; done
wait_for -t 30 applied_ge "$T/m1/state" 1 || fail "mirror 1 applied nothing"
wait_for -t 30 applied_ge "$T/m2/in/.mirrord" 1 || fail "mirror 2 applied nothing"

step "destination 1 down for ${DOWN} s"
kill "$RSYNCD"; wait "$RSYNCD" 2>/dev/null || true
RSYNCD=''
sleep 1 # a transfer in flight may still land
a1=$(applied_lsn "$T/m1/state")
held_at_down=$(held)
end=$(($(date +%s) + DOWN))
early=""
while [ "$(date +%s)" -lt "$end" ]; do
	produce
	[ "$(applied_lsn "$T/m1/state")" = "$a1" ] || fail "mirror 1 applied while down ($a1 -> $(applied_lsn "$T/m1/state"))"
	# every segment past a1 that the primary ever held must still be there
	for n in $held_at_down $(held); do
		[ "$(seg_last "$n")" -gt "$a1" ] || continue
		[ -e "$JDIR/$n" ] || early="$early $n"
	done
	[ -z "$early" ] || fail "trimmed before mirror 1 acknowledged (applied $a1):$early"
	held_at_down=$(held)
	sleep 0.3
done
grep -q "cannot ship to 'rsync://127.0.0.1:$port/in/'" "$T/ship.log" ||
	fail "no retry message while destination 1 was down"
grep -q 'backlog of [0-9]* segments exceeds' "$T/ship.log" || fail "no backlog warning"
grep -q '"backlog_exceeded":true' "$T/ship.json" || fail "status does not show the backlog"
[ -n "$(held)" ] || fail "the primary holds no segment while a destination is down"
m2=$(applied_lsn "$T/m2/in/.mirrord")
[ "$m2" -gt "$a1" ] || fail "destination 2 did not keep going while 1 was down"

step "destination 1 back"
start_rsyncd
end=$(($(date +%s) + 3))
while [ "$(date +%s)" -lt "$end" ]; do produce; sleep 0.3; done
if [ $mode = mirrorfs ]; then
	"$CTL" rotate "$MNT" >/dev/null 2>&1 || true
fi
# the last LSN the primary produced
if [ $mode = mirrorfs ]; then
	final=$(status_field "$MNT" last_lsn)
else
	final=$((next_lsn - 1))
fi
wait_for -t 60 applied_ge "$T/m1/state" "$final" ||
	fail "mirror 1 at $(applied_lsn "$T/m1/state"), primary at $final"
wait_for -t 30 applied_ge "$T/m2/in/.mirrord" "$final" ||
	fail "mirror 2 at $(applied_lsn "$T/m2/in/.mirrord"), primary at $final"
wait_for -t 30 nothing_held || fail "segments not trimmed after both acknowledged: $(held)"
wait_for -t 10 grep -q '"backlog":0,' "$T/ship.json" || fail "backlog not back to 0"
grep -q 'is back after' "$T/ship.log" || fail "no recovery message"

step "both mirrors equal the primary"
if [ $mode = mirrorfs ]; then
	# verify ignores .mirrorfs on both sides
	verify_equal "$T/pdata" "$T/m1/data" || fail "mirror 1 differs from the primary"
	verify_equal "$T/pdata" "$T/m2/data" || fail "mirror 2 differs from the primary"
else
	(cd "$T/all" && "$CTL" replay --to "$T/ref" ./*.mfsj >/dev/null) || fail "reference replay failed"
	verify_equal "$T/ref" "$T/m1/data" || fail "mirror 1 differs from the reference"
	verify_equal "$T/ref" "$T/m2/data" || fail "mirror 2 differs from the reference"
fi

step "SIGTERM stops the shipper"
kill "$SHIPPER"
wait_for -t 10 sh -c "! kill -0 $SHIPPER 2>/dev/null" || fail "the shipper ignores SIGTERM"
wait "$SHIPPER" 2>/dev/null || true
SHIPPER=
grep -q '"state":"stopped"' "$T/ship.json" || fail "status does not say stopped"
echo "ok: $mode primary, final LSN $final, both mirrors equal, nothing trimmed early"
