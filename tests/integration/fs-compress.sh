#!/bin/bash
# fs-compress.sh - -o compress=zstd on a real mount: written data is stored
# compressed (format 2, one zstd frame per write record, so the open
# segment stays readable record by record), with and without auth_key;
# kill -9 and recovery; the journal replays to the same tree; a format-1
# open segment is closed at a mount that asks for compression; bad
# compress options are refused.
set -eu
. "$(dirname "$0")/lib.sh"

step "bad options are refused"
mkdir -p "$T/d"
for bad in lz4 zstd:0 zstd:20 zstd:x zstdx; do
	if mfs_try_mount "$T/d" "$T/m" -o compress=$bad; then fail "compress=$bad was accepted"; fi
done
rm -rf "$T/d" && mkdir "$T/d"

step "compressed and authenticated: a text file, random data"
"$CTL" keygen "$T/k" >/dev/null
mfs_mount "$T/d" "$T/m" -o compress=zstd:3,auth_key="$T/k"
yes "INSERT INTO t VALUES (42, 'the quick brown fox', 3.14159);" | head -c 4000000 >"$T/text"
head -c 1000000 /dev/urandom >"$T/rand"
cp "$T/text" "$T/m/text"
cp "$T/rand" "$T/m/rand"
s=$("$CTL" rotate "$T/m")
J=$T/d/.mirrorfs/journal
size=$(stat -c %s "$J/$s")
echo "   segment $s: $size bytes for 5000000 bytes written"
[ "$size" -lt 2000000 ] || fail "the segment did not shrink: $size bytes"
"$CTL" dump --auth-key "$T/k" "$J/$s" >"$T/dump"
grep -q "zstd=" "$T/dump" || fail "dump shows no compressed write"
tail -1 "$T/dump" | grep -q "format 2, tagged with key id .*, authenticated, ok" ||
	fail "dump: $(tail -1 "$T/dump")"
grep -q '"format":2' "$T/m/.mirrorfs/status" || fail "status: $(cat "$T/m/.mirrorfs/status")"

step "kill -9 with compressed records in the open segment, then recovery"
head -c 300000 "$T/text" >"$T/m/more"
dd if="$T/text" of="$T/m/text" bs=65536 seek=10 count=3 conv=notrunc,fsync status=none
cp "$T/m/text" "$T/text.now"
mfs_kill9 "$T/m"
mfs_mount "$T/d" "$T/m" -o compress=zstd:3,auth_key="$T/k"
cmp "$T/m/text" "$T/text.now" || fail "text differs after recovery"
cmp "$T/m/rand" "$T/rand" || fail "rand differs after recovery"
cmp "$T/m/more" <(head -c 300000 "$T/text") || fail "more differs after recovery"
mfs_umount "$T/m"
replay_journal "$T/d/.mirrorfs" "$T/replayed" || fail "the journal does not replay"
verify_equal "$T/d" "$T/replayed" || fail "the replayed journal differs from the data"

step "a format-1 open segment is closed at a mount that asks for compression"
mkdir "$T/d1"
mfs_mount "$T/d1" "$T/m1"
cp "$T/text" "$T/m1/a"
mfs_umount "$T/m1"
mfs_mount "$T/d1" "$T/m1" -o compress=zstd
cp "$T/text" "$T/m1/b"
s2=$("$CTL" rotate "$T/m1")
mfs_umount "$T/m1"
"$CTL" dump "$T/d1/.mirrorfs/journal/$s2" | tail -1 | grep -q "format 2, no tags, ok" ||
	fail "not format 2: $("$CTL" dump "$T/d1/.mirrorfs/journal/$s2" | tail -1)"
n1=$(ls "$T/d1/.mirrorfs/journal" | wc -l)
[ "$n1" = 2 ] || fail "expected the format-1 segment closed and the compressed one: $(ls "$T/d1/.mirrorfs/journal")"
replay_journal "$T/d1/.mirrorfs" "$T/replayed1" || fail "the journal does not replay"
verify_equal "$T/d1" "$T/replayed1" || fail "the replayed journal differs"

step "a mirror applies compressed segments (with and without its key)"
mkdir -p "$T/mi/in" "$T/mi/data" "$T/mi/state"
cp "$J"/*.mfsj "$T/mi/in/"
timeout 120 "$MFS_BUILD/daemon/mirrord" --once --incoming "$T/mi/in" --data "$T/mi/data" \
	--state "$T/mi/state" --auth-key "$T/k" || fail "mirrord refused compressed segments"
cmp "$T/mi/data/text" "$T/text" || fail "text differs on the mirror"
cmp "$T/mi/data/rand" "$T/rand" || fail "rand differs on the mirror"
echo PASS
