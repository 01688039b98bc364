#!/bin/bash
# SPDX-License-Identifier: MIT
# lock-fsfreeze.sh - tools/fsfreeze-hook (qemu-guest-agent fsfreeze-hook.d):
# "freeze" locks every mirrorfs mount (writers parked, reads go on),
# "thaw" unlocks them and the parked writes complete; a freeze that cannot
# lock one mount exits non-zero and releases the locks it took.
#
# The hook reads MIRRORFS_MOUNTS (a copy of /proc/self/mounts restricted to
# our mounts), so that mirrorfs mounts of other tests are never locked.
set -eu
. "$(dirname "$0")/lib.sh"
HOOK=${MFS_SRC:-$(dirname "$0")/../..}/tools/fsfreeze-hook
[ -x "$HOOK" ] || skip "no $HOOK"

mkdir -p "$T/d1" "$T/d2"
mfs_mount "$T/d1" "$T/m1"
mfs_mount "$T/d2" "$T/m2"
grep -q "^mirrorfs $T/m1 fuse.mirrorfs " /proc/self/mounts || fail "mount type is not fuse.mirrorfs"
grep " $T/m[12] fuse.mirrorfs " /proc/self/mounts >"$T/mounts"
[ "$(wc -l <"$T/mounts")" = 2 ] || fail "expected two mirrorfs mounts"
export MIRRORFS_MOUNTS=$T/mounts MIRRORCTL=$CTL MIRRORFS_FREEZE_TIMEOUT=60

locked() { [ "$(status_field "$1" locked)" = true ]; }
unlocked() { [ "$(status_field "$1" locked)" = false ]; }
parked() { [ "$(status_field "$1" parked)" = 1 ]; }
thaw_all() { "$HOOK" thaw >/dev/null 2>&1; }
EXTRA_CLEANUP=thaw_all

step "freeze locks every mirrorfs mount"
echo old >"$T/m1/f"
echo keep >"$T/m2/g"
timeout 60 "$HOOK" freeze 2>"$T/freeze.log" || { cat "$T/freeze.log" >&2; fail "freeze failed"; }
locked "$T/m1" && locked "$T/m2" || fail "not every mount is locked"
echo new >>"$T/m1/f" &
W=$!
wait_for parked "$T/m1" || fail "the write was not parked"
[ "$(cat "$T/d1/f")" = old ] || fail "a write reached DATADIR while frozen"
[ "$(timeout 10 cat "$T/m2/g")" = keep ] || fail "read while frozen"

step "thaw unlocks, the parked write completes"
timeout 60 "$HOOK" thaw 2>"$T/thaw.log" || { cat "$T/thaw.log" >&2; fail "thaw failed"; }
unlocked "$T/m1" && unlocked "$T/m2" || fail "still locked after thaw"
wait "$W" || fail "the parked write failed"
[ "$(cat "$T/m1/f")" = "old
new" ] || fail "content after thaw: $(cat "$T/m1/f")"
"$HOOK" thaw 2>/dev/null || fail "a second thaw failed"

step "a failed freeze exits non-zero and releases what it locked"
mkdir -p "$T/bogus"
cp "$T/mounts" "$T/mounts.bad"
echo "mirrorfs $T/bogus fuse.mirrorfs rw 0 0" >>"$T/mounts.bad"
rc=0
MIRRORFS_MOUNTS=$T/mounts.bad timeout 60 "$HOOK" freeze 2>"$T/bad.log" || rc=$?
[ "$rc" != 0 ] || fail "freeze with an unlockable mount succeeded"
grep -q "cannot lock '$T/bogus'" "$T/bad.log" || fail "no message: $(cat "$T/bad.log")"
wait_for unlocked "$T/m1" && wait_for unlocked "$T/m2" || fail "locks left after a failed freeze"
echo after >>"$T/m1/f" # not parked
"$HOOK" bogus 2>/dev/null && fail "unknown action accepted"
echo "PASS"
