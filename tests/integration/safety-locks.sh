#!/bin/bash
# SPDX-License-Identifier: MIT
# safety-locks.sh - one lock per role, naming the holder's PID (issue 18):
#  - failover, then `mirrorctl rejoin` (and mirrord) against the old
#    primary's data folder while its mirrorfs still runs: refused, naming
#    mirrorfs and its PID; the old primary's state is left as it was;
#    rejoin/promote given the mount instead of the data folder, restore
#    --to inside the mounted data folder: refused;
#  - two mirrord at once on one data folder, or on one state folder: the
#    second is refused naming the first's PID, and the first keeps applying;
#  - promote, restore --to and mirrorfs while a mirrord holds the folder: refused.
set -eu
. "$(dirname "$0")/lib.sh"
command -v rsync >/dev/null || skip "no rsync"
[ -x "$MIRRORD" ] || skip "mirrord not built"

DPID=
EXTRA_CLEANUP='stop_pid $DPID'
# expect_refused LOG PATTERN CMD...: CMD must fail and say PATTERN
expect_refused() {
	local log=$1 pat=$2
	shift 2
	if "$@" >"$log" 2>&1; then
		cat "$log" >&2
		fail "accepted: $*"
	fi
	grep -q -- "$pat" "$log" || { cat "$log" >&2; fail "refusal of '$*' does not say '$pat'"; }
}

A=$T/a B=$T/b
mkdir -p "$A/data" "$B/data" "$B/incoming" "$B/state" "$A/incoming" "$A/state"

step "primary A shipped to mirror B, then a failover to B while A stays mounted"
mfs_mount "$A/data" "$A/mnt"
APID=${MFS_PID[$A/mnt]}
for i in $(seq 1 50); do echo "row $i" >>"$A/mnt/t1"; done
"$CTL" rotate "$A/mnt" >/dev/null
rsync -a "$A/mnt/.mirrorfs/journal/" "$B/incoming/"
"$CTL" promote --data "$B/data" --state "$B/state" --incoming "$B/incoming" >"$T/promote.log" 2>&1 ||
	{ cat "$T/promote.log"; fail "promote B"; }
mfs_mount "$B/data" "$B/mnt"
echo "after failover" >"$B/mnt/t2"
"$CTL" rotate "$B/mnt" >/dev/null
rsync -a "$B/mnt/.mirrorfs/journal/" "$A/incoming/"
cp "$A/data/.mirrorfs/state" "$T/a-state-before"

step "rejoin against the mounted old primary is refused, naming mirrorfs and its PID"
expect_refused "$T/rejoin.log" "in use by mirrorfs (pid $APID)" \
	"$CTL" rejoin --data "$A/data" --state "$A/state" --incoming "$A/incoming"
[ ! -e "$A/state/applied" ] || fail "a refused rejoin wrote a mirror state"
expect_refused "$T/rejoin-mnt.log" "is on the mirrorfs mount" \
	"$CTL" rejoin --data "$A/mnt" --state "$A/state" --incoming "$A/incoming"

step "mirrord against the mounted old primary is refused too"
expect_refused "$T/md-a.log" "in use by mirrorfs (pid $APID)" \
	"$MIRRORD" --once --incoming "$A/incoming" --data "$A/data" --state "$A/state"
[ ! -e "$A/state/applied" ] || fail "a refused mirrord wrote a mirror state"
cmp -s "$A/data/.mirrorfs/state" "$T/a-state-before" || fail "the old primary's state changed"

step "promote and restore --to onto the mounted folder are refused"
expect_refused "$T/promote-a.log" "in use by mirrorfs (pid $APID)" \
	"$CTL" promote --data "$A/data" --state "$A/state"
expect_refused "$T/promote-mnt.log" "is on the mirrorfs mount" \
	"$CTL" promote --data "$A/mnt" --state "$A/state"
"$CTL" snapshot create "$B/mnt" s1 >/dev/null || fail "snapshot create on B"
expect_refused "$T/restore-a.log" "in use by mirrorfs (pid $APID)" \
	"$CTL" restore --snapshot "$B/mnt/.mirrorfs/snapshots/s1" --segments "$B/mnt/.mirrorfs/journal" \
	--to "$A/data/restored"
[ ! -e "$A/data/restored" ] || fail "restore created its target behind the mount"

step "once A is unmounted, rejoin goes through"
mfs_umount "$A/mnt"
"$CTL" rejoin --data "$A/data" --state "$A/state" --incoming "$A/incoming" >"$T/rejoin-ok.log" 2>&1 ||
	{ cat "$T/rejoin-ok.log"; fail "rejoin refused an unmounted old primary"; }

step "two mirrord at once: the second is refused, naming the first's PID"
"$MIRRORD" --incoming "$A/incoming" --data "$A/data" --state "$A/state" 2>"$T/md1.log" &
DPID=$!
wait_for test -s "$A/state/lock" || fail "the first mirrord did not take its locks"
wait_for grep -q " mirrord" "$A/data/.mirrorfs/lock" || fail "no PID in the data folder's lock"
mkdir -p "$T/other-state" "$T/other-data" "$T/mnt-md"
expect_refused "$T/md2.log" "in use by mirrord (pid $DPID)" \
	"$MIRRORD" --once --incoming "$A/incoming" --data "$A/data" --state "$T/other-state"
expect_refused "$T/md3.log" "state folder '$A/state' is in use by mirrord (pid $DPID)" \
	"$MIRRORD" --once --incoming "$A/incoming" --data "$T/other-data" --state "$A/state"
kill -0 "$DPID" 2>/dev/null || fail "the first mirrord died"
expect_refused "$T/promote-md.log" "in use by mirrord (pid $DPID)" \
	"$CTL" promote --data "$A/data" --state "$A/state"
expect_refused "$T/mount-md.log" "in use by mirrord (pid $DPID)" \
	"$FS" -f "$A/data" "$T/mnt-md"

step "the first mirrord keeps applying"
for i in $(seq 1 20); do echo "more $i" >>"$B/mnt/t3"; done
"$CTL" rotate "$B/mnt" >/dev/null
target=$(status_field "$B/mnt" last_lsn)
rsync -a "$B/mnt/.mirrorfs/journal/" "$A/incoming/"
wait_for applied_ge "$A/state" "$target" ||
	{ cat "$T/md1.log" >&2; fail "the first mirrord stopped applying (at $(applied_lsn "$A/state"), want $target)"; }
grep -q "^more 20$" "$A/data/t3" || fail "the first mirrord did not apply the new rows"
stop_pid "$DPID"
DPID=
mfs_umount "$B/mnt"
echo "PASS safety-locks"
