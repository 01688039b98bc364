#!/bin/bash
# SPDX-License-Identifier: MIT
# fs-odirect.sh - no stale pages after O_DIRECT writes (xfstests generic/451):
# a buffered reader caches a range, an asynchronous O_DIRECT write (Linux
# AIO, then io_uring) through another open replaces it while the reader
# reads it again, and afterwards the reader (same descriptor and a new
# open) sees the new bytes. The mount's lock holds the write so that the
# reader's read lands between the kernel's invalidation and the write.
# And a write does not make the kernel drop the file's other cached pages.
set -eu
. "$(dirname "$0")/lib.sh"
HELPER=$MFS_BUILD/tests/integration/odirect
[ -x "$HELPER" ] || skip "odirect helper not built"

mkdir -p "$T/data"
mfs_mount "$T/data" "$T/mnt"
stale=""
for mode in aio uring; do
	step "$mode O_DIRECT write while a buffered reader caches the range"
	rc=0
	"$HELPER" "$T/mnt" "$T/mnt/f-$mode" "$mode" || rc=$?
	[ $rc -eq 77 ] && { echo "($mode not available, skipped)"; continue; }
	[ $rc -eq 0 ] || stale="$stale $mode"
done
[ -z "$stale" ] || fail "a buffered reader saw stale data after an O_DIRECT write:$stale"

step "a write keeps the file's other cached pages"
# Every change comes through mirrorfs, so the kernel must not drop a file's
# whole page cache when a write changes its mtime (FUSE_CAP_AUTO_INVAL_DATA
# would, at the next GETATTR: then every read after a write goes to the
# daemon again). fincore counts the pages cached; the bytes are compared too.
head -c $((1 << 20)) /dev/urandom >"$T/cached.src"
cp "$T/cached.src" "$T/mnt/cached"
sync "$T/mnt/cached"
stat "$T/mnt/cached" >/dev/null
cat "$T/mnt/cached" >/dev/null
sleep 0.1
dd if=/dev/zero of="$T/mnt/cached" bs=4096 seek=100 count=1 conv=notrunc,fsync status=none
dd if=/dev/zero of="$T/cached.src" bs=4096 seek=100 count=1 conv=notrunc status=none
stat "$T/mnt/cached" >/dev/null
res=$(fincore -b -n -o RES "$T/mnt/cached")
echo "cached after the write: $res of $((1 << 20)) bytes"
[ "$res" -ge $((1 << 20)) ] || fail "a write dropped the file's cached pages ($res of $((1 << 20)) bytes left)"
cmp "$T/cached.src" "$T/mnt/cached" || fail "the cached file reads other bytes than were written"

step "the journal replays to the backing folder"
mfs_umount "$T/mnt"
replay_journal "$T/data/.mirrorfs" "$T/replay" || fail "replay failed"
verify_equal "$T/data" "$T/replay" || fail "replay differs"
cmp "$T/data/f-aio" "$T/replay/f-aio" || fail "f-aio differs after replay"
echo "PASS"
