#!/bin/bash
# SPDX-License-Identifier: MIT
# units.sh - the systemd units as installed: `systemd-analyze verify` finds
# nothing to say about mirrord.service, mirrorfs-ship@.service (as instance
# mnt-db) and the example mnt-db.mount; `systemd-analyze security` rates
# mirrord and the shipper at 4.0 or less ("OK"); and mirrord, confined to
# the unit's CapabilityBoundingSet= with no new privileges (setpriv), still
# replays what needs root: owners, set-id modes, times and links of other
# users' files, a device node, trusted.* and user.* xattrs; and the shipper,
# with no capabilities (its unit's set), ships from a mirrorfs mount and
# trims it.
#
# No service is started: verify and security read the unit files
# (security --offline=yes). The units' @sbindir@ is a folder of links to the
# built programs, so that verify finds every ExecStart= executable.
# Skipped (77) without systemd-analyze; the replay part is left out (with a
# note) without setpriv or getfattr, or when not root.
set -eu
MFS_NO_FUSE=1 # the shipper part is left out without FUSE
. "$(dirname "$0")/lib.sh"
MAX_EXPOSURE=4.0

command -v systemd-analyze >/dev/null || skip "no systemd-analyze"

# the shipper part's mirrorfs goes to the background on its own
EXTRA_CLEANUP='mountpoint -q "$T/ship/mnt" 2>/dev/null && fusermount3 -u -z "$T/ship/mnt"'

mkdir "$T/sbin" "$T/units"
ln -s "$MFS_BUILD/daemon/mirrord" "$T/sbin/mirrord"
ln -s "$MFS_SRC/tools/mirrorfs-ship" "$T/sbin/mirrorfs-ship"
for u in mirrord.service mirrorfs-ship@.service; do
	sed "s|@sbindir@|$T/sbin|g" "$MFS_SRC/docs/systemd/$u.in" >"$T/units/$u"
	! grep -n '@[a-z]*@' "$T/units/$u" || fail "$u: a @variable@ left unsubstituted"
done
cp "$T/units/mirrorfs-ship@.service" "$T/units/mirrorfs-ship@mnt-db.service"
cp "$MFS_SRC/docs/systemd/mnt-db.mount" "$T/units/"

# meson's configured units (what meson install and the package install) carry
# the configured sbindir and nothing else left to substitute
for u in mirrord.service mirrorfs-ship@.service; do
	f=$MFS_BUILD/docs/systemd/$u
	[ -f "$f" ] || fail "meson did not configure '$f'"
	! grep -n '@[a-z]*@' "$f" || fail "$f: a @variable@ left unsubstituted"
	grep -q '^ExecStart=/[^ ]*/sbin/' "$f" || fail "$f: ExecStart= not in an sbin folder"
done

# readiness and watchdog (sd_notify; tests/integration/notify.sh runs them)
grep -qx 'Type=notify' "$T/units/mirrord.service" || fail "mirrord.service is not Type=notify"
grep -q '^WatchdogSec=[1-9]' "$T/units/mirrord.service" || fail "mirrord.service has no WatchdogSec="

cd "$T/units"

step "systemd-analyze verify"
for u in mirrord.service mirrorfs-ship@mnt-db.service mnt-db.mount; do
	# verify exits 0 on some warnings: any output at all is a failure
	if ! out=$(systemd-analyze verify --man=no "$u" 2>&1) || [ -n "$out" ]; then
		printf '%s\n' "$out" >&2
		fail "systemd-analyze verify $u"
	fi
	echo "$u: verified"
done

# a negative control: verify does complain about a missing ExecStart=
sed 's|^ExecStart=[^ ]*|ExecStart=/nonexistent/mirrord|' mirrord.service >bad.service
out=$(systemd-analyze verify --man=no bad.service 2>&1) || true
[ -n "$out" ] || fail "systemd-analyze verify accepted a missing executable"
rm bad.service

step "systemd-analyze security (at most $MAX_EXPOSURE)"
for u in mirrord.service mirrorfs-ship@mnt-db.service; do
	out=$(systemd-analyze security --offline=yes --no-pager "$u" 2>&1) ||
		{ printf '%s\n' "$out" >&2; fail "systemd-analyze security $u"; }
	level=$(printf '%s\n' "$out" | sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p')
	[ -n "$level" ] || { printf '%s\n' "$out" >&2; fail "$u: no exposure level in the output"; }
	echo "$u: exposure $level"
	awk -v l="$level" -v m="$MAX_EXPOSURE" 'BEGIN { exit !(l <= m) }' ||
		{ printf '%s\n' "$out" | grep '✗' >&2; fail "$u: exposure $level > $MAX_EXPOSURE"; }
done

# ---------------------------------------------------------------- capabilities
# (verify and security passed: without what the rest needs, say so and pass)
for c in setpriv getfattr; do
	command -v $c >/dev/null || { echo "NOTE: no $c: capabilities not checked"; exit 0; }
done
[ "$(id -u)" = 0 ] || { echo "NOTE: not root: capabilities not checked"; exit 0; }

# "CAP_CHOWN CAP_FOWNER" -> "-all,+chown,+fowner" (setpriv's syntax)
caps=$(sed -n 's/^CapabilityBoundingSet=//p' mirrord.service | tail -n 1)
[ -n "$caps" ] || fail "mirrord.service has no CapabilityBoundingSet="
bset=-all
for c in $caps; do
	c=${c#CAP_}
	bset="$bset,+${c,,}"
done

# Files owned by another user, a set-id mode, a device node, xattrs in the
# trusted and user name spaces, times, a hard link (protected_hardlinks:
# CAP_FOWNER) and writes into a mode-0600 file of another user.
workload() {
	cat <<'W'
mkdir d 0755
chown d 4321 4321
mkdir d/priv 0700
chown d/priv 4321 4321
mknod d/priv/f 0100600
chown d/priv/f 4321 4321
write d/priv/f 0 @8192:1
chmod d/priv/f 06750
link d/priv/f d/hard
utimens d/priv/f 1000000000 0 1000000000 0
mknod d/null 020644 1:3
chown d/null 4321 4321
setxattr d/priv/f trusted.mirrorfs-test primary
setxattr d/priv/f user.mirrorfs-test primary
W
}
U=0badc0de-2121-2222-3333-444455556666

# replay_as SET NAME: mirrord --once as root, with bounding set SET and
# no_new_privs, into $T/NAME/data; returns mirrord's status
replay_as() {
	local set=$1 name=$2
	mkdir -p "$T/$name/in" "$T/$name/data"
	workload | "$MKSEG" "$T/$name/in" "$U" 1 >/dev/null || fail "mkseg"
	setpriv --bounding-set="$set" --no-new-privs -- \
		"$T/sbin/mirrord" --once --incoming "$T/$name/in" --data "$T/$name/data" \
		>"$T/$name.log" 2>&1
}

step "mirrord with the unit's capabilities ($caps)"
replay_as "$bset" ok || { cat "$T/ok.log" >&2; fail "mirrord --once failed with the unit's capabilities"; }
D=$T/ok/data/d
[ "$(stat -c '%u:%g %a' "$D/priv/f")" = "4321:4321 6750" ] ||
	fail "owner or set-id mode not replayed: $(stat -c '%u:%g %a' "$D/priv/f")"
[ "$(stat -c '%h %Y' "$D/priv/f")" = "2 1000000000" ] ||
	fail "link or times not replayed: $(stat -c '%h %Y' "$D/priv/f")"
[ "$(stat -c '%F %t:%T %u' "$D/null")" = "character special file 1:3 4321" ] ||
	fail "device node not replayed: $(stat -c '%F %t:%T %u' "$D/null")"
[ "$(getfattr --only-values -n trusted.mirrorfs-test "$D/priv/f" 2>/dev/null)" = primary ] ||
	fail "trusted.* xattr not replayed"
[ "$(getfattr --only-values -n user.mirrorfs-test "$D/priv/f" 2>/dev/null)" = primary ] ||
	fail "user.* xattr not replayed"
echo "owners, set-id mode, link, times, device node, trusted.* and user.* xattrs replayed"

# the control: without CAP_SYS_ADMIN the trusted.* xattr cannot be replayed,
# so the check above does test the unit's set
step "control: mirrord without CAP_SYS_ADMIN"
if replay_as "${bset/,+sys_admin/}" ctl; then
	[ "$(getfattr --only-values -n trusted.mirrorfs-test "$T/ctl/data/d/priv/f" 2>/dev/null)" != primary ] ||
		fail "the control replayed trusted.* without CAP_SYS_ADMIN: the test checks nothing"
fi
echo "refused, as expected: $(tail -n 1 "$T/ctl.log")"

# The shipper's unit has no capabilities at all: it still reads a mirrorfs
# mount's closed segments, ships them and, once mirrord (with its unit's set)
# has applied them, trims them through the mount.
step "mirrorfs-ship with the unit's capabilities (none), mirrord with its own"
if [ -c /dev/fuse ] && command -v fusermount3 >/dev/null && [ -x "$FS" ]; then
	grep -qx 'CapabilityBoundingSet=' mirrorfs-ship@mnt-db.service ||
		fail "mirrorfs-ship@.service: CapabilityBoundingSet= is no longer empty: adapt this test"
	S=$T/ship
	mkdir -p "$S/db" "$S/mnt" "$S/in" "$S/data" "$S/state" "$S/locks"
	"$FS" -o rotate_interval=60 "$S/db" "$S/mnt" 2>"$S/fs.log" || { cat "$S/fs.log" >&2; fail "mount"; }
	mkdir "$S/mnt/d" && echo row >"$S/mnt/d/t" && "$CTL" rotate "$S/mnt" >/dev/null
	ship() {
		MFS_SHIP_LOCK_DIR=$S/locks setpriv --bounding-set=-all --no-new-privs -- \
			"$T/sbin/mirrorfs-ship" --once --trim --mirrorctl "$CTL" --status "$S/ship.json" \
			--state-of "$S/in=$S/state" "$S/mnt" "$S/in" >>"$S/ship.log" 2>&1
	}
	ship || true # shipped, not acknowledged yet: nothing trimmed
	[ -n "$(ls "$S/in")" ] || { cat "$S/ship.log" >&2; fail "nothing shipped without capabilities"; }
	setpriv --bounding-set="$bset" --no-new-privs -- "$T/sbin/mirrord" --once --incoming "$S/in" \
		--data "$S/data" --state "$S/state" >"$S/mirrord.log" 2>&1 ||
		{ cat "$S/mirrord.log" >&2; fail "mirrord --once"; }
	ship || { cat "$S/ship.log" >&2; fail "mirrorfs-ship --once --trim without capabilities"; }
	[ -z "$(ls "$S/mnt/.mirrorfs/journal/")" ] || fail "segments not trimmed without capabilities"
	verify_equal "$S/db" "$S/data" || fail "the mirror differs from the primary"
	fusermount3 -u "$S/mnt"
	echo "shipped and trimmed without capabilities; the mirror is identical"
else
	echo "NOTE: no /dev/fuse, fusermount3 or mirrorfs: the shipper's capabilities not checked"
fi
echo "PASS"
