#!/bin/bash
# mirror-rejoin.sh - failover and return: a mirror is promoted with the dead
# primary's open segment, becomes the new primary, and the old primary
# rejoins as its mirror; an old primary that kept running after the
# failover (records past the promotion point) is refused, naming both LSNs.
set -eu
. "$(dirname "$0")/lib.sh"
[ -x "$MIRRORD" ] || skip "mirrord not built"

A=$T/a B=$T/b
mkdir -p "$A/data" "$B/data" "$B/incoming" "$B/state" "$A/incoming"

step "primary A with a workload, shipped to mirror B"
mfs_mount "$A/data" "$A/mnt"
mkdir "$A/mnt/db"
for i in $(seq 1 20); do echo "row $i" >>"$A/mnt/db/t1"; done
sqlite_workload "$A/mnt/db/s.db" wal 200
"$CTL" rotate "$A/mnt" >/dev/null
rsync -a "$A/mnt/.mirrorfs/journal/" "$B/incoming/"
"$MIRRORD" --once --incoming "$B/incoming" --data "$B/data" --state "$B/state" 2>>"$T/fs.log" ||
	fail "mirrord --once on B"
step "more changes that stay in A's open segment, then A dies"
sqlite_workload "$A/mnt/db/s.db" wal 50
echo tail >"$A/mnt/db/t2"
mfs_kill9 "$A/mnt"
cp -a "$A/data" "$T/a-at-death"

step "promote B with A's open segment: nothing lost"
open_seg=$(ls "$A/data/.mirrorfs/open/"open-*.mfsj | tail -n 1)
"$CTL" promote --data "$B/data" --state "$B/state" --current "$open_seg" >"$T/promote.log" ||
	{ cat "$T/promote.log"; fail "promote"; }
grep -q "final LSN" "$T/promote.log" || fail "promote did not report the final LSN"
P=$(sed -n 's/.*final LSN \([0-9]*\).*/\1/p' "$T/promote.log")
# A's data after its own crash recovery must equal the promoted mirror
mfs_mount "$T/a-at-death" "$T/a-rec"
mfs_umount "$T/a-rec"
verify_equal "$T/a-at-death" "$B/data" || fail "promoted mirror differs from the dead primary"
sqlite_ok "$B/data/db/s.db" || fail "sqlite integrity on the promoted mirror"

step "B is the new primary, continuing the LSN sequence"
mfs_mount "$B/data" "$B/mnt"
first_new=$(status_field "$B/mnt" first_lsn)
[ "$first_new" -gt "$P" ] || fail "new primary restarted its LSNs at $first_new (promoted at $P)"
echo "after failover" >"$B/mnt/db/t3"
sqlite_workload "$B/mnt/db/s.db" wal 50
"$CTL" rotate "$B/mnt" >/dev/null

step "a diverged old primary is refused, naming both LSNs"
cp -a "$A/data" "$T/a-diverged"
mfs_mount "$T/a-diverged" "$T/a-div-mnt"
echo "unseen change" >"$T/a-div-mnt/db/unseen"
mfs_umount "$T/a-div-mnt"
mkdir -p "$T/div-in" "$T/div-state"
rsync -a "$B/mnt/.mirrorfs/journal/" "$T/div-in/"
if "$CTL" rejoin --data "$T/a-diverged" --state "$T/div-state" --incoming "$T/div-in" \
	2>"$T/rejoin-div.log"; then
	fail "a diverged old primary was allowed to rejoin"
fi
grep -q "refusing to rejoin.*LSNs up to [0-9]*.*from LSN [0-9]*" "$T/rejoin-div.log" ||
	{ cat "$T/rejoin-div.log"; fail "refusal does not name both LSNs"; }
[ ! -e "$T/div-state/applied" ] || fail "refused rejoin still wrote a mirror state"

step "an old primary's segment that cannot be read is an error, not a divergence"
cp -a "$A/data" "$T/a-unread"
mfs_mount "$T/a-unread" "$T/a-unread-mnt"
mfs_umount "$T/a-unread-mnt"
n=0
for f in "$T/a-unread/.mirrorfs/open/"*.mfsj "$T/a-unread/.mirrorfs/journal/"*.mfsj; do
	[ -e "$f" ] || continue
	mv "$f" "$f.real" && ln -s "${f##*/}.real" "$f" && n=$((n + 1)) # O_NOFOLLOW: ELOOP
done
[ "$n" -gt 0 ] || fail "test premise: the old primary has no segment"
mkdir -p "$T/unread-state"
if "$CTL" rejoin --data "$T/a-unread" --state "$T/unread-state" --incoming "$T/div-in" \
	2>"$T/rejoin-unread.log"; then
	fail "rejoin accepted an old primary whose segments it could not read"
fi
grep -q "cannot open segment '.*': Too many levels of symbolic links" "$T/rejoin-unread.log" ||
	{ cat "$T/rejoin-unread.log"; fail "an unreadable segment was not reported as such"; }
! grep -q "refusing to rejoin" "$T/rejoin-unread.log" ||
	fail "an unreadable local segment was reported as a divergence: $(cat "$T/rejoin-unread.log")"

step "the repaired old primary (crash-recovered, nothing unseen) rejoins as B's mirror"
# crash recovery of A on its next mount appends checkpoint records that B
# does not have: they change no data and must not count as divergence
mfs_mount "$A/data" "$A/mnt2"
mfs_umount "$A/mnt2"
rsync -a "$B/mnt/.mirrorfs/journal/" "$A/incoming/"
if "$MIRRORD" --once --incoming "$A/incoming" --data "$A/data" --state "$A/state" 2>"$T/md.log"; then
	fail "mirrord applied onto an old primary without mirrorctl rejoin"
fi
grep -q "was a primary" "$T/md.log" || { cat "$T/md.log"; fail "mirrord refusal unclear"; }
"$CTL" rejoin --data "$A/data" --state "$A/state" --incoming "$A/incoming" >"$T/rejoin.log" ||
	{ cat "$T/rejoin.log"; fail "rejoin refused a consistent old primary"; }
"$MIRRORD" --once --incoming "$A/incoming" --data "$A/data" --state "$A/state" 2>>"$T/fs.log" ||
	fail "mirrord --once on the rejoined A"
"$CTL" checkpoint "$B/mnt" >/dev/null
verify_equal "$B/data" "$A/data" || fail "rejoined A differs from the new primary B"
mfs_umount "$B/mnt"
echo "PASS mirror-rejoin"
