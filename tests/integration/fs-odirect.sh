#!/bin/bash
# SPDX-License-Identifier: MIT
# fs-odirect.sh - no stale pages after O_DIRECT writes (xfstests generic/451):
# a buffered reader caches a range, an asynchronous O_DIRECT write (Linux
# AIO, then io_uring) through another open replaces it while the reader
# reads it again, and afterwards the reader (same descriptor and a new
# open) sees the new bytes. The mount's lock holds the write so that the
# reader's read lands between the kernel's invalidation and the write.
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

step "the journal replays to the backing folder"
mfs_umount "$T/mnt"
replay_journal "$T/data/.mirrorfs" "$T/replay" || fail "replay failed"
verify_equal "$T/data" "$T/replay" || fail "replay differs"
cmp "$T/data/f-aio" "$T/replay/f-aio" || fail "f-aio differs after replay"
echo "PASS"
