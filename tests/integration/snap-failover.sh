#!/bin/bash
# SPDX-License-Identifier: MIT
# snap-failover.sh - a snapshot kept across failover and rejoin (issue 18).
# A snapshot's regular files are hard links to the live inodes; once the old
# primary is a mirror, mirrord writes those inodes in place, and the
# snapshot would silently hold the new primary's later rows.
#  - rejoin removes the old primary's snapshots, naming each (and mirrord
#    refuses a data folder that still holds a snapshot store);
#  - after the switch back (promote, mount), `snapshot list` shows no
#    snapshot as ok that holds later rows;
#  - a store that came through anyway (an older rejoin: mirrord applied
#    into the folder, then promote) is listed broken at mount, and its view
#    gives EIO instead of the later rows.
set -eu
. "$(dirname "$0")/lib.sh"
command -v rsync >/dev/null || skip "no rsync"
[ -x "$MIRRORD" ] || skip "mirrord not built"

A=$T/a B=$T/b
mkdir -p "$A/data" "$A/incoming" "$A/state" "$B/data" "$B/incoming" "$B/state"

step "primary A: rows 1-20, snapshot 'before' at row 20, rows 21-30, shipped to B"
mfs_mount "$A/data" "$A/mnt"
mkdir "$A/mnt/db"
for i in $(seq 1 20); do echo "row $i" >>"$A/mnt/db/t"; done
"$CTL" snapshot create "$A/mnt" before >/dev/null || fail "snapshot create"
for i in $(seq 21 30); do echo "row $i" >>"$A/mnt/db/t"; done
"$CTL" rotate "$A/mnt" >/dev/null
rsync -a "$A/mnt/.mirrorfs/journal/" "$B/incoming/"
[ "$(tail -n 1 "$A/mnt/.mirrorfs/snapshots/before/db/t")" = "row 20" ] || fail "snapshot view wrong"

step "A dies; B promoted and mounted; later rows on B, shipped to A"
mfs_kill9 "$A/mnt"
"$CTL" promote --data "$B/data" --state "$B/state" --incoming "$B/incoming" >"$T/promote-b.log" 2>&1 ||
	{ cat "$T/promote-b.log"; fail "promote B"; }
mfs_mount "$B/data" "$B/mnt"
for i in $(seq 31 40); do echo "later row $i" >>"$B/mnt/db/t"; done
"$CTL" rotate "$B/mnt" >/dev/null
rsync -a "$B/mnt/.mirrorfs/journal/" "$A/incoming/"
rsync -a "$B/mnt/.mirrorfs/journal/" "$T/bsegs/"
cp -a "$A/data" "$T/a-old" # A as an older rejoin would have left it: the store kept

step "mirrord refuses a data folder that holds snapshots"
mkdir -p "$T/old-state"
printf 'data_set %s\napplied_lsn %s\n' "$(status_field "$B/mnt" dataset)" \
	"$(sed -n 's/^last=//p' "$T/a-old/.mirrorfs/state")" >"$T/old-state/applied"
if "$MIRRORD" --once --incoming "$A/incoming" --data "$T/a-old" --state "$T/old-state" \
	2>"$T/md-snap.log"; then
	fail "mirrord applied into a data folder holding snapshots"
fi
grep -q "holds snapshots" "$T/md-snap.log" || { cat "$T/md-snap.log"; fail "mirrord refusal unclear"; }
grep -q "^row 20$" "$T/a-old/.mirrorfs/snapshots/before/tree/db/t" || fail "snapshot file changed"
! grep -q "later row" "$T/a-old/.mirrorfs/snapshots/before/tree/db/t" || fail "snapshot written through"

step "rejoin removes A's snapshots, naming them; mirrord applies B's later rows"
"$CTL" rejoin --data "$A/data" --state "$A/state" --incoming "$A/incoming" >"$T/rejoin.log" 2>&1 ||
	{ cat "$T/rejoin.log"; fail "rejoin"; }
grep -q "removing snapshot 'before' (LSN [0-9]*)" "$T/rejoin.log" ||
	{ cat "$T/rejoin.log"; fail "rejoin did not name the snapshot it removed"; }
[ ! -e "$A/data/.mirrorfs/snapshots" ] || fail "rejoin left the snapshot store"
"$MIRRORD" --once --incoming "$A/incoming" --data "$A/data" --state "$A/state" 2>"$T/md.log" ||
	{ cat "$T/md.log"; fail "mirrord --once on the rejoined A"; }
[ "$(tail -n 1 "$A/data/db/t")" = "later row 40" ] || fail "A did not get B's later rows"

step "switch back: A promoted and mounted; no snapshot listed ok holds later rows"
mfs_umount "$B/mnt"
"$CTL" promote --data "$A/data" --state "$A/state" >"$T/promote-a.log" 2>&1 ||
	{ cat "$T/promote-a.log"; fail "promote A"; }
mfs_mount "$A/data" "$A/mnt"
"$CTL" snapshot list "$A/mnt" >"$T/list-a.txt" || fail "snapshot list on A"
while read -r name _; do
	[ -n "$name" ] || continue
	if grep -q "later row" "$A/mnt/.mirrorfs/snapshots/$name/db/t" 2>/dev/null; then
		grep "^$name " "$T/list-a.txt" | grep -qw ok &&
			fail "snapshot '$name' is listed ok and holds later rows"
	fi
done <"$T/list-a.txt"
! grep -q "^before " "$T/list-a.txt" || fail "the removed snapshot 'before' is listed: $(cat "$T/list-a.txt")"
mfs_umount "$A/mnt"

step "a store that came through an older rejoin is listed broken at mount"
# what an older rejoin + mirrord + promote left: B's rows replayed in place
"$CTL" replay --to "$T/a-old" --after "$(applied_lsn "$T/old-state")" \
	"$T/bsegs/"*.mfsj >"$T/replay-old.log" 2>&1 || { cat "$T/replay-old.log"; fail "replay into the old copy"; }
grep -q "later row" "$T/a-old/.mirrorfs/snapshots/before/tree/db/t" ||
	fail "test premise: the old store's snapshot was not written through"
printf 'dataset=%s\npromoted_lsn=%s\ntime_ns=%s\n' \
	"$(sed -n 's/^data_set //p' "$T/old-state/applied")" 0 "$(date +%s%N)" >"$T/a-old/.mirrorfs/promoted"
sed -i "s/^checkpoint=.*/checkpoint=$(sed -n 's/.*-0*\([0-9][0-9]*\)\.mfsj$/\1/p' <<<"$(ls "$T/bsegs/"*.mfsj | tail -n 1)")/" \
	"$T/a-old/.mirrorfs/state"
mfs_mount "$T/a-old" "$T/old-mnt"
"$CTL" snapshot list "$T/old-mnt" >"$T/list-old.txt" || fail "snapshot list on the old copy"
grep "^before " "$T/list-old.txt" | grep -qw broken || { cat "$T/list-old.txt"; fail "written-through snapshot not listed broken"; }
if grep -q "later row" "$T/old-mnt/.mirrorfs/snapshots/before/db/t" 2>/dev/null; then
	fail "the broken snapshot's view still serves later rows"
fi
mfs_umount "$T/old-mnt"
echo "PASS snap-failover"
