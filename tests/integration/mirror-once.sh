#!/bin/bash
# mirror-once.sh - mirrord end to end without the filesystem: segments made
# with mkseg (the library's writer), applied with --once and continuously;
# out-of-order, duplicate and gap delivery; rsync temporaries; hostile
# segments quarantined with nothing outside the data root touched; hold
# mode and catch-up; cascade; kill -9 during apply.
set -eu
MFS_NO_FUSE=1
. "$(dirname "$0")/lib.sh"
U=0badc0de-1111-2222-3333-444455556666
U2=feedface-1111-2222-3333-444455556666
DPID=
EXTRA_CLEANUP='stop_pid $DPID'

# A workload script of N segments, mixed operations.
workload() {
	cat <<'W'
mkdir db 0755
mkdir db/sub 0700
mknod db/t1 0100644
write db/t1 0 @65536:1
write db/t1 4096 @4096:2
write db/t1 65536 @8192:3
setxattr db/t1 user.origin primary
close
mknod db/t2 0100600
write db/t2 0 @100000:4
link db/t2 db/t2.hard
symlink db/cur t1
chmod db/t1 0640
truncate db/t1 70000
close
mknod db/journal 0100644
write db/journal 0 @5000:5
write db/t2 50000 @3000:6
unlink db/journal
rename db/t2 db/sub/t2
mknod db/sub/fifo 010644
fallocate db/t1 1 0 131072
close
write db/t1 8192 @4096:7
write db/t1 8192 @4096:8
write db/t1 12288 @4096:9
removexattr db/t1 user.origin
utimens db/t1 1700000000 5 1700000001 7
mknod db/gone 0100644
rename db/gone db/final
write db/final 0 final
W
}

mkdir -p "$T/segs" "$T/ref"
workload | "$MKSEG" "$T/segs" $U 1 > "$T/names"
mapfile -t SEGS < "$T/names"
[ ${#SEGS[@]} -eq 4 ] || fail "expected 4 segments, got ${#SEGS[@]}"
( cd "$T/segs" && "$CTL" replay --to "$T/ref" "${SEGS[@]}" >/dev/null )

newmirror() { # newmirror NAME: fresh incoming/data/state
	rm -rf "$T/$1"
	mkdir -p "$T/$1/in" "$T/$1/data" "$T/$1/state"
}
run_once() { # run_once NAME [args]: mirrord --once, returns its status
	local n=$1
	shift
	"$MIRRORD" --incoming "$T/$n/in" --data "$T/$n/data" --state "$T/$n/state" --once "$@"
}

step "--once applies in LSN order and retires the segments"
newmirror a
cp "$T/segs/"*.mfsj "$T/a/in/"
run_once a || fail "--once failed"
verify_equal "$T/ref" "$T/a/data" || fail "tree differs after --once"
[ -z "$(ls "$T/a/in"/*.mfsj 2>/dev/null)" ] || fail "applied segments not removed"
grep -q '"applied_lsn":' "$T/a/state/status.json" || fail "no status.json"
# one key name on both sides (mirrorfs says dataset), the old one kept
grep -q "\"dataset\":\"$U\"" "$T/a/state/status.json" || fail "no dataset in status.json"
grep -q "\"data_set\":\"$U\"" "$T/a/state/status.json" || fail "old data_set key dropped"
"$CTL" status "$T/a/state" >"$T/a.status" || fail "mirrorctl status of a healthy mirror exited $?"
grep -q '^last_record: [0-9-]*T[0-9:]*Z ([0-9]* s ago)$' "$T/a.status" ||
	fail "last_record not a time: $(grep last_record "$T/a.status")"
grep -q '^lag: 0[.0-9]* s$' "$T/a.status" || fail "no lag in seconds: $(cat "$T/a.status")"
grep -q '^attention: none$' "$T/a.status" || fail "attention: $(cat "$T/a.status")"
[ "$(grep -c '^dataset: ' "$T/a.status")" = 1 ] || fail "dataset shown twice or not at all"

step "out of order, twice, gap filled later, rsync temporary ignored"
newmirror b
cp "$T/segs/${SEGS[2]}" "$T/segs/${SEGS[3]}" "$T/b/in/"
cp "$T/segs/${SEGS[0]}" "$T/b/in/.${SEGS[1]}.Xy12Z"     # half-transferred
cp "$T/segs/${SEGS[0]}" "$T/b/in/"
if run_once b 2>/dev/null; then fail "--once with a gap exited 0"; fi
grep -q '"gap":{"from":' "$T/b/state/status.json" || fail "gap not reported"
rc=0; "$CTL" status "$T/b/state" >"$T/b.status" || rc=$?
[ $rc = 3 ] || fail "mirrorctl status with a gap exited $rc, want 3"
grep -q '^attention: gap$' "$T/b.status" || fail "gap: $(tail -n 1 "$T/b.status")"
mv "$T/b/in/.${SEGS[1]}.Xy12Z" "$T/b/in/bogus.txt"
cp "$T/segs/${SEGS[1]}" "$T/b/in/"
cp "$T/segs/${SEGS[0]}" "$T/b/in/"                       # re-delivered
run_once b || fail "catch-up failed"
verify_equal "$T/ref" "$T/b/data" || fail "tree differs after gap fill"
[ -e "$T/b/in/bogus.txt" ] || fail "non-segment file touched"

step "hold mode, then catch-up"
newmirror h
cp "$T/segs/"*.mfsj "$T/h/in/"
run_once h --no-apply || fail "hold mode failed"
# (mirrord's lock, .mirrorfs/lock, is the only thing it creates there)
[ -z "$(ls -A "$T/h/data" | grep -vx .mirrorfs)" ] || fail "hold mode applied something"
[ "$(ls "$T/h/in"/*.mfsj | wc -l)" -eq 4 ] || fail "hold mode did not keep segments"
run_once h || fail "catch-up after hold failed"
verify_equal "$T/ref" "$T/h/data" || fail "tree differs after hold catch-up"

step "cascade: a mirror of a mirror, with --keep and --metrics"
newmirror c1
newmirror c2
cp "$T/segs/"*.mfsj "$T/c1/in/"
run_once c1 --cascade "$T/c2/in" --keep "$T/c1/keep" --metrics "$T/c1/metrics.prom" ||
	fail "cascade mirror failed"
[ "$(ls "$T/c1/keep"/*.mfsj | wc -l)" -eq 4 ] || fail "--keep did not keep 4 segments"
grep -q '^mirrord_applied_lsn{dataset="[0-9a-f-]*",instance="[^"]*"} ' "$T/c1/metrics.prom" || fail "no metrics"
run_once c2 || fail "second mirror failed"
verify_equal "$T/ref" "$T/c2/data" || fail "cascaded tree differs"

step "continuous mode: inotify, rsync-style arrival"
newmirror w
"$MIRRORD" --incoming "$T/w/in" --data "$T/w/data" --state "$T/w/state" &
DPID=$!
for s in "${SEGS[@]}"; do
	cp "$T/segs/$s" "$T/w/in/.$s.tmp"
	mv "$T/w/in/.$s.tmp" "$T/w/in/$s"
done
last=$(seg_last "${SEGS[-1]}")
wait_for applied_ge "$T/w/state" "$last" || fail "continuous mode stalled"
kill -TERM $DPID
wait $DPID || fail "mirrord did not stop cleanly on SIGTERM"
DPID=
verify_equal "$T/ref" "$T/w/data" || fail "tree differs in continuous mode"

step "kill -9 during apply, restart: same tree"
mkdir -p "$T/big"
{
	echo "mkdir d 0755"
	for f in 0 1 2 3; do echo "mknod d/f$f 0100644"; done
	for i in $(seq 0 1500); do echo "write d/f$((i % 4)) $(( (i * 7919) % 400 * 4096 )) @4096:$i"; done
	for i in $(seq 0 40); do echo "mknod d/s$i 0100644"; echo "write d/s$i 0 small$i"; done
	echo "close"
	for i in $(seq 0 1500); do echo "write d/f$((i % 4)) $(( (i * 104729) % 400 * 4096 )) @4096:$((i + 7))"; done
	for i in $(seq 0 40 2); do echo "rename d/s$i d/r$i"; echo "unlink d/s$((i + 1))"; done
	echo "truncate d/f1 100000"
} | "$MKSEG" "$T/big" $U 1 > "$T/bignames"
mkdir -p "$T/bigref"
( cd "$T/big" && "$CTL" replay --to "$T/bigref" $(cat "$T/bignames") >/dev/null )
newmirror k
for round in $(seq 1 8); do
	cp -n "$T/big/"*.mfsj "$T/k/in/" 2>/dev/null || true
	"$MIRRORD" --incoming "$T/k/in" --data "$T/k/data" --state "$T/k/state" 2>/dev/null &
	DPID=$!
	sleep "0.0$((RANDOM % 9 + 1))"
	kill -9 $DPID 2>/dev/null || true
	wait $DPID 2>/dev/null || true
	DPID=
done
run_once k 2>/dev/null || true
cp -n "$T/big/"*.mfsj "$T/k/in/" 2>/dev/null || true
run_once k || fail "final run after kill -9 failed"
verify_equal "$T/bigref" "$T/k/data" || fail "tree differs after kill -9 restarts"

step "hostile segments are quarantined, nothing outside the root changes"
hostile() { # hostile NAME: script on stdin; expects quarantine
	local n=$1
	newmirror "$n"
	mkdir -p "$T/$n/outside"
	echo canary > "$T/$n/canary"
	mkdir -p "$T/$n/gen"
	"$MKSEG" "$T/$n/gen" $U 1 > /dev/null
	cp "$T/$n/gen/"*.mfsj "$T/$n/in/"
}
check_hostile() { # check_hostile NAME
	local n=$1
	if run_once "$n" 2>/dev/null; then fail "$n: --once exited 0"; fi
	[ -n "$(ls "$T/$n/state/quarantine/"*.reason 2>/dev/null)" ] || fail "$n: not quarantined"
	grep -q '"segments_waiting":0,' "$T/$n/state/status.json" ||
		fail "$n: segments_waiting after the quarantine: $(cat "$T/$n/state/status.json")"
	local rc=0
	"$CTL" status "$T/$n/state" >"$T/$n.status" || rc=$?
	[ $rc = 3 ] || fail "$n: mirrorctl status with a quarantined segment exited $rc, want 3"
	grep -q '^attention: quarantined segments' "$T/$n.status" ||
		fail "$n: $(tail -n 1 "$T/$n.status")"
	[ "$(cat "$T/$n/canary")" = canary ] || fail "$n: canary changed"
	[ -z "$(ls -A "$T/$n/outside")" ] || fail "$n: wrote outside the root"
	[ "$(ls -A "$T/$n" | sort | tr '\n' ' ')" = "canary data gen in outside state " ] ||
		fail "$n: new file beside the root: $(ls -A "$T/$n")"
	echo "   $n: $(cat "$T/$n/state/quarantine/"*.reason)"
}
echo "write ../canary 0 pwned" | hostile dotdot; check_hostile dotdot
echo "mknod /tmp/mfs-abs-$$ 0100644" | hostile abs; check_hostile abs
rm -f "/tmp/mfs-abs-$$"
echo "mknod .mirrorfs/x 0100644" | hostile reserved; check_hostile reserved
printf 'symlink esc ../outside\nmknod esc/pwned 0100644\n' | hostile symdir; check_hostile symdir
printf 'symlink esc ../canary\nwrite esc 0 pwned\n' | hostile symfile; check_hostile symfile
printf 'symlink esc ../canary\ntruncate esc 0\n' | hostile symtrunc; check_hostile symtrunc
printf 'symlink esc ../canary\nchmod esc 0777\n' | hostile symchmod
run_once symchmod 2>/dev/null || true # chmod of a symlink is a no-op: applied, not refused
[ "$(stat -c %a "$T/symchmod/canary")" != 777 ] || fail "chmod followed a symlink"
printf 'mkdir d 0755\nsymlink d/up ../..\nmknod d/up/pwned 0100644\n' | hostile symup; check_hostile symup
# a device node the primary accepted is replicated (as root), never quarantined
if [ "$(id -u)" = 0 ]; then
	printf 'mknod cdev 020640 1:3\nmknod bdev 060600 7:200\n' | hostile device
	run_once device || fail "device nodes: --once failed: $(cat "$T/device/state/quarantine/"*.reason 2>/dev/null)"
	[ "$(stat -c '%F %t:%T %a' "$T/device/data/cdev")" = "character special file 1:3 640" ] ||
		fail "char device not replicated: $(stat -c '%F %t:%T %a' "$T/device/data/cdev")"
	[ "$(stat -c '%F %t:%T %a' "$T/device/data/bdev")" = "block special file 7:c8 600" ] ||
		fail "block device not replicated: $(stat -c '%F %t:%T %a' "$T/device/data/bdev")"
	printf 'mknod cdev 020640 1:3\nwrite cdev 0 pwned\n' | hostile devwrite; check_hostile devwrite
fi
echo "write a 0 x" | hostile foreign
rm "$T/foreign/in/"*.mfsj
echo "mknod a 0100644" | "$MKSEG" "$T/foreign/in" $U2 1 > /dev/null
mkdir -p "$T/foreign/state"
printf 'data_set %s\napplied_lsn 0\n' $U > "$T/foreign/state/applied"
check_hostile foreign
# bit flips and truncation of a good segment
for k in 1 2 3 4 5; do
	n=flip$k
	newmirror $n
	mkdir -p "$T/$n/outside"; echo canary > "$T/$n/canary"; mkdir -p "$T/$n/gen"
	f="$T/$n/in/${SEGS[0]}"
	cp "$T/segs/${SEGS[0]}" "$f"
	size=$(stat -c %s "$f")
	pos=$(( (RANDOM * 32768 + RANDOM) % size ))
	printf "\\x$(printf %02x $(( ($(od -An -tu1 -j$pos -N1 "$f") ^ (1 << (RANDOM % 8))) )))" |
		dd of="$f" bs=1 seek=$pos conv=notrunc status=none
	check_hostile $n
done
newmirror trunc
mkdir -p "$T/trunc/outside"; echo canary > "$T/trunc/canary"; mkdir -p "$T/trunc/gen"
head -c 300 "$T/segs/${SEGS[0]}" > "$T/trunc/in/${SEGS[0]}"
check_hostile trunc

echo "PASS"
