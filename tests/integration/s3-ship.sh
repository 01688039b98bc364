#!/bin/bash
# SPDX-License-Identifier: MIT
# s3-ship.sh - mirrorfs-ship to s3://BUCKET/PREFIX/ on a real RADOS Gateway
# (rgw.sh), under a workload on a mirrorfs mount (rotate_interval=1), --trim:
#  - each closed segment lands once as PREFIX/segments/FIRST-LAST.mfsj, and
#    the primary trims it only after its upload was verified;
#  - the gateway stopped for S3_TEST_DOWN (30) s: the shipper retries with
#    backoff, nothing is trimmed that is not in the bucket, the backlog grows;
#  - once back, everything reaches the bucket and leaves the primary;
#  - from the bucket alone (every segment downloaded, replayed from empty)
#    the data folder equals the mount; the keys are contiguous in LSN;
#  - a second shipper over the same bucket re-uploads nothing.
set -eu
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/rgw.sh"
DOWN=${S3_TEST_DOWN:-30}
B=s3://mfs-ship
DEST=$B/db1/

rgw_start
"$CTL" s3 mb "$B" || fail "mb"
mkdir -p "$T/pdata" "$T/mnt"
MNT=$T/mnt
JDIR=$MNT/.mirrorfs/journal
mfs_mount "$T/pdata" "$MNT" -o rotate_interval=1

k=0
produce() {
	k=$((k + 1))
	mkdir -p "$MNT/w"
	head -c $((4096 + k * 97)) /dev/urandom >"$MNT/w/f$((k % 7))"
	printf 'line %d\n' "$k" >>"$MNT/w/log"
	[ $((k % 5)) = 0 ] && mv "$MNT/w/f$((k % 7))" "$MNT/w/g$k"
	return 0
}
held() { (cd "$JDIR" && ls) 2>/dev/null | grep -E '^[0-9]{20}-[0-9]{20}\.mfsj$' || true; }
in_bucket() { "$CTL" s3 ls "${DEST}segments/" | sed 's|^db1/segments/\([^ ]*\) .*|\1|'; }

"$SHIP" --interval 0.5 --trim --max-backoff 4 --mirrorctl "$CTL" --status "$T/ship.json" -v \
	"$MNT" "$DEST" >"$T/ship.log" 2>&1 &
SHIPPER=$!
track_pid $SHIPPER

step "ship under a workload"
end=$((SECONDS + 5))
while [ $SECONDS -lt $end ]; do produce; sleep 0.2; done
wait_for -t 30 grep -q "uploaded and verified" "$T/ship.log" || fail "nothing uploaded"
[ -n "$(in_bucket)" ] || fail "the bucket is empty"

step "the gateway down for $DOWN s: retries, nothing trimmed that is not in the bucket"
rgw_gw_stop
sleep 1
declare -A gone=()
before=$(held)
end=$((SECONDS + DOWN))
while [ $SECONDS -lt $end ]; do
	produce
	for n in $before; do [ -e "$JDIR/$n" ] || gone[$n]=1; done
	before=$(held)
	sleep 0.3
done
grep -q "cannot ship to '$DEST'" "$T/ship.log" || fail "no retry message while the gateway was down"
[ "$(held | wc -l)" -ge 5 ] || fail "the backlog did not grow while the gateway was down: $(held | wc -l)"
rgw_gw_start

step "the gateway back: everything uploaded, then trimmed"
end=$((SECONDS + 3))
while [ $SECONDS -lt $end ]; do produce; sleep 0.2; done
"$CTL" rotate "$MNT" >/dev/null 2>&1 || true
last=$(status_field "$MNT" last_lsn 2>/dev/null || true)
nothing_held() { [ -z "$(held)" ]; }
wait_for -t 120 nothing_held || fail "still held after 120 s: $(held | head -3)"
in_bucket >"$T/keys"
for n in "${!gone[@]}"; do
	grep -qx "$n" "$T/keys" || fail "'$n' was trimmed while the gateway was down and is not in the bucket"
done
echo "   ${#gone[@]} segment(s) trimmed while the gateway was down, all uploaded before"
grep -q "is back after" "$T/ship.log" || fail "no 'back' message"

step "restore from the bucket alone: contiguous, equal to the mount"
mkdir -p "$T/dl"
prev=0
while read -r n; do
	[ "$(seg_first "$n")" = $((prev + 1)) ] || fail "gap in the bucket before '$n' (after LSN $prev)"
	prev=$(seg_last "$n")
	"$CTL" s3 get "${DEST}segments/$n" "$T/dl/$n" || fail "get $n"
done <"$T/keys"
[ -z "$last" ] || [ "$prev" -ge "$last" ] || fail "the bucket ends at LSN $prev, the mount closed $last"
mkdir -p "$T/rest"
"$CTL" replay --to "$T/rest" "$T/dl"/*.mfsj >"$T/replay.log" 2>&1 || fail "replay of the bucket's segments"
verify_equal "$MNT" "$T/rest" || fail "the replay of the bucket differs from the mount"
echo "   $(wc -l <"$T/keys") segments, LSN 1..$prev"

step "a second shipper over the same bucket uploads nothing again"
stop_pid $SHIPPER
mkdir -p "$T/segs"
cp "$T/dl"/*.mfsj "$T/segs/"
"$SHIP" --once --mirrorctl "$CTL" --status "$T/ship2.json" -v "$T/segs" "$DEST" >"$T/ship2.log" 2>&1 ||
	fail "second shipper: $(cat "$T/ship2.log")"
[ "$(in_bucket | wc -l)" = "$(wc -l <"$T/keys")" ] || fail "the second shipper added keys"
echo OK
