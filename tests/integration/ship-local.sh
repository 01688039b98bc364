#!/bin/bash
# SPDX-License-Identifier: MIT
#
# ship-local.sh - mirrorfs-ship's cheap paths (issue 23): what a pass costs
# no longer includes a process per check, and what it does is unchanged:
#  - a mount's closed segments are read from the real folder behind it
#    (the status names it, its state file names the data set), and the
#    copies in a local destination are byte for byte the segments, mode
#    0600, with their modification times, and nothing else is left there
#    (no hidden copy, no staging folder) once the shipper has stopped;
#  - with --rsync-opts the copy is rsync's, and the same;
#  - acknowledgements read without mirrorctl: from a state folder's
#    status.json, from a status file named by --state-of, and a folder
#    without a status is an ack_error naming it, nothing trimmed;
#  - the trim of several acknowledged segments (one rm for all) removes
#    each of them through the mount, and none that is not acknowledged;
#  - a running shipper does not fork a process per pass while there is
#    nothing to ship (the pass counts no findmnt, no mirrorctl).
set -eu
. "$(dirname "$0")/lib.sh"
for c in rsync mountpoint install; do
	command -v $c >/dev/null || skip "$c missing"
done
[ -x "$MIRRORD" ] && [ -x "$CTL" ] || skip "mirrord/mirrorctl missing"
export MFS_SHIP_LOCK_DIR=$T/locks
MNT=$T/mnt
mkdir -p "$T/data" "$T/in" "$T/in2" "$T/m/data" "$T/nostate"
mfs_mount "$T/data" "$MNT"

step "three closed segments"
for k in 1 2 3; do
	head -c $((50000 + k * 777)) /dev/urandom >"$MNT/f$k"
	"$CTL" rotate "$MNT" >/dev/null
done
mapfile -t segs < <(cd "$MNT/.mirrorfs/journal" && ls)
[ ${#segs[@]} = 3 ] || fail "expected 3 closed segments, got: ${segs[*]}"
real=$T/data/.mirrorfs/journal
[ -d "$real" ] || fail "no real journal folder '$real'"

step "shipped from the real folder into a local folder: same bytes, mode 0600, times kept"
"$SHIP" --once -v --mirrorctl "$CTL" --status "$T/s1.json" --state-of "$T/in=$T/nostate" \
	"$MNT" "$T/in" >"$T/ship1.log" 2>&1 || true # no acknowledgement: --once reports a backlog
grep -q "reading closed segments from '$real'" "$T/ship1.log" ||
	{ cat "$T/ship1.log" >&2; fail "the shipper does not read the real folder '$real'"; }
for n in "${segs[@]}"; do
	cmp -s "$real/$n" "$T/in/$n" || fail "'$n' differs in the destination"
	[ "$(stat -c %a "$T/in/$n")" = 600 ] || fail "'$n' has mode $(stat -c %a "$T/in/$n")"
	[ "$(stat -c %Y "$T/in/$n")" = "$(stat -c %Y "$MNT/.mirrorfs/journal/$n")" ] ||
		fail "'$n' lost its modification time"
done
[ "$(ls -A "$T/in" | sort | tr '\n' ' ')" = "$(printf '%s\n' "${segs[@]}" | sort | tr '\n' ' ')" ] ||
	fail "something else was left in the destination: $(ls -A "$T/in")"

step "a folder without a status: ack_error names it, nothing trimmed"
grep -q "no status in '$T/nostate'" "$T/s1.json" || { cat "$T/s1.json"; fail "no ack_error for '$T/nostate'"; }
grep -q '"applied_lsn":null' "$T/s1.json" || { cat "$T/s1.json"; fail "an applied LSN from nowhere"; }
[ "$(ls "$MNT/.mirrorfs/journal" | wc -l)" = 3 ] || fail "segments trimmed without an acknowledgement"

step "with --rsync-opts the copy is rsync's, and the same"
"$SHIP" --once --rsync-opts "--whole-file" --mirrorctl "$CTL" --status "$T/s2.json" \
	--state-of "$T/in2=$T/nostate" "$MNT" "$T/in2" >"$T/ship2.log" 2>&1 || true
for n in "${segs[@]}"; do
	cmp -s "$real/$n" "$T/in2/$n" || fail "'$n' differs in the rsync destination"
	[ "$(stat -c %a "$T/in2/$n")" = 600 ] || fail "'$n' has mode $(stat -c %a "$T/in2/$n") (rsync)"
done

step "acknowledged up to the second segment: those two trimmed through the mount, the third kept"
second=$(seg_last "${segs[1]}")
printf '{"applied_lsn":%s}\n' "$second" >"$T/ack.json"
"$SHIP" --once --trim -v --mirrorctl "$CTL" --status "$T/s3.json" --state-of "$T/in=$T/ack.json" \
	"$MNT" "$T/in" >"$T/ship3.log" 2>&1 || true
for n in "${segs[0]}" "${segs[1]}"; do
	[ ! -e "$MNT/.mirrorfs/journal/$n" ] || fail "'$n' was acknowledged and not trimmed"
	[ ! -e "$real/$n" ] || fail "'$n' is still in the real folder"
	grep -q "trimmed '$n'" "$T/ship3.log" || fail "no trim logged for '$n'"
done
[ -e "$MNT/.mirrorfs/journal/${segs[2]}" ] || fail "'${segs[2]}' was trimmed though not acknowledged"
grep -q "\"applied_lsn\":$second" "$T/s3.json" || { cat "$T/s3.json"; fail "status lacks applied LSN $second"; }

step "mirrord's status.json acknowledges the rest: all trimmed"
"$MIRRORD" --once --incoming "$T/in" --data "$T/m/data" --state "$T/m/state" >"$T/mirrord.log" 2>&1 ||
	fail "mirrord --once failed"
"$SHIP" --once --trim --mirrorctl "$CTL" --status "$T/s4.json" --state-of "$T/in=$T/m/state" \
	"$MNT" "$T/in" >"$T/ship4.log" 2>&1 || { cat "$T/ship4.log" >&2; fail "not everything done"; }
[ -z "$(ls -A "$MNT/.mirrorfs/journal")" ] || fail "left on the primary: $(ls -A "$MNT/.mirrorfs/journal")"
verify_equal "$T/data" "$T/m/data" || fail "the mirror differs"

step "idle, a running shipper starts no process per pass"
if command -v strace >/dev/null; then
	"$SHIP" --interval 0.05 --mirrorctl "$CTL" --status "$T/s5.json" --state-of "$T/in=$T/m/state" \
		"$MNT" "$T/in" >"$T/ship5.log" 2>&1 &
	SPID=$!
	track_pid "$SPID"
	wait_for test -s "$T/s5.json" || fail "the running shipper wrote no status"
	strace -f -qq -e trace=execve -o "$T/exec.trace" -p "$SPID" &
	TPID=$!
	sleep 3 # some 40 passes
	kill -INT "$TPID"
	wait "$TPID" || true
	stop_pid "$SPID"
	# the status file's rename (at most one a second) is all there may be
	bad=$(grep -o 'execve("[^"]*"' "$T/exec.trace" | sed 's/^execve("//; s/"$//; s|.*/||' |
		grep -v -x -e mv | sort | uniq -c || true)
	[ -z "$bad" ] || fail "the idle shipper started: $bad"
	renames=$(grep -c 'execve(.*/mv"' "$T/exec.trace" || true)
	[ "$renames" -le 6 ] || fail "the idle shipper renamed its status $renames times in 3 s"
else
	echo "(no strace: the count of processes per pass is not checked)"
fi
echo "PASS ship-local"
