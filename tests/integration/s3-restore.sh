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
#  - refusals: no such bucket prefix, --from with --segments.
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
pg "$PGBIN/pgbench -h $T/sock -p $PORT -T 8 -c 2 postgres" 2>&1 | grep -E "^tps" || fail pgbench
q "$T/sock" "CREATE TABLE marks(n int); INSERT INTO marks VALUES (1); CHECKPOINT;" || fail "mark 1"
sleep 1.5
mid=@$(date +%s.%N)
sleep 1.5
q "$T/sock" "INSERT INTO marks VALUES (2);" || fail "mark 2"
pg "$PGBIN/pgbench -h $T/sock -p $PORT -T 3 -c 2 postgres" 2>&1 | grep -E "^tps" || fail pgbench
q "$T/sock" "INSERT INTO marks VALUES (3);" || fail "mark 3"

step "everything closed is in the bucket; kill the primary"
"$CTL" rotate "$T/mnt" >/dev/null || fail "rotate"
held() { ls "$T/mnt/.mirrorfs/journal" 2>/dev/null | grep -E '^[0-9]{20}-[0-9]{20}\.mfsj$' || true; }
nothing_held() { [ -z "$(held)" ]; }
wait_for -t 120 nothing_held || fail "not everything shipped and trimmed after 120 s: $(held | head -3)"
pg_stop "$T/mnt/pg" immediate
mfs_kill9 "$T/mnt"

step "restore --from the bucket --until latest (4 downloads in parallel)"
"$CTL" s3 ls "${DEST}segments/" >"$T/keys" || fail "ls"
mkdir -p "$T/dl" "$T/ref"
while read -r k _; do "$CTL" s3 get "$B/$k" "$T/dl/${k##*/}" || fail "get $k"; done <"$T/keys"
"$CTL" replay --to "$T/ref" "$T/dl"/*.mfsj >"$T/replay.log" 2>&1 || fail "replay"
t0=$(date +%s%N)
"$CTL" restore --from "$DEST" --until latest --jobs 4 --to "$T/r1" >"$T/r1.out" 2>"$T/r1.err" ||
	fail "restore latest: $(cat "$T/r1.err")"
echo "   $(head -n 1 "$T/r1.out")"
echo "   $(tail -n 1 "$T/r1.out") ($((($(date +%s%N) - t0) / 1000000)) ms in all)"
grep -q "^fetched $(wc -l <"$T/keys") segments" "$T/r1.out" || fail "not every segment fetched: $(cat "$T/r1.out")"
verify_equal "$T/ref" "$T/r1" || fail "restore --until latest differs from the replay of the bucket"
ls /var/tmp | grep -q '^mirrorctl-restore\.' && fail "scratch folder left in /var/tmp"

pg_ok() { # DATADIR: starts, amcheck clean, prints the marks
	pg_start "$1" $PORT "$T/sock2" || fail "PostgreSQL did not start on '$1'"
	q "$T/sock2" "CREATE EXTENSION IF NOT EXISTS amcheck" >/dev/null 2>&1 || true
	pg "$PGBIN/pg_amcheck -h $T/sock2 -p $PORT --heapallindexed -d postgres" >"$T/amcheck.log" 2>&1 ||
		{ cat "$T/amcheck.log" >&2; fail "pg_amcheck on '$1'"; }
	marks=$(q "$T/sock2" "SELECT string_agg(n::text, ',' ORDER BY n) FROM marks")
	pg_stop "$1"
}
pg_ok "$T/r1/pg"
[ "$marks" = 1,2,3 ] || fail "latest: marks '$marks', want 1,2,3"

step "restore --until TIME (between mark 1 and mark 2)"
"$CTL" restore --from "$DEST" --until "$mid" --to "$T/r2" >"$T/r2.out" 2>"$T/r2.err" ||
	fail "restore --until $mid: $(cat "$T/r2.err")"
pg_ok "$T/r2/pg"
[ "$marks" = 1 ] || fail "--until $mid: marks '$marks', want 1"

step "restore --until LSN = replay --until of the same segments"
last=$(seg_last "$(tail -n 1 "$T/keys" | cut -d' ' -f1)")
mid_lsn=$((last / 2))
"$CTL" restore --from "$DEST" --until $mid_lsn --jobs 2 --to "$T/r3" >"$T/r3.out" 2>"$T/r3.err" ||
	fail "restore --until $mid_lsn: $(cat "$T/r3.err")"
mkdir -p "$T/ref3"
"$CTL" replay --to "$T/ref3" --until $mid_lsn "$T/dl"/*.mfsj >"$T/replay3.log" 2>&1 || fail "replay --until"
verify_equal "$T/ref3" "$T/r3" || fail "restore --until $mid_lsn differs from replay --until"
fetched=$(sed -n 's/^fetched \([0-9]*\) segments.*/\1/p' "$T/r3.out")
[ "$fetched" -lt "$(wc -l <"$T/keys")" ] || fail "--until $mid_lsn fetched every segment ($fetched)"

step "refusals"
if "$CTL" restore --from "$B/nothing/" --to "$T/r4" >/dev/null 2>"$T/err"; then fail "empty prefix restored"; fi
grep -q "no segment under" "$T/err" || fail "empty prefix: $(cat "$T/err")"
if "$CTL" restore --from "$DEST" --segments "$T/dl" --to "$T/r4" >/dev/null 2>"$T/err"; then
	fail "--from with --segments accepted"
fi
grep -q "exclude each other" "$T/err" || fail "--from --segments: $(cat "$T/err")"
echo OK
