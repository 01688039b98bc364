#!/bin/bash
# SPDX-License-Identifier: MIT
#
# ship-cascade.sh - a cascade (4D's mirror-mirror, D3's "log slave
# updates"): primary (mirrorfs) -> mirrorfs-ship -> mirror 1 (mirrord
# --cascade C) -> mirrorfs-ship C -> mirror 2. Both shippers trim what
# their next hop applied (acknowledgement read from the default
# DEST/.mirrord/ state folder). At the end: all three trees equal, the
# primary's journal and the cascade folder emptied.
set -eu

B=${MFS_BUILD:?MFS_BUILD not set}
S=${MFS_SRC:-$(cd "$(dirname "$0")/../.." && pwd)}
MIRRORD=$B/daemon/mirrord
CTL=$B/tools/mirrorctl
FS=$B/fs/mirrorfs
SHIP=$S/tools/mirrorfs-ship

for c in rsync fusermount3 mountpoint; do
	command -v $c >/dev/null || { echo "SKIP: $c missing"; exit 77; }
done
if [ ! -e /dev/fuse ] || [ ! -x "$FS" ] || [ ! -x "$MIRRORD" ] || [ ! -x "$CTL" ]; then
	echo "SKIP: /dev/fuse or mirrorfs/mirrord/mirrorctl missing"
	exit 77
fi

T=$(mktemp -d /tmp/mfs-cascade.XXXXXX)
PIDS=()
MNT=$T/mnt
# SIGTERM, then SIGKILL after 10 s: a cleanup never hangs on one process
stop_pids() {
	local p
	for p in "$@"; do kill "$p" 2>/dev/null; done
	for p in "$@"; do
		for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
		kill -0 "$p" 2>/dev/null && { echo "cleanup: pid $p ignored SIGTERM" >&2; kill -9 "$p"; }
		wait "$p" 2>/dev/null
	done
}
cleanup() {
	stop_pids "${PIDS[@]}"
	mountpoint -q "$MNT" && fusermount3 -u -z "$MNT"
	rm -rf "$T"
}
trap 'cleanup || true' EXIT

fail() {
	echo "FAIL: $*" >&2
	# SHIP_TEST_KEEP=1: leave everything running and in place for a look
	[ -n "${SHIP_TEST_KEEP:-}" ] && { echo "kept: $T" >&2; trap - EXIT; }
	for f in "$T"/*.log; do
		[ -s "$f" ] && { echo "--- ${f##*/}" >&2; tail -n 15 "$f" >&2; }
	done
	exit 1
}
step() { echo "== $*"; }
wait_for() { # wait_for SECONDS CMD...
	local end=$(($(date +%s) + $1))
	shift
	until "$@"; do
		[ "$(date +%s)" -lt "$end" ] || return 1
		sleep 0.1
	done
}
applied() { sed -n 's/.*"applied_lsn"[^0-9]*\([0-9]*\).*/\1/p' "$1/status.json" 2>/dev/null | head -n 1; }
past() { local a; a=$(applied "$1"); [ "${a:-0}" -ge "$2" ]; }
no_segments() { # no closed segment in folder $1
	local f
	for f in "$1"/[0-9]*-[0-9]*.mfsj; do
		[[ "${f##*/}" =~ ^[0-9]{20}-[0-9]{20}\.mfsj$ ]] && [ -e "$f" ] && return 1
	done
	return 0
}

mkdir -p "$T/pdata" "$MNT" "$T/m1/in" "$T/m1/data" "$T/c" "$T/m2/in" "$T/m2/data"
"$FS" -f -o rotate_interval=1 "$T/pdata" "$MNT" >"$T/mirrorfs.log" 2>&1 &
PIDS+=($!)
wait_for 30 mountpoint -q "$MNT" || fail "mirrorfs did not mount"
"$MIRRORD" --incoming "$T/m1/in" --data "$T/m1/data" --cascade "$T/c" >"$T/mirrord1.log" 2>&1 &
PIDS+=($!)
"$MIRRORD" --incoming "$T/m2/in" --data "$T/m2/data" >"$T/mirrord2.log" 2>&1 &
PIDS+=($!)
"$SHIP" --interval 0.2 --trim --mirrorctl "$CTL" --status "$T/ship1.json" \
	"$MNT" "$T/m1/in" >"$T/ship1.log" 2>&1 &
PIDS+=($!)
# mirrord marks its cascade folder (.mirrord-cascade, its lock): the
# shipper takes a folder without segments only with that mark
wait_for 30 test -e "$T/c/.mirrord-cascade" || fail "mirrord did not mark its cascade folder"
"$SHIP" --interval 0.2 --trim --mirrorctl "$CTL" --status "$T/ship2.json" \
	"$T/c" "$T/m2/in" >"$T/ship2.log" 2>&1 &
PIDS+=($!)

step "workload on the primary"
mkdir -p "$MNT/db/sub"
for k in $(seq 1 40); do
	head -c $((4096 + k * 331)) /dev/urandom >"$MNT/db/f$((k % 9))"
	printf 'line %d\n' "$k" >>"$MNT/db/log"
	[ $((k % 6)) = 0 ] && mv "$MNT/db/f$((k % 9))" "$MNT/db/sub/g$k"
	[ $((k % 10)) = 0 ] && ln -sf "sub/g$((k - 4))" "$MNT/db/latest"
	sleep 0.1
done
truncate -s 1000 "$MNT/db/log"
"$CTL" rotate "$MNT" >/dev/null || true
final=$(sed -n 's/.*"last_lsn"[^0-9]*\([0-9]*\).*/\1/p' "$MNT/.mirrorfs/status" | head -n 1)
[ -n "$final" ] || fail "no last_lsn in the primary's status"

step "mirror 1 and, through the cascade, mirror 2 reach LSN $final"
wait_for 60 past "$T/m1/in/.mirrord" "$final" || fail "mirror 1 at $(applied "$T/m1/in/.mirrord")"
wait_for 60 past "$T/m2/in/.mirrord" "$final" || fail "mirror 2 at $(applied "$T/m2/in/.mirrord")"
"$CTL" verify "$T/pdata" "$T/m1/data" >"$T/verify.log" 2>&1 ||
	fail "mirror 1 differs: $(head -n 3 "$T/verify.log")"
"$CTL" verify "$T/pdata" "$T/m2/data" >"$T/verify.log" 2>&1 ||
	fail "mirror 2 differs: $(head -n 3 "$T/verify.log")"

step "both hops trimmed"
wait_for 30 no_segments "$MNT/.mirrorfs/journal" || fail "the primary still holds segments"
wait_for 30 no_segments "$T/c" || fail "the cascade folder still holds segments"
echo "ok: primary, mirror 1 and mirror 2 equal at LSN $final"
