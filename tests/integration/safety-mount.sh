#!/bin/bash
# SPDX-License-Identifier: MIT
# safety-mount.sh - mirrorfs refuses what cannot be meant, before it
# creates anything (issue 18):
#  - a mistyped -o option: no DATADIR/.mirrorfs is left behind;
#  - stacking: a MOUNTPOINT or a DATADIR that is (or lies on) a mirrorfs mount;
#  - MOUNTPOINT and DATADIR swapped: while the primary runs (DATADIR is then
#    its mount), after it stopped (the mountpoint holds the data set), and
#    for a database folder never mounted yet (DATADIR empty, MOUNTPOINT not).
set -eu
. "$(dirname "$0")/lib.sh"

# mirrorfs mounts of this test (other programs on the machine mount too)
mounts() { awk -v t="$T/" 'index($5, t) == 1 && / - fuse\.mirrorfs /' /proc/self/mountinfo | wc -l; }

# refused LOG PATTERN DATA MNT [opts...]: mirrorfs must exit non-zero, say
# PATTERN, and mount nothing
refused() {
	local log=$1 pat=$2 data=$3 mnt=$4 before
	shift 4
	before=$(mounts)
	# not -f: a mirrorfs that accepts returns once mounted (and is unmounted here)
	if "$FS" "$@" "$data" "$mnt" >"$log" 2>&1; then
		[ "$(mounts)" = "$before" ] || fusermount3 -u -z "$mnt"
		cat "$log" >&2
		fail "mirrorfs accepted DATADIR '$data' MOUNTPOINT '$mnt' $*"
	fi
	grep -q -- "$pat" "$log" || { cat "$log" >&2; fail "refusal does not say '$pat'"; }
	[ "$(mounts)" = "$before" ] || fail "a refused mirrorfs left a mount behind"
}

mkdir -p "$T/d1" "$T/m1" "$T/d2" "$T/m2" "$T/d3" "$T/m3"

step "a mistyped -o option creates nothing in DATADIR"
refused "$T/o1.log" "unknown option" "$T/d1" "$T/m1" -o rotate_intervall=1
[ ! -e "$T/d1/.mirrorfs" ] || fail "a mistyped option left '$T/d1/.mirrorfs' behind"
refused "$T/o2.log" "unknown option" "$T/d1" "$T/m1" -o journal_dir="$T/j1",bogus
[ ! -e "$T/d1/.mirrorfs" ] || fail "a mistyped option left '$T/d1/.mirrorfs' behind"
[ ! -e "$T/j1" ] || fail "a mistyped option created the journal folder"

step "the primary, mounted the right way round"
mfs_mount "$T/d1" "$T/m1"
echo hello >"$T/m1/f"

step "no stacking on a mirrorfs mount"
refused "$T/s1.log" "mountpoint '$T/m1' is a mirrorfs mount" "$T/d2" "$T/m1"
refused "$T/s2.log" "data folder '$T/m1' is a mirrorfs mount" "$T/m1" "$T/m2"
mkdir "$T/m1/sub"
refused "$T/s3.log" "is on the mirrorfs mount '$T/m1'" "$T/m1/sub" "$T/m2"
[ ! -e "$T/d2/.mirrorfs" ] || fail "a refused stacking created '$T/d2/.mirrorfs'"

step "swapped while the primary runs: DATADIR is its mount"
refused "$T/w1.log" "arguments swapped" "$T/m1" "$T/d1"
[ "$(cat "$T/m1/f")" = hello ] || fail "the primary's file changed"

step "swapped after the primary stopped: the mountpoint holds the data set"
mfs_umount "$T/m1"
refused "$T/w2.log" "mountpoint '$T/d1' holds a mirrorfs data set" "$T/m1" "$T/d1"
[ ! -e "$T/m1/.mirrorfs" ] || fail "a refused swapped mount created '$T/m1/.mirrorfs'"

step "swapped with a database folder never mounted: DATADIR empty, MOUNTPOINT not"
echo "precious" >"$T/d3/table"
refused "$T/w3.log" "data folder '$T/m3' is empty and mountpoint '$T/d3' is not" "$T/m3" "$T/d3"
[ ! -e "$T/m3/.mirrorfs" ] || fail "a refused swapped mount created '$T/m3/.mirrorfs'"

step "the right way round still works"
mfs_mount "$T/d3" "$T/m3"
[ "$(cat "$T/m3/table")" = precious ] || fail "the data is not visible through the mount"
mfs_umount "$T/m3"
mfs_mount "$T/d1" "$T/m1"
[ "$(cat "$T/m1/f")" = hello ] || fail "the primary's data is not visible after remount"
mfs_umount "$T/m1"
echo "PASS safety-mount"
