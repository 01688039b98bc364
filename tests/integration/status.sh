#!/bin/bash
# status.sh - mirrorctl status in human units and its exit status (issue
# 21): a mount's status one item a line (sizes in KiB/MiB, times as ISO
# 8601), the same key names in --json as mirrord's (dataset), exit 0 when
# all is well; a shipper's status file read directly, exit 3 once its
# source mount is gone (mirrorctl(8), EXIT STATUS).
set -eu
. "$(dirname "$0")/lib.sh"

command -v rsync >/dev/null || skip "no rsync"

SPID=''
EXTRA_CLEANUP='stop_pid $SPID'
export MFS_SHIP_LOCK_DIR=$T/locks
mkdir -p "$T/locks" "$T/data" "$T/in"

step "a mount: human units, exit 0, --json keys"
mfs_mount "$T/data" "$T/mnt"
head -c 300000 /dev/urandom >"$T/mnt/f"
sync "$T/mnt/f"
"$CTL" status "$T/mnt" >"$T/st.txt" || fail "mirrorctl status of a healthy mount exited $?"
grep -q '^open_segment_size: [0-9.]* KiB$' "$T/st.txt" ||
	fail "open_segment_size not in KiB: $(grep open_segment_size "$T/st.txt")"
grep -q '^dataset: [0-9a-f-]\{36\}$' "$T/st.txt" || fail "no dataset line"
grep -q '^attention: none$' "$T/st.txt" || fail "$(tail -n 1 "$T/st.txt")"
"$CTL" status --json "$T/mnt" >"$T/st.json" || fail "--json exited $?"
grep -q '"dataset":"' "$T/st.json" || fail "no dataset key in --json"

step "the shipper's status file: up, then exit 3 once the mount is gone"
"$SHIP" --interval 0.2 --status "$T/ship.json" "$T/mnt" "$T/in/" >"$T/ship.log" 2>&1 &
SPID=$!
running() { grep -q '"state":"running"' "$T/ship.json" 2>/dev/null; }
wait_for running || { cat "$T/ship.log" >&2; fail "the shipper did not start"; }
"$CTL" status "$T/ship.json" >"$T/ship.txt" || { cat "$T/ship.txt"; fail "status of a running shipper exited $?"; }
grep -q '^time: [0-9-]*T[0-9:]*Z' "$T/ship.txt" || fail "shipper time not ISO: $(grep ^time "$T/ship.txt")"
mfs_umount "$T/mnt"
down() { grep -q '"source_up":false' "$T/ship.json"; }
wait_for down || fail "the shipper did not notice the unmount"
rc=0
"$CTL" status "$T/ship.json" >"$T/ship.txt" || rc=$?
[ $rc = 3 ] || fail "status of a shipper whose source is gone exited $rc, want 3"
grep -q '^attention: shipper source down' "$T/ship.txt" || fail "$(tail -n 1 "$T/ship.txt")"
echo OK
