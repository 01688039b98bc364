#!/bin/bash
# SPDX-License-Identifier: MIT
# fs-fstab.sh - `mount -t fuse.mirrorfs` and /etc/fstab lines work with
# mirrorfs where `meson install` puts it: mount(8) runs /sbin/mount.fuse
# (mount.fuse3), which runs `mirrorfs DATADIR MNT -o OPTS` through /bin/sh.
#
# (a) mount -t fuse.mirrorfs DATA MNT -o rotate_interval=1,allow_other: the
#     caller's PATH is not used (mount(8) drops it; a decoy mirrorfs in PATH
#     is not run), the installed binary is, in the background; a write
#     reaches DATA, `mirrorctl rotate` closes a segment, umount stops it.
# (b) fstab lines in a private fstab (mount --fstab FILE; never /etc/fstab):
#     `mount --fstab FILE MNT` for a noauto,nofail line (a second mount is
#     refused, not stacked); `mount -a --fstab` for a line with
#     defaults,_netdev,nofail,x-systemd.* (not passed to mirrorfs),
#     fsname=DATADIR (a second mount -a is a no-op) and mirrorfs options;
#     generic options (ro, noexec, nosuid, nodev, noatime, sync, dirsync)
#     reach the kernel mount.
# (c) a missing DATADIR, an unknown option (relatime and co. too), a bad
#     value, and a mirrorfs that is only in the caller's PATH (exit 127)
#     fail with a non-zero exit and a clear message, nothing mounted.
#
# How the build's mirrorfs is made "installed": the script re-runs itself
# in a private mount namespace (unshare -m) and bind-mounts a folder that
# holds a copy of the build's mirrorfs over the folder meson installs it to
# (read from meson-info/intro-installed.json: /usr/local/sbin by default).
# mount(8), mount.fuse3 and /bin/sh then find it exactly as they would find
# an installed one, while the real /usr/local/sbin is neither written nor
# changed for anyone else, and nothing is left behind if the test dies
# (copying into /usr/local/sbin would be racy and leave files on a crash;
# running mount.fuse3 by hand with a PATH would not test mount(8), which
# drops PATH).
set -eu

if [ -z "${MFS_FSTAB_NS:-}" ]; then
	[ "$(id -u)" = 0 ] || { echo "SKIP: mount(8) of a FUSE type needs root"; exit 77; }
	command -v unshare >/dev/null && unshare --mount --propagation private true 2>/dev/null ||
		{ echo "SKIP: cannot make a private mount namespace (unshare -m)"; exit 77; }
	MFS_FSTAB_NS=1 exec unshare --mount --propagation private -- bash "$0" "$@"
fi

. "$(dirname "$0")/lib.sh"
command -v python3 >/dev/null || skip "no python3"
[ -x /sbin/mount.fuse ] || [ -x /sbin/mount.fuse3 ] || skip "no /sbin/mount.fuse (package fuse3)"

# Where `meson install` puts mirrorfs, and the PATH /bin/sh searches when
# it has none (mount(8) runs the helper without PATH).
INST=$(python3 - "$MFS_BUILD" "$FS" <<'PY'
import json, os, sys
build, fs = sys.argv[1], os.path.realpath(sys.argv[2])
for src, dst in json.load(open(os.path.join(build, "meson-info", "intro-installed.json"))).items():
    if os.path.realpath(src) == fs:
        print(dst)
PY
)
[ -n "$INST" ] || fail "meson does not install $FS"
SBIN=$(dirname "$INST")
SHPATH=$(env -u PATH /bin/sh -c 'echo "$PATH"')
echo "mirrorfs installs to $INST; /bin/sh without PATH searches $SHPATH"
case ":$SHPATH:" in
*":$SBIN:"*) ;;
*) skip "$SBIN (from the build's prefix) is not in /bin/sh's default PATH: mount -t fuse.mirrorfs cannot find an installed mirrorfs there" ;;
esac
[ -d "$SBIN" ] || skip "no $SBIN to mount over"
mkdir -p "$T/sbin" "$T/empty" "$T/decoy"
cp "$FS" "$T/sbin/mirrorfs"
mount --bind "$T/sbin" "$SBIN" # private namespace: seen by this test only
cmp -s "$FS" "$INST" || fail "bind mount over $SBIN did not work"
# mirrorfs in an earlier folder of the search path would shadow ours
for d in ${SHPATH//:/ }; do
	[ "$d" = "$SBIN" ] && break
	[ -e "$d/mirrorfs" ] && skip "$d/mirrorfs exists and comes before $SBIN in the search path"
done

# a decoy in the caller's PATH: mount must not run it
cat >"$T/decoy/mirrorfs" <<EOF
#!/bin/sh
touch "$T/decoy-ran"
exit 1
EOF
chmod +x "$T/decoy/mirrorfs"

MNTS=()
DPIDS=()
fstab_cleanup() {
	local m p
	for m in "${MNTS[@]}"; do
		mountpoint -q "$m" 2>/dev/null && { umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || fusermount3 -u -z "$m" 2>/dev/null; }
	done
	for p in "${DPIDS[@]}"; do kill "$p" 2>/dev/null; done
}
EXTRA_CLEANUP=fstab_cleanup

# daemon_pid MNT: pid of the mirrorfs serving MNT (run from $SBIN)
daemon_pid() {
	local p
	for p in /proc/[0-9]*; do
		[ "$(readlink "$p/exe" 2>/dev/null)" = "$INST" ] || continue
		tr '\0' '\n' <"$p/cmdline" 2>/dev/null | grep -qxF "$1" && { echo "${p#/proc/}"; return 0; }
	done
	return 1
}
# gone PID: exited (a zombie counts: the daemon is not our child)
gone() {
	local s
	s=$(awk '{ print $3 }' "/proc/$1/stat" 2>/dev/null) || return 0
	[ -z "$s" ] || [ "$s" = Z ]
}
# mounted_once MNT: exactly one fuse.mirrorfs mount on MNT
mounted_once() {
	mountpoint -q "$1" || return 1
	[ "$(awk -v m="$1" '$2 == m && $3 == "fuse.mirrorfs"' /proc/self/mounts | wc -l)" = 1 ]
}

# check_mount DATA MNT FILE OPT: the mount is live and is mirrorfs from
# $SBIN run in the background with OPT; FILE written through it reaches
# DATA; mirrorctl rotate closes a segment holding it; umount stops the
# daemon; DATA keeps FILE and the segment.
reached() { [ "$(cat "$1" 2>/dev/null)" = "$2" ]; }

check_mount() {
	local d=$1 m=$2 f=$3 opt=$4 pid seg
	mounted_once "$m" || fail "$m is not mounted (once) as fuse.mirrorfs"
	case ",$(findmnt -n -o OPTIONS "$m")," in
	*,allow_other,*) ;;
	*) fail "$m: allow_other not implied for root" ;;
	esac
	pid=$(daemon_pid "$m") || fail "no mirrorfs process from $INST serves $m"
	DPIDS+=("$pid")
	tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "$opt" ||
		fail "mirrorfs was not given $opt: $(tr '\0' ' ' <"/proc/$pid/cmdline")"
	[ ! -e "$T/decoy-ran" ] || fail "mount ran the mirrorfs found in the caller's PATH"
	echo "$f via $m $$" >"$m/$f"
	# a write reaches the backing folder at the next group commit (at most
	# FS_PENDING_DELAY_MS later): the write-ahead rule
	wait_for reached "$d/$f" "$f via $m $$" || fail "$f did not reach $d"
	# rotate prints the segment it closed, nothing if the open one was
	# empty (the 1 s timer may just have closed it): write again then
	for i in 1 2 3 4 5; do
		seg=$("$CTL" rotate "$m") || fail "mirrorctl rotate $m failed"
		[ -n "$seg" ] && break
		echo "$i" >"$m/$f.$i"
	done
	[ -n "$seg" ] || fail "mirrorctl rotate $m never closed a segment"
	seg=$(basename "$seg")
	[ -f "$m/.mirrorfs/journal/$seg" ] || fail "segment '$seg' is not in $m/.mirrorfs/journal/: $(ls "$m/.mirrorfs/journal/")"
	umount "$m" || fail "umount $m failed"
	wait_for gone "$pid" || fail "mirrorfs (pid $pid) still runs after umount $m"
	! mountpoint -q "$m" || fail "$m still mounted after umount"
	[ "$(cat "$d/$f")" = "$f via $m $$" ] || fail "$f not in $d after umount"
	[ -f "$d/.mirrorfs/journal/$seg" ] || fail "segment '$seg' not in $d/.mirrorfs/journal"
	"$CTL" dump "$d"/.mirrorfs/journal/*.mfsj >"$T/dump" 2>&1 || { cat "$T/dump" >&2; fail "mirrorctl dump of $d's segments failed"; }
	grep -q "write  *'$f' " "$T/dump" || { cat "$T/dump" >&2; fail "no segment of $d records the write of $f"; }
}

D=$T/data
M=$T/mnt
D2=$T/data2
M2=$T/mnt2
mkdir -p "$D" "$M" "$D2" "$M2"
MNTS=("$M" "$M2")

step "(a) mount -t fuse.mirrorfs finds $INST, not the caller's PATH"
PATH="$T/decoy:$PATH" mount -t fuse.mirrorfs "$D" "$M" -o rotate_interval=1,allow_other \
	>"$T/mount.log" 2>&1 || { cat "$T/mount.log" >&2; fail "mount -t fuse.mirrorfs failed"; }
[ "$(awk -v m="$M" '$2 == m { print $1 }' /proc/self/mounts)" = mirrorfs ] || fail "the source of $M is not 'mirrorfs'"
check_mount "$D" "$M" a.txt rotate_interval=1

step "(b) fstab lines (private fstab, mount --fstab)"
FSTAB=$T/fstab
cat >"$FSTAB" <<EOF
# test fstab for fs-fstab.sh
$D  $M  fuse.mirrorfs  rotate_interval=1,noauto,nofail  0  0
$D2  $M2  fuse.mirrorfs  defaults,_netdev,nofail,x-systemd.requires-mounts-for=$T,fsname=$D2,rotate_size=64M,rotate_interval=1,allow_other  0  0
EOF
findmnt --verify --tab-file "$FSTAB" >"$T/verify.log" 2>&1 || { cat "$T/verify.log" >&2; fail "findmnt --verify found errors"; }
grep -q "^0 parse errors, 0 errors" "$T/verify.log" || { cat "$T/verify.log" >&2; fail "findmnt --verify: errors"; }

mount --fstab "$FSTAB" "$M" >"$T/mount.log" 2>&1 || { cat "$T/mount.log" >&2; fail "mount --fstab FSTAB $M failed"; }
mounted_once "$M" || fail "mount --fstab did not mount $M"
# a second mount of the same line is refused (the journal is locked), not stacked
if mount --fstab "$FSTAB" "$M" >"$T/mount2.log" 2>&1; then fail "a second mount of $M succeeded"; fi
grep -q "already mounted" "$T/mount2.log" || { cat "$T/mount2.log" >&2; fail "second mount: no 'already mounted' message"; }
check_mount "$D" "$M" b.txt rotate_interval=1

# mount -a: mounts the auto line only (the noauto one stays unmounted);
# with fsname=DATADIR mount(8) sees the line as mounted: a second mount -a
# is a no-op (without it the source is "mirrorfs" and mount -a tries again)
mount -a --fstab "$FSTAB" >"$T/mount.log" 2>&1 || { cat "$T/mount.log" >&2; fail "mount -a --fstab failed"; }
! mountpoint -q "$M" || fail "mount -a mounted the noauto line"
awk -v m="$M2" '$2 == m { print $1 }' /proc/self/mounts | grep -qxF "$D2" || fail "fsname=$D2 is not the source of $M2"
mount -a --fstab "$FSTAB" >"$T/mount2.log" 2>&1 || { cat "$T/mount2.log" >&2; fail "a second mount -a --fstab failed"; }
mounted_once "$M2" || fail "a second mount -a mounted $M2 again"
pid=$(daemon_pid "$M2") || fail "no mirrorfs serves $M2"
for o in rotate_size=64M rotate_interval=1; do
	tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "$o" || fail "$o not passed to mirrorfs"
done
for o in defaults _netdev nofail x-systemd; do
	tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "$o" && fail "$o was passed to mirrorfs: $(tr '\0' ' ' <"/proc/$pid/cmdline")"
done
check_mount "$D2" "$M2" c.txt rotate_size=64M

# generic mount options reach the kernel mount (mirrorfs hands them to libfuse)
for o in ro noexec,nosuid,nodev noatime sync dirsync; do
	mount -t fuse.mirrorfs "$D" "$M" -o "$o" >"$T/mount.log" 2>&1 || { cat "$T/mount.log" >&2; fail "mount -o $o failed"; }
	pid=$(daemon_pid "$M") || fail "no mirrorfs serves $M"
	DPIDS+=("$pid")
	have=$(findmnt -n -o OPTIONS "$M")
	for x in ${o//,/ }; do
		case ",$have," in *",$x,"*) ;; *) fail "-o $o: '$x' not in the mount's options '$have'" ;; esac
	done
	umount "$M" || fail "umount $M failed"
	wait_for gone "$pid" || fail "mirrorfs still runs after umount $M"
done

step "(c) failures: non-zero exit, a clear message, nothing mounted"
# must_fail WHAT PATTERN mount-args...
must_fail() {
	local what=$1 pat=$2 rc=0
	shift 2
	mount "$@" >"$T/fail.log" 2>&1 || rc=$?
	MF_RC=$rc
	[ "$rc" != 0 ] || fail "$what: mount succeeded"
	grep -q -- "$pat" "$T/fail.log" || { cat "$T/fail.log" >&2; fail "$what: no message matching '$pat'"; }
	! mountpoint -q "$M" || fail "$what: $M is mounted"
	echo "$what: exit $rc: $(head -n 1 "$T/fail.log")"
}
must_fail "missing DATADIR" "data folder '$T/missing' cannot be used: No such file" \
	-t fuse.mirrorfs "$T/missing" "$M" -o rotate_interval=1
must_fail "unknown option" "unknown option(s): .*no_such_option" \
	-t fuse.mirrorfs "$D" "$M" -o rotate_interval=1,no_such_option
for o in relatime strictatime lazytime nodiratime; do # refused by libfuse 3.14
	must_fail "unknown option ($o)" "unknown option(s): .*$o" \
		-t fuse.mirrorfs "$D" "$M" -o "rotate_interval=1,$o"
done
must_fail "bad rotate_size" "bad rotate_size 'lots'" \
	-t fuse.mirrorfs "$D" "$M" -o rotate_size=lots
must_fail "bad rotate_interval" "invalid parameter in option .rotate_interval=soon" \
	-t fuse.mirrorfs "$D" "$M" -o rotate_interval=soon
echo "$T/missing  $M  fuse.mirrorfs  rotate_interval=1  0  0" >"$T/fstab.bad"
must_fail "fstab line, missing DATADIR" "data folder '$T/missing' cannot be used" \
	--fstab "$T/fstab.bad" "$M"
# not installed: a mirrorfs only in the caller's PATH is not found
mount --bind "$T/empty" "$SBIN"
PATH="$(dirname "$FS"):$PATH" must_fail "mirrorfs only in PATH" "mirrorfs: not found" \
	-t fuse.mirrorfs "$D" "$M" -o rotate_interval=1
[ "$MF_RC" = 127 ] || fail "mirrorfs not found: mount exited $MF_RC, not 127"
umount "$SBIN"

echo "PASS"
