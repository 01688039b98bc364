#!/bin/bash
# SPDX-License-Identifier: MIT
#
# ship-cascade.sh - a cascade (4D's mirror-mirror, D3's "log slave
# updates"): primary (mirrorfs) -> mirrorfs-ship -> mirror 1 (mirrord
# --cascade C) -> mirrorfs-ship C -> mirror 2. Both shippers trim what
# their next hop applied (acknowledgement read from the default
# DEST/.mirrord/ state folder). At the end: all three trees equal, the
# primary's journal and the cascade folder emptied.
set -eu
. "$(dirname "$0")/lib.sh"
for c in rsync mountpoint; do
	command -v $c >/dev/null || skip "$c missing"
done
[ -x "$MIRRORD" ] && [ -x "$CTL" ] || skip "mirrord/mirrorctl missing"
MNT=$T/mnt

no_segments() { # no closed segment in folder $1
	local f
	for f in "$1"/[0-9]*-[0-9]*.mfsj; do
		[[ "${f##*/}" =~ ^[0-9]{20}-[0-9]{20}\.mfsj$ ]] && [ -e "$f" ] && return 1
	done
	return 0
}

mkdir -p "$T/pdata" "$T/m1/in" "$T/m1/data" "$T/c" "$T/m2/in" "$T/m2/data"
mfs_mount "$T/pdata" "$MNT" -o rotate_interval=1
"$MIRRORD" --incoming "$T/m1/in" --data "$T/m1/data" --cascade "$T/c" >"$T/mirrord1.log" 2>&1 &
track_pid $!
"$MIRRORD" --incoming "$T/m2/in" --data "$T/m2/data" >"$T/mirrord2.log" 2>&1 &
track_pid $!
"$SHIP" --interval 0.2 --trim --mirrorctl "$CTL" --status "$T/ship1.json" \
	"$MNT" "$T/m1/in" >"$T/ship1.log" 2>&1 &
track_pid $!
# mirrord marks its cascade folder (.mirrord-cascade, its lock): the
# shipper takes a folder without segments only with that mark
wait_for -t 30 test -e "$T/c/.mirrord-cascade" || fail "mirrord did not mark its cascade folder"
"$SHIP" --interval 0.2 --trim --mirrorctl "$CTL" --status "$T/ship2.json" \
	"$T/c" "$T/m2/in" >"$T/ship2.log" 2>&1 &
track_pid $!

step "workload on the primary"
mkdir -p "$MNT/db/sub"
for k in $(seq 1 40); do
	head -c $((4096 + k * 331)) /dev/urandom >"$MNT/db/f$((k % 9))"
	printf 'line %d\n' "$k" >>"$MNT/db/log"
	[ $((k % 6)) = 0 ] && mv "$MNT/db/f$((k % 9))" "$MNT/db/sub/g$k"
	[ $((k % 10)) = 0 ] && ln -sf "sub/g$((k - 4))" "$MNT/db/latest"
	sleep 0.1
done
truncate -s 1000 "$MNT/db/log"
"$CTL" rotate "$MNT" >/dev/null || true
final=$(status_field "$MNT" last_lsn) || fail "no last_lsn in the primary's status"

step "mirror 1 and, through the cascade, mirror 2 reach LSN $final"
wait_for -t 60 applied_ge "$T/m1/in/.mirrord" "$final" || fail "mirror 1 at $(applied_lsn "$T/m1/in/.mirrord")"
wait_for -t 60 applied_ge "$T/m2/in/.mirrord" "$final" || fail "mirror 2 at $(applied_lsn "$T/m2/in/.mirrord")"
verify_equal "$T/pdata" "$T/m1/data" || fail "mirror 1 differs"
verify_equal "$T/pdata" "$T/m2/data" || fail "mirror 2 differs"

step "both hops trimmed"
wait_for -t 30 no_segments "$MNT/.mirrorfs/journal" || fail "the primary still holds segments"
wait_for -t 30 no_segments "$T/c" || fail "the cascade folder still holds segments"
echo "ok: primary, mirror 1 and mirror 2 equal at LSN $final"
