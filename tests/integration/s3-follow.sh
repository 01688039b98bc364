#!/bin/bash
# SPDX-License-Identifier: MIT
# s3-follow.sh - two mirrors follow one bucket (mirrord --incoming s3://...)
# on a real RADOS Gateway (rgw.sh) while a mirrorfs mount ships to it under a
# workload: both end equal to the mount; each segment is fetched once by each
# mirror (one LIST with start-after per poll, nothing fetched again); a
# follower restarted on its state fetches nothing it already applied;
# --incoming s3:// without --state is refused; and a keyed, encrypted,
# compressed primary ships to the bucket with nothing in the clear there, a
# follower with --auth-key --encrypt-key applies it (one without the key
# quarantines) and restore --from s3:// --encrypt-key rebuilds it.
set -eu
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/rgw.sh"
B=s3://mfs-follow
DEST=$B/db1/

rgw_start
"$CTL" s3 mb "$B" || fail "mb"
mkdir -p "$T/pdata" "$T/mnt" "$T/m1/data" "$T/m2/data"
MNT=$T/mnt
mfs_mount "$T/pdata" "$MNT" -o rotate_interval=1
"$SHIP" --interval 0.5 --mirrorctl "$CTL" --status "$T/ship.json" "$MNT" "$DEST" >"$T/ship.log" 2>&1 &
track_pid $!

step "refused: --incoming s3:// without --state"
if "$MIRRORD" --incoming "$DEST" --data "$T/m1/data" --once 2>"$T/err"; then fail "accepted"; fi
grep -q "needs --state" "$T/err" || fail "refusal: $(cat "$T/err")"

step "two mirrors follow the bucket while the primary ships under a workload"
for m in m1 m2; do
	"$MIRRORD" --incoming "$DEST" --data "$T/$m/data" --state "$T/$m/state" --s3-poll 0.5 \
		-v >"$T/$m.log" 2>&1 &
	track_pid $!
done
k=0
end=$((SECONDS + 6))
while [ $SECONDS -lt $end ]; do
	k=$((k + 1))
	mkdir -p "$MNT/w"
	head -c $((4096 + k * 97)) /dev/urandom >"$MNT/w/f$((k % 7))"
	printf 'line %d\n' "$k" >>"$MNT/w/log"
	[ $((k % 5)) = 0 ] && mv "$MNT/w/f$((k % 7))" "$MNT/w/g$k"
	sleep 0.2
done
"$CTL" rotate "$MNT" >/dev/null 2>&1 || true # nothing to close is fine
lastseg=$(ls "$MNT/.mirrorfs/journal" | grep -E '^[0-9]{20}-[0-9]{20}\.mfsj$' | sort | tail -n 1)
[ -n "$lastseg" ] || fail "no closed segment"
last=$(seg_last "$lastseg")
in_bucket() { "$CTL" s3 ls "${DEST}segments/" | grep -q -- "-0*$last\.mfsj "; }
wait_for -t 60 in_bucket || fail "LSN $last not in the bucket after 60 s"
for m in m1 m2; do
	wait_for -t 60 applied_ge "$T/$m/state" "$last" ||
		fail "$m applied $(applied_lsn "$T/$m/state"), not $last, after 60 s"
done
nkeys=$("$CTL" s3 ls "${DEST}segments/" | wc -l)
for m in m1 m2; do
	verify_equal "$MNT" "$T/$m/data" || fail "$m differs from the mount"
	got=$(sed -n 's/.*fetched \([0-9]*\) segment(s).*/\1/p' "$T/$m.log" | awk '{s += $1} END {print s + 0}')
	[ "$got" = "$nkeys" ] || fail "$m fetched $got segments for $nkeys keys"
	echo "   $m: applied LSN $last, $got segments fetched once each"
done
# caught up, a poll lists only what follows the last key: nothing
sleep 1.5
for m in m1 m2; do
	tail=$(grep "LIST s3://" "$T/$m.log" | tail -n 1)
	[[ "$tail" == *"after 'db1/segments/"*"': 0 key(s)"* ]] || fail "$m: a quiet poll listed: $tail"
done
echo "   $(grep -c "LIST s3://" "$T/m1.log") LIST requests by m1 in all"

step "a follower restarted on its state fetches nothing it applied"
"$MIRRORD" --incoming "$DEST" --data "$T/m1/data" --state "$T/m1/state" --once -v >"$T/m1b.log" 2>&1 &
wait $! 2>/dev/null || true
grep -q "fetched" "$T/m1b.log" && fail "restarted follower fetched again: $(grep fetched "$T/m1b.log" | head -2)"
stop_pid ${!MFS_BG[*]}

step "encrypted: ship, follow and restore with the keys; the bucket holds no plaintext"
MARK=Zk4PLAINMARKq9
EDEST=$B/enc/
"$CTL" keygen "$T/ka" >/dev/null && "$CTL" keygen "$T/ke" >/dev/null
mkdir -p "$T/edata" "$T/emnt" "$T/e1/data" "$T/e0/data"
EMNT=$T/emnt
mfs_mount "$T/edata" "$EMNT" -o rotate_interval=1,auth_key="$T/ka",encrypt_key="$T/ke",compress=zstd
"$SHIP" --interval 0.5 --mirrorctl "$CTL" "$EMNT" "$EDEST" >"$T/eship.log" 2>&1 &
track_pid $!
"$MIRRORD" --incoming "$EDEST" --data "$T/e1/data" --state "$T/e1/state" --s3-poll 0.5 \
	--auth-key "$T/ka" --encrypt-key "$T/ke" -v >"$T/e1.log" 2>&1 &
track_pid $!
mkdir "$EMNT/db-$MARK"
for k in $(seq 8); do
	for i in $(seq 40); do echo "row $k.$i $MARK"; done >>"$EMNT/db-$MARK/t"
	head -c $((3000 + k * 131)) /dev/urandom >"$EMNT/db-$MARK/r$((k % 3))"
	sleep 0.3
done
"$CTL" rotate "$EMNT" >/dev/null 2>&1 || true # nothing to close is fine
last=$(seg_last "$(ls "$EMNT/.mirrorfs/journal" | grep -E '^[0-9]{20}-[0-9]{20}\.mfsj$' | sort | tail -n 1)")
in_ebucket() { "$CTL" s3 ls "${EDEST}segments/" | grep -q -- "-0*$last\.mfsj "; }
wait_for -t 60 in_ebucket || fail "LSN $last not in the bucket after 60 s"
wait_for -t 60 applied_ge "$T/e1/state" "$last" ||
	fail "the keyed follower applied $(applied_lsn "$T/e1/state"), not $last, after 60 s"
verify_equal "$EMNT" "$T/e1/data" || fail "the keyed follower differs from the mount"
n=0
for key in $("$CTL" s3 ls "${EDEST}segments/" | cut -d' ' -f1); do
	"$CTL" s3 get "$B/$key" "$T/obj" || fail "get $key"
	! grep -q -a "$MARK" "$T/obj" || fail "s3://.../$key holds the marker in the clear"
	rm -f "$T/obj"
	n=$((n + 1))
done
[ "$n" -gt 1 ] || fail "only $n object(s) in the bucket"
echo "   $n objects, none with the marker in the clear"
if "$MIRRORD" --incoming "$EDEST" --data "$T/e0/data" --state "$T/e0/state" --once \
	--auth-key "$T/ka" >"$T/e0.log" 2>&1; then
	fail "a follower without the encryption key exited 0"
fi
grep -q "encrypted with key id" "$T/e0/state/quarantine/"*.reason ||
	fail "follower without the key: $(tail -3 "$T/e0.log")"
[ ! -e "$T/e0/data/db-$MARK" ] || fail "applied without the encryption key"
if "$CTL" restore --from "$EDEST" --auth-key "$T/ka" --to "$T/er0" >"$T/er0.log" 2>&1; then
	fail "restore without the encryption key exited 0"
fi
"$CTL" restore --from "$EDEST" --jobs 4 --auth-key "$T/ka" --encrypt-key "$T/ke" \
	--to "$T/er" >"$T/er.log" 2>&1 || fail "restore with the keys: $(tail -3 "$T/er.log")"
verify_equal "$EMNT" "$T/er" || fail "restored from the bucket differs from the mount"
echo OK
