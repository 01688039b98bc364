#!/bin/bash
# SPDX-License-Identifier: MIT
#
# mirror-state-fail.sh - mirrord reports, and acts on, only an applied LSN
# that is durable (issue 23): when recording the applied LSN fails after a
# batch was flushed (here: the state folder made immutable), the segments
# stay in incoming and the LSN the mirror goes by stays the recorded one;
# once the state folder works again they are applied again and recorded.
# Before, the LSN was advanced in memory anyway: the next pass retired the
# segments as "already applied" while STATE/applied still named the old
# LSN, so a restart found nothing left to bring the recorded state up (and
# a shipper reading status.json trims on such an LSN).
set -eu
MFS_NO_FUSE=1
. "$(dirname "$0")/lib.sh"
[ -x "$MIRRORD" ] && [ -x "$MKSEG" ] || skip "mirrord/mkseg missing"
command -v chattr >/dev/null || skip "no chattr"
U=4d1f2a60-0b3c-4e5d-8f70-9a1b2c3d4e5f
mkdir -p "$T/segs" "$T/in" "$T/data" "$T/state"
printf 'mknod a 0100644\nwrite a 0 first\nclose\nmknod b 0100644\nwrite b 0 second\nwrite b 6 more\n' |
	"$MKSEG" "$T/segs" $U 1 >"$T/names"
mapfile -t SEGS <"$T/names"
[ ${#SEGS[@]} = 2 ] || fail "expected 2 segments, got ${#SEGS[@]}"
chattr -i "$T/state" 2>/dev/null || skip "chattr does not work on '$T'"
EXTRA_CLEANUP='chattr -i "$T/state" 2>/dev/null || true'

step "the first segment applied and recorded"
cp "$T/segs/${SEGS[0]}" "$T/in/"
"$MIRRORD" --incoming "$T/in" --data "$T/data" --state "$T/state" >"$T/mirrord.log" 2>&1 &
MPID=$!
track_pid "$MPID"
first=$(seg_last "${SEGS[0]}")
last=$(seg_last "${SEGS[1]}")
wait_for applied_ge "$T/state" "$first" || fail "the first segment was not applied"

step "the state folder refuses writes: the second segment stays in incoming"
chattr +i "$T/state" || skip "chattr +i refused"
cp "$T/segs/${SEGS[1]}" "$T/in/.tmp" && mv "$T/in/.tmp" "$T/in/${SEGS[1]}"
wait_for grep -q "Failed to record applied LSN $last" "$T/mirrord.log" ||
	fail "recording the applied LSN did not fail"
sleep 4 # the retries after 1 and 2 s
[ -e "$T/in/${SEGS[1]}" ] || fail "'${SEGS[1]}' was retired while its LSN was not recorded"
[ "$(applied_lsn "$T/state")" = "$first" ] || fail "STATE/applied moved to $(applied_lsn "$T/state")"

step "the state folder works again: applied again and recorded"
chattr -i "$T/state"
wait_for -t 90 applied_ge "$T/state" "$last" ||
	fail "applied LSN $(applied_lsn "$T/state"), not $last, once the state folder works"
wait_for test ! -e "$T/in/${SEGS[1]}" || fail "'${SEGS[1]}' not retired once recorded"
grep -q "\"applied_lsn\":$last" "$T/state/status.json" || fail "status.json does not say $last"
[ "$(cat "$T/data/a")" = first ] && [ "$(cat "$T/data/b")" = secondmore ] ||
	fail "a holds '$(cat "$T/data/a")', b '$(cat "$T/data/b")'"
stop_pid "$MPID"
echo "PASS mirror-state-fail"
