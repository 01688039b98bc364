#!/bin/bash
# SPDX-License-Identifier: MIT
# snap-basic.sh - snapshots: `mirrorctl snapshot create|list|delete` and the
# read-only view MNT/.mirrorfs/snapshots/NAME, on ext4 (a folder of the test
# dir) and on XFS with reflink (a loop file; skipped, with a line saying
# so, only when mkfs.xfs or loop devices are missing). Per filesystem:
#  - mirrorfs on an EMPTY data dir; a fixture (hard links, symlinks, a fifo,
#    xattrs, owners, setuid, old mtimes, a sparse file, nested folders);
#    snapwriter (4 workers, random overwrites/appends/truncates/renames/
#    unlinks/mkdir/symlinks/chmod/utimens) runs ~5 s, then `snapshot
#    create s1` under load: the output line, LSN = a segment boundary;
#  - while the writers go on, the view equals `mirrorctl replay --until N`
#    of the closed segments (REF); the fixture is then changed in every way
#    and the writers stopped: after a rotate, REF from all segments --until N
#    equals the view; the fixture in the view has its old mtimes, nlink,
#    modes, owners, xattrs (verify --times against a cp -a taken before);
#  - negative controls: REF at N+200 differs from the view; a REF with one
#    byte flipped differs from REF;
#  - the view's root xattrs user.mirrorfs.lsn/dataset; writes of every kind
#    into the view fail with EROFS/EACCES/EPERM and change nothing;
#  - a second writer run (60 s on ext4, 20 s on XFS) with `snapshot create
#    s2` halfway: s1 and s2 both equal their own REF, the live mount equals
#    the replay of all segments; list (table and --json): lsn, time_ns,
#    state ok, preserved_bytes > 0 (ext4);
#  - unmount, remount: both views still equal their REF;
#  - writers again, kill -9 of mirrorfs, remount (crash recovery): both
#    views still equal their REF, the live mount equals the replay of all
#    segments;
#  - names: an existing name (exit 1, a message), invalid names refused, a
#    64-character name accepted;
#  - delete s1: s2 still equal to its REF; delete s2: views gone, list
#    empty, DATADIR/.mirrorfs/snapshots holds nothing; still so after a
#    remount.
# Checks after the setup do not stop the test: every failed check prints a
# FAIL line, the test goes on and exits 1 at the end.
#
# Environment: MFS_SNAP_FSTYPES ("ext4 xfs"), MFS_SNAP_SECONDS_EXT4 (60),
# MFS_SNAP_SECONDS_XFS (20), MFS_SNAP_RATE (writer ops/s per worker, 150),
# MFS_SEED.
set -eu
. "$(dirname "$0")/lib.sh"
command -v python3 >/dev/null || skip "no python3"
WRITER=$MFS_BUILD/tests/integration/snapwriter
[ -x "$WRITER" ] || skip "snapwriter not built ($WRITER)"
FSTYPES=${MFS_SNAP_FSTYPES:-ext4 xfs}
RATE=${MFS_SNAP_RATE:-150}
SEED=${MFS_SEED:-$$}
echo "seed $SEED"

ERRORS=0
bad() { echo "FAIL: $*" >&2; ERRORS=$((ERRORS + 1)); }

WPID= LOOP= XFS_MNT=
snap_cleanup() {
	stop_pid $WPID
	WPID=
	for m in "${!MFS_PID[@]}"; do
		fusermount3 -u -z "$m" 2>/dev/null
		kill "${MFS_PID[$m]}" 2>/dev/null
		wait "${MFS_PID[$m]}" 2>/dev/null
		unset "MFS_PID[$m]"
	done
	[ -n "$XFS_MNT" ] && { umount "$XFS_MNT" 2>/dev/null || umount -l "$XFS_MNT"; }
	[ -n "$LOOP" ] && losetup -d "$LOOP" 2>/dev/null
	XFS_MNT= LOOP=
	return 0
}
EXTRA_CLEANUP=snap_cleanup

# ---- helpers ---------------------------------------------------------------

lsn_ge() { [ "$(status_field "$1" last_lsn)" -ge "$2" ]; }

start_writers() { # start_writers MNT SEED
	"$WRITER" -k 4 -s 0 -S "$2" -r "$RATE" "$1" >"$T/writer.$2.log" 2>&1 &
	WPID=$!
}
stop_writers() {
	local rc=0
	kill -TERM "$WPID" 2>/dev/null || true
	wait "$WPID" || rc=$?
	WPID=
	cat "$T/writer.$1.log"
	[ "$rc" = 0 ] || bad "snapwriter (seed $1) exited with $rc: $(tail -n 3 "$T/writer.$1.log")"
}

# snap_create MNT NAME: sets SNAP_LSN SNAP_WIN SNAP_T0 SNAP_T1 (ns); fails the test if refused.
snap_create() {
	local out
	SNAP_T0=$(date +%s%N)
	out=$("$CTL" snapshot create "$1" "$2" 2>"$T/create.err") ||
		fail "snapshot create '$2' failed: $(cat "$T/create.err")"
	SNAP_T1=$(date +%s%N)
	echo "$out"
	[[ "$out" =~ ^$2\ lsn=([0-9]+)\ window_us=([0-9]+)$ ]] ||
		fail "snapshot create output '$out' is not 'NAME lsn=N window_us=W'"
	SNAP_LSN=${BASH_REMATCH[1]}
	SNAP_WIN=${BASH_REMATCH[2]}
}

# make_ref DATADIR UNTIL DEST: replay the closed segments from empty --until UNTIL.
make_ref() {
	local d=$1 until=$2 dest=$3
	rm -rf "$dest"
	mkdir -p "$dest"
	# shellcheck disable=SC2046
	"$CTL" replay --to "$dest" --until "$until" $(segs_upto "$d/.mirrorfs/journal" "$until") >"$T/replay.log" 2>&1 ||
		{ cat "$T/replay.log" >&2; return 1; }
}

# same A B WHAT: mirrorctl verify A B says identical, else a FAIL (counted) with the differences.
same() {
	local out rc=0
	out=$("$CTL" verify "$1" "$2" 2>&1) || rc=$?
	[ "$rc" = 0 ] && return 0
	bad "$3: verify '$1' '$2' exit $rc:"
	echo "$out" | head -n 12 >&2
	return 0
}

# snap_json MNT: the JSON array of `snapshot list --json` (a FAIL and the
# status file's "snapshots" member if the command fails).
snap_json() {
	if ! "$CTL" snapshot list --json "$1" 2>"$T/list.err"; then
		[ -f "$T/list-json-failed" ] ||
			bad "snapshot list --json failed: $(head -n 1 "$T/list.err") (using .mirrorfs/status instead)"
		touch "$T/list-json-failed"
		python3 -c 'import json,sys; print(json.dumps(json.load(open(sys.argv[1]))["snapshots"]))' \
			"$1/.mirrorfs/status"
	fi
}
# snap_field MNT NAME KEY: one member of the listed snapshot NAME ("" if absent)
snap_field() {
	snap_json "$1" | python3 -c '
import json, sys
for s in json.load(sys.stdin):
    if s["name"] == sys.argv[1]:
        print(s[sys.argv[2]])' "$2" "$3"
}

# Fixture: every kind of entry and attribute, created through the mount.
make_fixture() {
	local f=$1/fx
	mkdir -p "$f/deep/a/b/c" "$f/emptydir" "$f/movedir/sub"
	head -c 1048576 /dev/urandom >"$f/data"
	head -c 8388608 /dev/urandom >"$f/big"
	head -c 200000 /dev/urandom >"$f/trunc"
	printf 'sparse' | dd of="$f/sparse" bs=1 seek=5242880 conv=notrunc status=none
	truncate -s 8M "$f/sparse"
	echo link >"$f/hl1"
	ln "$f/hl1" "$f/hl2"
	ln -s data "$f/sym"
	ln -s ../nowhere "$f/dangling"
	mkfifo "$f/fifo"
	echo owned >"$f/owned" && chown 1234:5678 "$f/owned" && chmod 640 "$f/owned"
	echo suid >"$f/suid" && chmod 4755 "$f/suid"
	echo x >"$f/xattr" && setfattr -n user.k -v v1 "$f/xattr"
	setfattr -n user.dir -v d1 "$f/deep"
	echo deep >"$f/deep/a/b/c/file"
	echo m >"$f/movedir/sub/m"
	echo old >"$f/old"
	touch -d "2001-02-03 04:05:06.123456789" "$f/old" "$f/deep/a/b/c/file"
	touch -h -d "2002-03-04 05:06:07.5" "$f/sym"
	touch -d "2003-04-05 06:07:08.25" "$f/deep/a" "$f/emptydir"
}

# Change everything in the fixture (after the snapshot).
mutate_fixture() {
	local f=$1/fx
	dd if=/dev/urandom of="$f/data" bs=4096 seek=10 count=3 conv=notrunc status=none
	dd if=/dev/urandom of="$f/data" bs=1 seek=777 count=5000 conv=notrunc status=none
	echo appended >>"$f/data"
	dd if=/dev/urandom of="$f/big" bs=1M count=8 conv=notrunc status=none
	truncate -s 10 "$f/trunc"
	printf 'X' | dd of="$f/sparse" bs=1 seek=100000 conv=notrunc status=none
	truncate -s 1M "$f/sparse"
	echo more >>"$f/hl1"
	rm "$f/hl2"
	ln -sf big "$f/sym"
	rm "$f/dangling" "$f/fifo"
	chown 0:0 "$f/owned" && chmod 600 "$f/owned"
	chmod 755 "$f/suid"
	setfattr -n user.k -v v2 "$f/xattr" && setfattr -n user.new -v n "$f/xattr"
	setfattr -x user.dir "$f/deep"
	touch "$f/old"
	rm -r "$f/deep/a/b"
	mv "$f/movedir" "$f/moved"
	echo new >"$f/emptydir/new"
	chmod 700 "$f/emptydir"
	echo new >"$f/created"
}

# Listing with sizes, link counts, modes, owners, mtimes (ns), symlink targets.
fixture_listing() {
	(cd "$1" && find fx ! -type d -printf '%p %y %m %U %G %s %n %T@ %l\n' | sort &&
		find fx -type d -printf '%p %y %m %U %G %T@\n' | sort)
}

# Every kind of write into the view VIEW must fail with EROFS/EACCES/EPERM and change nothing.
check_readonly() {
	local view=$1
	python3 - "$view" <<'PY' || bad "the view accepted a write (see above)"
import errno, os, sys
v = sys.argv[1]
ok_errs = (errno.EROFS, errno.EACCES, errno.EPERM)
bad = 0
def expect_fail(what, fn, *a):
    global bad
    try:
        r = fn(*a)
    except OSError as e:
        if e.errno not in ok_errs:
            print("view: %s: unexpected errno %s" % (what, errno.errorcode.get(e.errno, e.errno)))
            bad += 1
        return
    if isinstance(r, int) and fn is os.open:
        os.close(r)
    print("view: %s succeeded" % what)
    bad += 1
f = v + "/fx/data"
size = os.stat(f).st_size
expect_fail("open O_WRONLY", os.open, f, os.O_WRONLY)
expect_fail("open O_RDWR", os.open, f, os.O_RDWR)
expect_fail("open O_WRONLY|O_APPEND", os.open, f, os.O_WRONLY | os.O_APPEND)
expect_fail("create", os.open, v + "/fx/newfile", os.O_WRONLY | os.O_CREAT, 0o644)
expect_fail("create at the root", os.open, v + "/newfile", os.O_WRONLY | os.O_CREAT, 0o644)
expect_fail("truncate", os.truncate, f, 0)
expect_fail("mkdir", os.mkdir, v + "/fx/newdir")
expect_fail("mkdir at the root", os.mkdir, v + "/newdir")
expect_fail("unlink", os.unlink, f)
expect_fail("rmdir", os.rmdir, v + "/fx/emptydir")
expect_fail("rename", os.rename, f, v + "/fx/data2")
expect_fail("rename out of the view", os.rename, f, v + "/../../../stolen")
expect_fail("symlink", os.symlink, "x", v + "/fx/newsym")
expect_fail("link", os.link, f, v + "/fx/newlink")
expect_fail("mkfifo", os.mkfifo, v + "/fx/newfifo")
expect_fail("chmod", os.chmod, f, 0o600)
expect_fail("chown", os.chown, f, 1, 1)
expect_fail("utime", os.utime, f, (1, 1))
expect_fail("setxattr", os.setxattr, f, "user.x", b"1")
expect_fail("removexattr", os.removexattr, v + "/fx/xattr", "user.k")
expect_fail("setxattr on the root", os.setxattr, v, "user.mirrorfs.lsn", b"1")
try:
    fd = os.open(f, os.O_RDONLY | os.O_TRUNC)
    os.close(fd)
except OSError:
    pass
if os.stat(f).st_size != size:
    print("view: open O_RDONLY|O_TRUNC truncated the file")
    bad += 1
sys.exit(1 if bad else 0)
PY
}

check_view_xattrs() { # MNT NAME LSN
	local v=$1/.mirrorfs/snapshots/$2 lsn ds
	lsn=$(python3 -c 'import os,sys; print(os.getxattr(sys.argv[1], "user.mirrorfs.lsn").decode())' "$v" 2>&1) || true
	[ "$lsn" = "$3" ] || bad "view '$2': user.mirrorfs.lsn is '$lsn', not $3"
	ds=$(python3 -c 'import os,sys; print(os.getxattr(sys.argv[1], "user.mirrorfs.dataset").decode())' "$v" 2>&1) || true
	[ "$ds" = "$(status_field "$1" dataset)" ] || bad "view '$2': user.mirrorfs.dataset is '$ds', not the data set's id"
}

# check_listed MNT NAME LSN T0 T1: listed with its lsn, state ok, time_ns in [T0, T1].
check_listed() {
	local json
	json=$(snap_json "$1")
	python3 - "$2" "$3" "$4" "$5" "$json" <<'PY' || bad "snapshot '$2' in list --json: $json"
import json, sys
name, lsn, t0, t1 = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
arr = json.loads(sys.argv[5])
s = [x for x in arr if x.get("name") == name]
assert len(s) == 1, "listed %d times" % len(s)
s = s[0]
for k in ("name", "lsn", "time_ns", "preserved_bytes", "state"):
    assert k in s, "no member %s" % k
assert s["lsn"] == lsn, "lsn %r, not %d" % (s["lsn"], lsn)
assert s["state"] == "ok", "state %r" % s["state"]
assert t0 - 2e9 <= s["time_ns"] <= t1 + 2e9, "time_ns %d not in [%d, %d]" % (s["time_ns"], t0, t1)
assert isinstance(s["preserved_bytes"], int) and s["preserved_bytes"] >= 0
PY
	"$CTL" snapshot list "$1" >"$T/list.txt" 2>&1 || bad "snapshot list (table) failed: $(cat "$T/list.txt")"
	grep -q "^$2 " "$T/list.txt" || bad "snapshot list (table) does not show '$2': $(cat "$T/list.txt")"
}

# ---- one filesystem ---------------------------------------------------------

snap_suite() { # FSTYPE BASEDIR SECONDS
	local fst=$1 base=$2 secs=$3
	local D=$base/data M=$T/mnt-$fst V N1 N2 T10 T11 T20 T21 seg pb du
	V=$M/.mirrorfs/snapshots
	mkdir -p "$D"
	step "[$fst] mirrorfs on an empty data dir ($(df -T "$base" | awk 'NR==2 {print $2}') at '$base'), fixture, 4 writers"
	mfs_mount "$D" "$M"
	make_fixture "$M"
	rm -rf "$T/fx-copy-$fst"
	cp -a "$M/fx" "$T/fx-copy-$fst"
	fixture_listing "$M" >"$T/fx-before-$fst.txt"
	start_writers "$M" "$SEED"
	wait_for lsn_ge "$M" 500 || fail "[$fst] the writers wrote nothing"
	sleep 5
	kill -0 "$WPID" 2>/dev/null || { cat "$T/writer.$SEED.log"; fail "[$fst] snapwriter died"; }

	step "[$fst] snapshot create s1 under load"
	snap_create "$M" s1
	N1=$SNAP_LSN T10=$SNAP_T0 T11=$SNAP_T1
	echo "[$fst] s1: lsn $N1, window ${SNAP_WIN} us"
	seg=$(ls "$D/.mirrorfs/journal/" | grep -c -- "-$(printf %020d "$N1").mfsj" || true)
	[ "$seg" = 1 ] || bad "[$fst] no closed segment ends at the snapshot's LSN $N1: $(ls "$D/.mirrorfs/journal/")"
	[ -d "$V/s1" ] || fail "[$fst] no view '$V/s1'"

	step "[$fst] the view equals replay --until $N1 while the writers go on"
	make_ref "$D" "$N1" "$T/ref-$fst-1" || fail "[$fst] replay --until $N1"
	same "$V/s1" "$T/ref-$fst-1" "[$fst] s1 view during writes"
	sleep 2
	mutate_fixture "$M"
	sleep 1
	stop_writers "$SEED"
	"$CTL" rotate "$M" >/dev/null || fail "[$fst] rotate"

	case $fst in # which preservation ran: the fixture's 1 MiB writes and truncates are clones on XFS
	xfs) grep -q "reflink clones (FICLONERANGE)" "$T/fs.log" || bad "[$fst] no reflink clone was made" ;;
	ext4) grep -q "no reflink here" "$T/fs.log" || bad "[$fst] ext4 did not fall back to copying blocks" ;;
	esac

	step "[$fst] after the writers: view == REF(--until $N1) of all segments"
	make_ref "$D" "$N1" "$T/ref-$fst-1" || fail "[$fst] replay --until $N1"
	same "$V/s1" "$T/ref-$fst-1" "[$fst] s1 view after the writers"
	"$CTL" verify --times "$V/s1/fx" "$T/fx-copy-$fst" >"$T/v.log" 2>&1 ||
		{ bad "[$fst] s1 fixture differs from its cp -a taken before the snapshot (verify --times):"; head -n 12 "$T/v.log" >&2; }
	fixture_listing "$V/s1" >"$T/fx-view-$fst.txt"
	diff "$T/fx-before-$fst.txt" "$T/fx-view-$fst.txt" >"$T/fx.diff" ||
		{ bad "[$fst] stat of the fixture in the view differs from before the snapshot (- before, + view):"; head -n 20 "$T/fx.diff" >&2; }

	step "[$fst] negative controls"
	make_ref "$D" $((N1 + 200)) "$T/ref-$fst-x" || fail "[$fst] replay --until $((N1 + 200))"
	if "$CTL" verify "$V/s1" "$T/ref-$fst-x" >/dev/null 2>&1; then
		bad "[$fst] negative control: the view equals REF at LSN $((N1 + 200)) (verify cannot see a difference)"
	fi
	cp -a "$T/ref-$fst-1" "$T/ref-$fst-flip"
	python3 -c 'import sys; f=open(sys.argv[1],"r+b"); f.seek(12345); b=f.read(1); f.seek(12345); f.write(bytes([b[0]^1]))' \
		"$T/ref-$fst-flip/fx/data"
	"$CTL" verify "$T/ref-$fst-1" "$T/ref-$fst-flip" >/dev/null 2>&1 &&
		bad "[$fst] negative control: verify missed one flipped byte"
	touch -d "2011-01-01" "$T/ref-$fst-flip/fx/old"
	"$CTL" verify --times "$V/s1/fx" "$T/ref-$fst-flip/fx" >/dev/null 2>&1 &&
		bad "[$fst] negative control: verify --times missed a changed mtime"
	rm -rf "$T/ref-$fst-x" "$T/ref-$fst-flip"

	step "[$fst] the view's root xattrs, listing, read-only"
	check_view_xattrs "$M" s1 "$N1"
	check_listed "$M" s1 "$N1" "$T10" "$T11"
	check_readonly "$V/s1"
	same "$V/s1" "$T/ref-$fst-1" "[$fst] s1 view after the write attempts"

	step "[$fst] writers for $secs s, snapshot s2 halfway"
	start_writers "$M" $((SEED + 1))
	sleep $((secs / 2))
	snap_create "$M" s2
	N2=$SNAP_LSN T20=$SNAP_T0 T21=$SNAP_T1
	echo "[$fst] s2: lsn $N2, window ${SNAP_WIN} us"
	[ "$N2" -gt "$N1" ] || bad "[$fst] s2's LSN $N2 is not after s1's $N1"
	same "$V/s1" "$T/ref-$fst-1" "[$fst] s1 view while writing (after s2)"
	sleep $((secs - secs / 2))
	stop_writers $((SEED + 1))
	"$CTL" rotate "$M" >/dev/null || fail "[$fst] rotate"
	make_ref "$D" "$N2" "$T/ref-$fst-2" || fail "[$fst] replay --until $N2"
	same "$V/s1" "$T/ref-$fst-1" "[$fst] s1 view after $secs s of writes"
	same "$V/s2" "$T/ref-$fst-2" "[$fst] s2 view"
	make_ref "$D" 99999999999 "$T/ref-$fst-all" || fail "[$fst] replay of all segments"
	same "$M" "$T/ref-$fst-all" "[$fst] live mount vs replay of all segments"
	check_view_xattrs "$M" s2 "$N2"
	check_listed "$M" s1 "$N1" "$T10" "$T11"
	check_listed "$M" s2 "$N2" "$T20" "$T21"
	pb=$(snap_field "$M" s1 preserved_bytes)
	echo "[$fst] preserved_bytes: s1 $pb, s2 $(snap_field "$M" s2 preserved_bytes)"
	if [ "$fst" = ext4 ]; then
		[ -n "$pb" ] && [ "$pb" -ge 8388608 ] ||
			bad "[$fst] s1 preserved_bytes '$pb' < 8 MiB (fx/big, 8 MiB, was overwritten after s1)"
	fi

	step "[$fst] unmount, remount: both views unchanged"
	mfs_umount "$M"
	mfs_mount "$D" "$M"
	same "$V/s1" "$T/ref-$fst-1" "[$fst] s1 view after remount"
	same "$V/s2" "$T/ref-$fst-2" "[$fst] s2 view after remount"
	check_listed "$M" s1 "$N1" "$T10" "$T11"
	check_listed "$M" s2 "$N2" "$T20" "$T21"
	fixture_listing "$V/s1" >"$T/fx-view-$fst.txt"
	diff -q "$T/fx-before-$fst.txt" "$T/fx-view-$fst.txt" >/dev/null ||
		bad "[$fst] stat of the s1 fixture differs from before the snapshot after remount"

	step "[$fst] kill -9 of mirrorfs under writers, remount: views unchanged, live == replay"
	start_writers "$M" $((SEED + 2))
	wait_for lsn_ge "$M" $(($(status_field "$M" last_lsn) + 300)) || bad "[$fst] the writers wrote nothing"
	sleep 2
	mfs_kill9 "$M"
	wait "$WPID" 2>/dev/null || true # it fails with ENOTCONN
	WPID=
	mfs_mount "$D" "$M"
	grep "recovery:" "$T/fs.log" | tail -n 1
	same "$V/s1" "$T/ref-$fst-1" "[$fst] s1 view after kill -9 and remount"
	same "$V/s2" "$T/ref-$fst-2" "[$fst] s2 view after kill -9 and remount"
	check_listed "$M" s1 "$N1" "$T10" "$T11"
	check_listed "$M" s2 "$N2" "$T20" "$T21"
	"$CTL" rotate "$M" >/dev/null || fail "[$fst] rotate"
	make_ref "$D" 99999999999 "$T/ref-$fst-all" || fail "[$fst] replay of all segments"
	same "$M" "$T/ref-$fst-all" "[$fst] live mount vs replay of all segments after kill -9"

	step "[$fst] names"
	local rc=0
	"$CTL" snapshot create "$M" s1 >"$T/dup.out" 2>"$T/dup.err" || rc=$?
	[ "$rc" = 1 ] && [ -s "$T/dup.err" ] ||
		bad "[$fst] create of the existing name s1: exit $rc, stderr '$(cat "$T/dup.err")' (want 1 and a message)"
	local name long
	long=$(printf 'a%.0s' $(seq 64))
	for name in .hidden a/b "sp ace" 'st*r' "$long"b "" ..; do
		if "$CTL" snapshot create "$M" "$name" >/dev/null 2>&1; then
			bad "[$fst] invalid snapshot name '$name' accepted"
			"$CTL" snapshot delete "$M" "$name" >/dev/null 2>&1 || true
		fi
	done
	"$CTL" snapshot create "$M" "$long" >/dev/null 2>"$T/long.err" ||
		bad "[$fst] 64-character name refused: $(cat "$T/long.err")"
	"$CTL" snapshot create "$M" "A-z_0.9" >/dev/null 2>"$T/chars.err" ||
		bad "[$fst] name 'A-z_0.9' refused: $(cat "$T/chars.err")"
	"$CTL" snapshot delete "$M" "$long" >/dev/null 2>&1 || bad "[$fst] delete of the 64-character name"
	"$CTL" snapshot delete "$M" "A-z_0.9" >/dev/null 2>&1 || bad "[$fst] delete of 'A-z_0.9'"
	"$CTL" snapshot delete "$M" nosuch >/dev/null 2>&1 && bad "[$fst] delete of a missing snapshot succeeded"

	step "[$fst] delete s1 (s2 intact), delete s2 (store empty)"
	du=$(du -sk "$D/.mirrorfs/snapshots" | cut -f1)
	echo "[$fst] store before delete: ${du} KiB"
	"$CTL" snapshot delete "$M" s1 >/dev/null 2>"$T/del.err" || bad "[$fst] delete s1: $(cat "$T/del.err")"
	[ ! -e "$V/s1" ] || bad "[$fst] view s1 still there after delete"
	[ ! -e "$D/.mirrorfs/snapshots/s1" ] || bad "[$fst] store '$D/.mirrorfs/snapshots/s1' still there after delete"
	same "$V/s2" "$T/ref-$fst-2" "[$fst] s2 view after delete of s1"
	"$CTL" snapshot delete "$M" s2 >/dev/null 2>"$T/del.err" || bad "[$fst] delete s2: $(cat "$T/del.err")"
	[ ! -e "$V/s2" ] || bad "[$fst] view s2 still there after delete"
	[ -z "$(ls -A "$V" 2>/dev/null)" ] || bad "[$fst] snapshots folder not empty: $(ls -A "$V")"
	[ "$(snap_json "$M" | tr -d ' \n')" = "[]" ] || bad "[$fst] list after deleting all: $(snap_json "$M")"
	[ -z "$(find "$D/.mirrorfs/snapshots" -mindepth 1 2>/dev/null | head -n 5)" ] ||
		bad "[$fst] store not empty after deleting all: $(find "$D/.mirrorfs/snapshots" -mindepth 1 | head -n 5)"
	du=$(du -sk "$D/.mirrorfs/snapshots" 2>/dev/null | cut -f1)
	echo "[$fst] store after delete: ${du:-0} KiB"
	[ "$(stat -c %h "$M/fx/data")" = 1 ] || bad "[$fst] live nlink of fx/data is $(stat -c %h "$M/fx/data") after deleting all snapshots"
	same "$M" "$T/ref-$fst-all" "[$fst] live mount vs replay after the deletes"
	mfs_umount "$M"
	mfs_mount "$D" "$M"
	[ -z "$(ls -A "$V" 2>/dev/null)" ] || bad "[$fst] deleted snapshots back after remount: $(ls -A "$V")"
	mfs_umount "$M"
	rm -rf "$T/ref-$fst-1" "$T/ref-$fst-2" "$T/ref-$fst-all" "$D"
}

xfs_setup() {
	command -v mkfs.xfs >/dev/null || { echo "SKIP xfs: mkfs.xfs is not installed"; return 1; }
	[ "$(id -u)" = 0 ] || { echo "SKIP xfs: needs root for losetup/mount"; return 1; }
	truncate -s 4G "$T/xfs.img"
	mkfs.xfs -q -m reflink=1 "$T/xfs.img" || { echo "SKIP xfs: mkfs.xfs -m reflink=1 failed"; return 1; }
	LOOP=$(losetup -f --show "$T/xfs.img" 2>/dev/null) || { LOOP=; echo "SKIP xfs: no loop device"; return 1; }
	mkdir -p "$T/xfs"
	mount "$LOOP" "$T/xfs" || { echo "SKIP xfs: cannot mount $LOOP"; return 1; }
	XFS_MNT=$T/xfs
}

for fst in $FSTYPES; do
	case $fst in
	ext4)
		mkdir -p "$T/ext4"
		snap_suite ext4 "$T/ext4" "${MFS_SNAP_SECONDS_EXT4:-60}"
		;;
	xfs)
		if xfs_setup; then
			snap_suite xfs "$XFS_MNT" "${MFS_SNAP_SECONDS_XFS:-20}"
			umount "$XFS_MNT" && losetup -d "$LOOP" && XFS_MNT= LOOP=
			rm -f "$T/xfs.img"
		fi
		;;
	*) fail "unknown file system type '$fst'" ;;
	esac
done
[ "$ERRORS" = 0 ] || fail "$ERRORS checks failed"
echo PASS
