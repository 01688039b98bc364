#!/bin/bash
# SPDX-License-Identifier: MIT
# s3-restore.sh - PostgreSQL on a mirrorfs mount ships its journal to a real
# RADOS Gateway (rgw.sh) under pgbench; the primary is killed (PostgreSQL
# stopped immediately, mirrorfs SIGKILLed); then `mirrorctl restore --from
# s3://...` rebuilds the data set from the bucket alone into new folders:
#  - --until latest: equal to a replay of every segment in the bucket from
#    empty, PostgreSQL starts on it, pg_amcheck is clean, the last committed
#    row is there;
#  - --until TIME (between two marked transactions): the first row is there,
#    the second is not, pg_amcheck clean;
#  - --until LSN: equal to mirrorctl replay --until of the same segments;
#  - --dry-run: the plan (backup, segments) from one LIST, no GET of a
#    segment, pack or manifest in the gateway's access log;
#  - refusals: no such bucket prefix, --from with --segments.
# Backups (mirrorctl backup, issue 22): snapshot s1 after pgbench -i is a
# full backup (with a 16 MiB file); s2 after the load an incremental; 1% of
# the file changed, s3 an incremental whose packs in the bucket hold about
# those blocks, not the file; s3's snapshot deleted, s4 falls back to a full
# backup. Restores start from the newest backup before the target (latest:
# s4; the time: s1; an LSN before s4: the chain s1+s2+s3; an LSN before s1:
# no backup, from empty as before) and fetch only the segments after it.
# Prune --keep-backups 2 keeps s3's parents and the segments after s3 (the
# restore to an LSN before s4 runs after it), --dry-run deletes nothing,
# --keep-backups 1 removes s1..s3 and the segments up to s4 (the restore to
# latest runs after it).
set -eu
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/rgw.sh"
pg_need
PORT=$((21000 + $$ % 5000))
B=s3://mfs-restore
DEST=$B/pg1/
q() { pg "$PGBIN/psql -X -q -At -h $1 -p $PORT -c \"$2\" postgres"; }

rgw_start
"$CTL" s3 mb "$B" || fail "mb"
mkdir -p "$T/data" "$T/mnt"
mfs_mount "$T/data" "$T/mnt" -o rotate_interval=1
"$SHIP" --interval 0.5 --trim --max-backoff 4 --mirrorctl "$CTL" --status "$T/ship.json" \
	"$T/mnt" "$DEST" >"$T/ship.log" 2>&1 &
track_pid $!

step "PostgreSQL on the mount: pgbench, two marked rows around a point in time"
pg_initdb "$T/mnt/pg" || fail initdb
pg_start "$T/mnt/pg" $PORT "$T/sock" || fail "PostgreSQL did not start on the mount"
pg "$PGBIN/pgbench -h $T/sock -p $PORT -i -s 2 postgres" >/dev/null 2>&1 || fail "pgbench -i"
dd if=/dev/urandom of="$T/mnt/big" bs=1M count=16 status=none || fail "big file"

# backup NAME: snapshot NAME, back it up; its ID in $bk_id, LSN in $bk_lsn
backup() {
	"$CTL" snapshot create "$T/mnt" "$1" >/dev/null || fail "snapshot create $1"
	"$CTL" backup "$T/mnt" "$1" "$DEST" >"$T/bk-$1.out" 2>&1 || fail "backup $1: $(cat "$T/bk-$1.out")"
	echo "   $(tail -n 1 "$T/bk-$1.out")"
	bk_id=$(sed -n 's/^backup \([0-9-]*\) of snapshot.*/\1/p' "$T/bk-$1.out")
	bk_lsn=$(sed -n 's/^backup .* (LSN \([0-9]*\)).*/\1/p' "$T/bk-$1.out")
	[ -n "$bk_id" ] && [ -n "$bk_lsn" ] || fail "backup $1: no ID in $(cat "$T/bk-$1.out")"
}
# pack_bytes ID: bytes of the backup's data objects in the bucket
pack_bytes() {
	"$CTL" s3 ls "${DEST}backups/$1/" | awk '$1 ~ /\/pack-/ { n += $2 } END { print n + 0 }'
}
step "backup s1 (full) after pgbench -i"
backup s1
id1=$bk_id lsn1=$bk_lsn
grep -q ": full," "$T/bk-s1.out" || fail "s1 is not a full backup"
full_bytes=$(pack_bytes "$id1")
[ "$full_bytes" -ge $((16 << 20)) ] || fail "the full backup holds $full_bytes bytes, less than the 16 MiB file"
pg "$PGBIN/pgbench -h $T/sock -p $PORT -T 8 -c 2 postgres" 2>&1 | grep -E "^tps" || fail pgbench
q "$T/sock" "CREATE TABLE marks(n int); INSERT INTO marks VALUES (1); CHECKPOINT;" || fail "mark 1"
sleep 1.5
mid=@$(date +%s.%N)
sleep 1.5
q "$T/sock" "INSERT INTO marks VALUES (2);" || fail "mark 2"
pg "$PGBIN/pgbench -h $T/sock -p $PORT -T 3 -c 2 postgres" 2>&1 | grep -E "^tps" || fail pgbench

step "backups s2, s3 (incremental: 1% of the 16 MiB file changed), s4 (s3's snapshot gone: full)"
q "$T/sock" "CHECKPOINT;" || fail checkpoint
backup s2
id2=$bk_id
grep -q ": incremental on $id1," "$T/bk-s2.out" || fail "s2 is not an incremental on s1"
for i in $(seq 0 40); do # 41 of the 4096 blocks
	dd if=/dev/urandom of="$T/mnt/big" bs=4096 seek=$((i * 99 + 7)) count=1 conv=notrunc status=none
done
backup s3
id3=$bk_id lsn3=$bk_lsn
grep -q ": incremental on $id2," "$T/bk-s3.out" || fail "s3 is not an incremental on s2"
inc_bytes=$(pack_bytes "$id3")
echo "   full backup: $full_bytes bytes of data; incremental after 1% of the file changed: $inc_bytes"
[ "$inc_bytes" -ge $((41 * 4096)) ] || fail "the incremental holds $inc_bytes bytes, less than the 41 changed blocks"
[ "$inc_bytes" -le $((41 * 4096 + (1 << 20))) ] ||
	fail "the incremental holds $inc_bytes bytes for 41 changed blocks (164 KiB): the whole file?"
"$CTL" s3 get "${DEST}backups/$id3/manifest-$id2" "$T/m3" || fail "get the manifest of s3"
big_ext=$(awk '$1 == "f" { on = ($9 == "big") } on && $1 == "e" { n += $4 } END { print n + 0 }' "$T/m3")
[ "$big_ext" -eq $((41 * 4096)) ] || fail "s3's extents of the file: $big_ext bytes, want $((41 * 4096))"
q "$T/sock" "CREATE TABLE after_s3 AS SELECT generate_series(1, 1000) AS n;" || fail "after s3"
"$CTL" snapshot delete "$T/mnt" s3 || fail "snapshot delete s3"
backup s4
id4=$bk_id lsn4=$bk_lsn
grep -q "full backup: the previous backup's snapshot 's3' .* is gone" "$T/bk-s4.out" ||
	fail "s4 did not fall back to a full backup: $(cat "$T/bk-s4.out")"
grep -q ": full," "$T/bk-s4.out" || fail "s4 is not a full backup"
q "$T/sock" "INSERT INTO marks VALUES (3);" || fail "mark 3"

step "everything closed is in the bucket; kill the primary"
"$CTL" rotate "$T/mnt" >/dev/null || fail "rotate"
held() { ls "$T/mnt/.mirrorfs/journal" 2>/dev/null | grep -E '^[0-9]{20}-[0-9]{20}\.mfsj$' || true; }
nothing_held() { [ -z "$(held)" ]; }
wait_for -t 120 nothing_held || fail "not everything shipped and trimmed after 120 s: $(held | head -3)"
pg_stop "$T/mnt/pg" immediate
mfs_kill9 "$T/mnt"

step "the reference: every segment in the bucket, replayed from empty"
"$CTL" s3 ls "${DEST}segments/" >"$T/keys" || fail "ls"
mkdir -p "$T/dl" "$T/ref"
while read -r k _; do "$CTL" s3 get "$B/$k" "$T/dl/${k##*/}" || fail "get $k"; done <"$T/keys"
"$CTL" replay --to "$T/ref" "$T/dl"/*.mfsj >"$T/replay.log" 2>&1 || fail "replay"

pg_ok() { # DATADIR: starts, amcheck clean, prints the marks
	pg_start "$1" $PORT "$T/sock2" || fail "PostgreSQL did not start on '$1'"
	q "$T/sock2" "CREATE EXTENSION IF NOT EXISTS amcheck" >/dev/null 2>&1 || true
	pg "$PGBIN/pg_amcheck -h $T/sock2 -p $PORT --heapallindexed -d postgres" >"$T/amcheck.log" 2>&1 ||
		{ cat "$T/amcheck.log" >&2; fail "pg_amcheck on '$1'"; }
	marks=$(q "$T/sock2" "SELECT string_agg(n::text, ',' ORDER BY n) FROM marks")
	pg_stop "$1"
}

step "restore --until TIME (between mark 1 and mark 2: from backup s1)"
"$CTL" restore --from "$DEST" --until "$mid" --to "$T/r2" >"$T/r2.out" 2>"$T/r2.err" ||
	fail "restore --until $mid: $(cat "$T/r2.err")"
grep -q "^rebuilt backup $id1 " "$T/r2.out" || fail "--until $mid did not start from backup s1: $(cat "$T/r2.out")"
pg_ok "$T/r2/pg"
[ "$marks" = 1 ] || fail "--until $mid: marks '$marks', want 1"
"$CTL" restore --dry-run --from "$DEST" --until "$mid" --to "$T/rd2" >"$T/rd2.out" 2>&1 ||
	fail "restore --dry-run --until $mid: $(cat "$T/rd2.out")"
grep -q "^would rebuild backup $id1 " "$T/rd2.out" && grep -q "decided by reading the records" "$T/rd2.out" ||
	fail "restore --dry-run --until $mid: $(cat "$T/rd2.out")"

step "restore --until LSN before any backup: from empty, as without backups"
early=$((lsn1 < 300 ? lsn1 - 1 : 300)) # small: the replay from empty stays cheap
"$CTL" restore --from "$DEST" --until $early --to "$T/r4" >"$T/r4.out" 2>"$T/r4.err" ||
	fail "restore --until $early: $(cat "$T/r4.err")"
grep -q "^rebuilt backup" "$T/r4.out" && fail "--until $early used a backup: $(cat "$T/r4.out")"
mkdir -p "$T/ref4"
"$CTL" replay --to "$T/ref4" --until $early "$T/dl"/*.mfsj >"$T/replay4.log" 2>&1 || fail "replay --until $early"
verify_equal "$T/ref4" "$T/r4" || fail "restore --until $early differs from replay --until"

step "prune --keep-backups 2: s3's parents and the segments after s3 stay"
"$CTL" prune "$DEST" --keep-backups 2 >"$T/p2.out" 2>&1 || fail "prune: $(cat "$T/p2.out")"
tail -n 1 "$T/p2.out" | sed 's/^/   /'
"$CTL" s3 ls "$DEST" >"$T/after-p2" || fail ls
for id in "$id1" "$id2" "$id3" "$id4"; do
	grep -q "backups/$id/manifest" "$T/after-p2" || fail "prune --keep-backups 2 deleted backup $id"
done
while read -r k _; do
	l=$(seg_last "$k")
	if [ "$l" -gt "$lsn3" ]; then grep -q "^$k " "$T/after-p2" || fail "prune deleted $k, needed after s3"
	else grep -q "^$k " "$T/after-p2" && fail "prune kept $k (ends at or before s3's LSN $lsn3)"; fi
done <"$T/keys"

step "after that prune, restore --until LSN before s4: the chain s1+s2+s3, then segments = replay --until"
mid_lsn=$((lsn4 - 1))
"$CTL" restore --from "$DEST" --until $mid_lsn --jobs 2 --to "$T/r3" >"$T/r3.out" 2>"$T/r3.err" ||
	fail "restore --until $mid_lsn: $(cat "$T/r3.err")"
grep -q "^rebuilt backup $id3 (LSN $lsn3, a full backup and 2 incrementals" "$T/r3.out" ||
	fail "--until $mid_lsn did not start from the chain of s3: $(cat "$T/r3.out")"
want3=$(while read -r k _; do
	[ "$(seg_last "$k")" -gt "$lsn3" ] && [ "$(seg_first "$k")" -le "$mid_lsn" ] && echo "$k"
done <"$T/keys" | wc -l)
grep -q "^fetched $want3 segments" "$T/r3.out" || fail "not only the $want3 segments after s3 fetched: $(cat "$T/r3.out")"
mkdir -p "$T/ref3"
"$CTL" replay --to "$T/ref3" --until $mid_lsn "$T/dl"/*.mfsj >"$T/replay3.log" 2>&1 || fail "replay --until"
verify_equal "$T/ref3" "$T/r3" || fail "restore --until $mid_lsn differs from replay --until"

step "prune --keep-backups 1 (--dry-run first): s1..s3 and the segments up to s4 go"
"$CTL" prune "$DEST" --keep-backups 1 --dry-run >"$T/p1d.out" 2>&1 || fail "prune --dry-run: $(cat "$T/p1d.out")"
grep -q "^would delete .*backups/$id1/manifest" "$T/p1d.out" || fail "dry run: $(cat "$T/p1d.out")"
"$CTL" s3 ls "$DEST" | cmp -s - "$T/after-p2" || fail "prune --dry-run deleted something"
"$CTL" prune "$DEST" --keep-backups 1 >"$T/p1.out" 2>&1 || fail "prune: $(cat "$T/p1.out")"
tail -n 1 "$T/p1.out" | sed 's/^/   /'
"$CTL" s3 ls "$DEST" >"$T/after-p1" || fail ls
for id in "$id1" "$id2" "$id3"; do
	grep -q "backups/$id/" "$T/after-p1" && fail "prune --keep-backups 1 kept backup $id"
done
grep -q "backups/$id4/manifest" "$T/after-p1" || fail "prune --keep-backups 1 deleted the newest backup"
while read -r k _; do
	l=$(seg_last "$k")
	if [ "$l" -gt "$lsn4" ]; then grep -q "^$k " "$T/after-p1" || fail "prune deleted $k, needed after s4"
	else grep -q "^$k " "$T/after-p1" && fail "prune kept $k (ends at or before s4's LSN $lsn4)"; fi
done <"$T/keys"

step "after that prune, restore --until latest (backup s4, then the segments after it; 4 downloads in parallel)"
t0=$(date +%s%N)
"$CTL" restore --from "$DEST" --until latest --jobs 4 --to "$T/r1" >"$T/r1.out" 2>"$T/r1.err" ||
	fail "restore latest: $(cat "$T/r1.err")"
echo "   $(head -n 1 "$T/r1.out")"
echo "   $(tail -n 1 "$T/r1.out") ($((($(date +%s%N) - t0) / 1000000)) ms in all)"
after4=$(while read -r k _; do [ "$(seg_last "$k")" -gt "$lsn4" ] && echo "$k"; done <"$T/keys" | wc -l)
grep -q "^rebuilt backup $id4 " "$T/r1.out" || fail "latest did not start from backup s4: $(cat "$T/r1.out")"
grep -q "^fetched $after4 segments" "$T/r1.out" || fail "not only the $after4 segments after s4 fetched: $(cat "$T/r1.out")"
verify_equal "$T/ref" "$T/r1" || fail "restore --until latest differs from the replay of the bucket"
step "restore --dry-run: the plan from the LIST alone, no segment, pack or manifest downloaded"
RGWLOG=$CEPH_DIR/log/client.rgw.log
log0=$(wc -l <"$RGWLOG")
mkdir -p "$T/dtmp"
TMPDIR=$T/dtmp "$CTL" restore --dry-run --from "$DEST" --until latest --to "$T/rd" >"$T/rd.out" 2>&1 ||
	fail "restore --dry-run: $(cat "$T/rd.out")"
sed 's/^/   /' "$T/rd.out"
"$CTL" s3 ls "${DEST}dry-run-done/" >/dev/null || fail "ls marker"
marker_seen() { tail -n +"$((log0 + 1))" "$RGWLOG" | grep -q 'dry-run-done'; }
wait_for -t 10 marker_seen || fail "the gateway's access log does not show the marker LIST"
got=$(tail -n +"$((log0 + 1))" "$RGWLOG" | grep ' beast: ' |
	grep -E '"GET [^ ?"]*pg1/(segments|backups)/' || true)
[ -z "$got" ] || fail "restore --dry-run downloaded: $(echo "$got" | head -3)"
grep -q "^would rebuild backup $id4 " "$T/rd.out" || fail "restore --dry-run: $(cat "$T/rd.out")"
grep -q "^would fetch $after4 segments " "$T/rd.out" ||
	fail "restore --dry-run: not the $after4 segments after s4: $(cat "$T/rd.out")"
[ -e "$T/rd" ] && fail "restore --dry-run created '$T/rd'"
[ -z "$(ls -A "$T/dtmp")" ] || fail "restore --dry-run wrote in \$TMPDIR: $(ls "$T/dtmp")"
ls /var/tmp | grep -q '^mirrorctl-restore\.' && fail "scratch folder left in /var/tmp"
ls /var/tmp | grep -q '^mirrorctl-backup\.' && fail "scratch folder left in /var/tmp"
pg_ok "$T/r1/pg"
[ "$marks" = 1,2,3 ] || fail "latest: marks '$marks', want 1,2,3"

step "refusals"
if "$CTL" restore --from "$B/nothing/" --to "$T/r4" >/dev/null 2>"$T/err"; then fail "empty prefix restored"; fi
grep -q "no segment under" "$T/err" || fail "empty prefix: $(cat "$T/err")"
if "$CTL" restore --from "$DEST" --segments "$T/dl" --to "$T/r4" >/dev/null 2>"$T/err"; then
	fail "--from with --segments accepted"
fi
grep -q "exclude each other" "$T/err" || fail "--from --segments: $(cat "$T/err")"
echo OK
