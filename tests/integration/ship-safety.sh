#!/bin/bash
# SPDX-License-Identifier: MIT
# ship-safety.sh - what mirrorfs-ship refuses, and its status when the
# mount goes away (issue 18):
#  - its two arguments swapped (a mirror's incoming folder as the source,
#    the mount as the destination): refused, nothing written into the mount;
#  - the data folder behind the mount, or a mountpoint with nothing mounted,
#    as the source; a data folder as the destination: refused;
#  - a second shipper on the same source, or on the same status file:
#    refused, naming the first's PID;
#  - mirrorfs killed under a running shipper: its status says down (not
#    "running" and up) while the mount is dead and once it is unmounted;
#    after a new mount it ships again;
#  - while it waits, another data folder's mount, given the dead mount's
#    device number by the kernel, is not "in use" by it.
set -eu
. "$(dirname "$0")/lib.sh"
command -v rsync >/dev/null || skip "no rsync"
command -v findmnt >/dev/null || skip "no findmnt"
export MFS_SHIP_LOCK_DIR=$T/locks

SPID=
EXTRA_CLEANUP='stop_pid $SPID'
# refused LOG PATTERN ARGS...: the shipper (--once) must exit non-zero saying PATTERN
refused() {
	local log=$1 pat=$2
	shift 2
	if "$SHIP" --once --mirrorctl "$CTL" "$@" >"$log" 2>&1; then
		cat "$log" >&2
		fail "mirrorfs-ship accepted: $*"
	fi
	grep -q -- "$pat" "$log" || { cat "$log" >&2; fail "refusal of '$*' does not say '$pat'"; }
}
mkdir -p "$T/data" "$T/in" "$T/state"

step "a primary with closed segments, and a mirror's incoming folder holding some"
mfs_mount "$T/data" "$T/mnt"
echo "row 1" >"$T/mnt/t"
"$CTL" rotate "$T/mnt" >/dev/null
cp "$T/mnt/.mirrorfs/journal/"*.mfsj "$T/in/"
mkdir "$T/mnt/sub"
ls -A "$T/mnt" "$T/mnt/sub" >"$T/mnt-before"

step "swapped arguments: refused, nothing copied into the mount"
refused "$T/swap.log" "is inside the mirrorfs mount '$T/mnt'" --status "$T/s0.json" "$T/in" "$T/mnt"
refused "$T/swap2.log" "is inside the mirrorfs mount '$T/mnt'" --status "$T/s0.json" "$T/in" "$T/mnt/sub/"
ls -A "$T/mnt" "$T/mnt/sub" | cmp -s - "$T/mnt-before" || fail "the swapped shipper wrote into the mount: $(ls -A "$T/mnt")"
mkdir "$T/empty-in"
refused "$T/swap3.log" "neither a mirrorfs mount nor a folder of segments" --status "$T/s0.json" \
	"$T/empty-in" "$T/mnt"

step "the raw data folder, or an unmounted mountpoint, as the source: refused"
refused "$T/raw.log" "is the data folder behind a mirrorfs mount" --status "$T/s0.json" "$T/data" "$T/in"
mkdir "$T/not-mounted"
refused "$T/unmounted.log" "is mirrorfs mounted there" --status "$T/s0.json" "$T/not-mounted" "$T/in"
refused "$T/datadest.log" "is a mirrorfs data folder" --status "$T/s0.json" "$T/mnt" "$T/data"

step "one shipper per source and per status file"
"$SHIP" --interval 0.2 --mirrorctl "$CTL" --status "$T/ship.json" --state-of "$T/in=$T/state" \
	"$T/mnt" "$T/in" 2>"$T/ship.log" &
SPID=$!
wait_for test -s "$T/ship.json" || fail "the shipper wrote no status"
refused "$T/two.log" "source '$T/mnt' is in use by mirrorfs-ship (pid $SPID)" \
	--status "$T/other.json" "$T/mnt/" "$T/in"
mkdir -p "$T/c"
cp "$T/in/"*.mfsj "$T/c/"
mkdir -p "$T/in2"
refused "$T/two-status.log" "status file '$T/ship.json' is in use by mirrorfs-ship (pid $SPID)" \
	--status "$T/ship.json" "$T/c" "$T/in2"

step "mirrorfs dies under the shipper: its status says down"
MPID=${MFS_PID[$T/mnt]}
odev=$(stat -c %d "$T/mnt/.mirrorfs/journal")
kill -9 "$MPID"
wait "$MPID" 2>/dev/null || true
# (MFS_PID keeps the mount: the exit trap drops the dead mount if a check fails)
wait_for grep -q '"state":"down"' "$T/ship.json" || { cat "$T/ship.json"; fail "status not down with the mount dead"; }
grep -q '"source_up":false' "$T/ship.json" || fail "status does not say source_up false"
grep -q 'does not answer' "$T/ship.json" || { cat "$T/ship.json"; fail "status gives no reason"; }
kill -0 "$SPID" || fail "the shipper exited"
fusermount3 -u -z "$T/mnt"
wait_for grep -q 'no longer a mirrorfs mount' "$T/ship.json" ||
	{ cat "$T/ship.json"; fail "status does not say the mount is gone"; }
grep -q '"state":"down"' "$T/ship.json" || fail "status not down once unmounted"

step "another data folder's mount, on the device number the dead mount had: not in use"
mkdir -p "$T/data2" "$T/in3"
mfs_mount "$T/data2" "$T/mnt2"
echo "other" >"$T/mnt2/o"
"$CTL" rotate "$T/mnt2" >/dev/null
ndev=$(stat -c %d "$T/mnt2/.mirrorfs/journal")
"$SHIP" --once --mirrorctl "$CTL" --status "$T/s3.json" "$T/mnt2" "$T/in3" >"$T/other.log" 2>&1 ||
	{ cat "$T/other.log" >&2; fail "a shipper of another mount was refused (device $ndev, the dead mount's $odev)"; }
ls "$T/in3/"*.mfsj >/dev/null 2>&1 || fail "nothing shipped from the other mount"
[ "$ndev" = "$odev" ] || echo "(the other mount got device $ndev, not the dead mount's $odev: the case was not hit)"
mfs_umount "$T/mnt2"

step "mounted again: the shipper is up and ships the new segments"
mfs_mount "$T/data" "$T/mnt"
echo "row 2" >>"$T/mnt/t"
seg=$("$CTL" rotate "$T/mnt")
wait_for test -e "$T/in/$seg" || { cat "$T/ship.log" >&2; fail "segment '$seg' not shipped after the remount"; }
wait_for grep -q '"state":"running"' "$T/ship.json" || fail "status not running after the remount"
grep -q '"source_up":true' "$T/ship.json" || fail "status does not say source_up true"
grep -q "is back" "$T/ship.log" || fail "the shipper did not log the source back"
stop_pid "$SPID"
SPID=
mfs_umount "$T/mnt"
echo "PASS ship-safety"
