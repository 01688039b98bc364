#!/bin/bash
# SPDX-License-Identifier: MIT
# deb.sh - the Debian package builds from the tree and holds what it should.
#
# A scratch copy of the tree (tracked and untracked files, not ignored
# ones) is built with DEB_BUILD_OPTIONS=nocheck dpkg-buildpackage -us -uc -b;
# then: the package lists the programs, man pages, units, fsfreeze hook and
# docs; its units run the programs from /usr/sbin; the programs run from an
# extracted copy (their libraries resolve), and the quickstart's one-machine
# steps work with them (mount, rotate, ship, apply, trim, verify, in a
# scratch folder; the shipper's status and locks too), and so do the blocks
# of docs/quickstart.md as written (quickstart.sh); lintian (if installed) reports no
# error and no warning; and the build left nothing in the tree that
# .gitignore does not cover. Nothing is installed on this machine.
# Skipped (77) without dpkg-buildpackage, debhelper or the build dependencies.
# About 1-2 minutes (3 with lintian) on 2 cores.
set -eu
MFS_NO_FUSE=1 # the quickstart part is left out without FUSE
. "$(dirname "$0")/lib.sh"

command -v dpkg-buildpackage >/dev/null || skip "no dpkg-buildpackage (dpkg-dev)"
command -v dh >/dev/null || skip "no debhelper"
command -v git >/dev/null || skip "no git"
git -C "$MFS_SRC" rev-parse --git-dir >/dev/null 2>&1 || skip "'$MFS_SRC' is not a git checkout"
(cd "$MFS_SRC" && dpkg-checkbuilddeps) >/dev/null 2>&1 || skip "build dependencies missing: $(cd "$MFS_SRC" && dpkg-checkbuilddeps 2>&1 | head -n 1)"

# the quickstart's mirrorfs goes to the background on its own
EXTRA_CLEANUP='mountpoint -q "$T/q/mnt" 2>/dev/null && fusermount3 -u -z "$T/q/mnt"'
S=$T/mirrorfs

step "scratch copy of the tree"
mkdir "$S"
(cd "$MFS_SRC" && git ls-files -z -c -o --exclude-standard | while IFS= read -r -d '' f; do
	[ -e "$f" ] || [ -L "$f" ] && printf '%s\0' "$f"
done) | tar -C "$MFS_SRC" --null -T - -cf - | tar -C "$S" -xf -
# files only: git check-ignore decides on a file's path (its folders included)
(cd "$S" && find . -path ./.git -prune -o ! -type d -print | sort) >"$T/before"

step "dpkg-buildpackage -b (nocheck)"
if ! (cd "$S" && DEB_BUILD_OPTIONS="nocheck parallel=$(nproc)" \
	dpkg-buildpackage -us -uc -b) >"$T/build.log" 2>&1; then
	tail -n 40 "$T/build.log" >&2
	fail "dpkg-buildpackage failed"
fi
version=$(cd "$S" && dpkg-parsechangelog -S Version)
arch=$(dpkg --print-architecture)
deb=$T/mirrorfs_${version}_$arch.deb
[ -f "$deb" ] || fail "no $deb"
echo "built $(basename "$deb")"

step "contents"
dpkg-deb -c "$deb" >"$T/listing"
awk '{ print $6 }' "$T/listing" | sed 's|^\./|/|' >"$T/contents"
for f in /usr/sbin/mirrorfs /usr/sbin/mirrord /usr/sbin/mirrorctl /usr/sbin/mirrorfs-ship \
	/usr/share/man/man8/mirrorfs.8.gz /usr/share/man/man8/mirrord.8.gz \
	/usr/share/man/man8/mirrorctl.8.gz /usr/share/man/man8/mirrorfs-ship.8.gz \
	/lib/systemd/system/mirrord.service /lib/systemd/system/mirrorfs-ship@.service \
	/etc/qemu/fsfreeze-hook.d/mirrorfs \
	/usr/share/doc/mirrorfs/copyright /usr/share/doc/mirrorfs/changelog.gz \
	/usr/share/doc/mirrorfs/README.md /usr/share/doc/mirrorfs/CHANGELOG.md \
	/usr/share/doc/mirrorfs/quickstart.md.gz /usr/share/doc/mirrorfs/runbook.md.gz \
	/usr/share/doc/mirrorfs/overview.md.gz /usr/share/doc/mirrorfs/journal-format.md.gz \
	/usr/share/doc/mirrorfs/examples/fstab.example /usr/share/doc/mirrorfs/examples/mnt-db.mount \
	/usr/share/doc/mirrorfs/examples/ship-mnt-db.conf; do
	grep -qxF "$f" "$T/contents" || { cat "$T/contents" >&2; fail "'$f' is not in the package"; }
done
! grep -n '^/usr/local\|^/build\|/tests/' "$T/contents" || fail "stray files in the package"
grep -q '^-rwxr-xr-x .* \./etc/qemu/fsfreeze-hook.d/mirrorfs$' "$T/listing" ||
	fail "the fsfreeze hook is not executable"
echo "$(wc -l <"$T/contents") entries, the expected ones present"

step "maintainer scripts: the units are neither enabled nor started"
# dh_installsystemd --no-enable --no-start: nothing is started, and a unit is
# enabled again on upgrade only if the admin had enabled it (was-enabled)
dpkg-deb -e "$deb" "$T/control"
! grep -n 'deb-systemd-invoke\|systemctl.* \(start\|restart\|enable\)' "$T"/control/p* ||
	fail "a maintainer script starts or enables a unit"
awk '/deb-systemd-helper enable/ && prev !~ /was-enabled/ { bad = 1; print FILENAME ": " $0 }
     !/^[ \t]*#/ && NF { prev = $0 }
     END { exit bad }' "$T"/control/p* >&2 ||
	fail "a maintainer script enables a unit the admin had not enabled"
grep -q '^License: MIT' "$S/debian/copyright" || fail "no license in debian/copyright"

step "the extracted programs run"
dpkg-deb -x "$deb" "$T/root"
grep -q '^ExecStart=/usr/sbin/mirrord ' "$T/root/lib/systemd/system/mirrord.service" ||
	fail "mirrord.service does not run /usr/sbin/mirrord"
grep -q '^ExecStart=/usr/sbin/mirrorfs-ship ' "$T/root/lib/systemd/system/mirrorfs-ship@.service" ||
	fail "mirrorfs-ship@.service does not run /usr/sbin/mirrorfs-ship"
for p in mirrord mirrorctl mirrorfs; do
	"$T/root/usr/sbin/$p" --version >"$T/v" 2>&1 || { cat "$T/v" >&2; fail "$p --version"; }
	grep -qF "$version" "$T/v" || fail "$p --version does not say $version: $(cat "$T/v")"
done
"$T/root/usr/sbin/mirrorfs-ship" --help >/dev/null || fail "mirrorfs-ship --help"
"$T/root/etc/qemu/fsfreeze-hook.d/mirrorfs" 2>/dev/null && fail "the hook ran without an argument"
echo "mirrord, mirrorctl, mirrorfs --version: $version"

step "the quickstart, on one machine, with the packaged programs"
if [ -c /dev/fuse ] && command -v fusermount3 >/dev/null && [ "$(id -u)" = 0 ]; then
	Q=$T/q
	mkdir -p "$Q/db" "$Q/mnt" "$Q/mirror/incoming" "$Q/mirror/data" "$Q/mirror/state" "$Q/locks"
	# the shipper's status and lock files in the scratch folder, not in /run
	export MFS_SHIP_LOCK_DIR=$Q/locks
	# a script of its own: set -e holds there (not in a subshell left of ||)
	cat >"$T/quickstart.sh" <<'QS'
set -eux
ship() {
	mirrorfs-ship --once --trim --status "$Q/ship.json" \
		--state-of "$Q/mirror/incoming=$Q/mirror/state" "$Q/mnt" "$Q/mirror/incoming"
}
mirrorfs -o rotate_interval=60 "$Q/db" "$Q/mnt" # goes to the background once mounted
mkdir "$Q/mnt/pgdata"
echo "a row" >"$Q/mnt/pgdata/table"
mirrorctl rotate "$Q/mnt"
ship || true # nothing applied yet: ships, trims nothing
mirrord --once --incoming "$Q/mirror/incoming" --data "$Q/mirror/data" --state "$Q/mirror/state"
ship # now acknowledged: trimmed
mirrorctl status "$Q/mnt"
mirrorctl status "$Q/mirror/state" | grep '^applied_lsn: [1-9]'
[ -z "$(ls "$Q/mnt/.mirrorfs/journal/")" ]
mirrorctl verify "$Q/db" "$Q/mirror/data"
QS
	# the packaged programs first in PATH: mirrorfs-ship runs the packaged mirrorctl
	Q=$Q PATH=$T/root/usr/sbin:$PATH bash "$T/quickstart.sh" \
		>"$T/quickstart.log" 2>&1 || { cat "$T/quickstart.log" >&2; fail "the quickstart with the packaged programs"; }
	fusermount3 -u "$Q/mnt"
	echo "mounted, wrote, rotated, shipped, applied, trimmed, verified: $(tail -n 1 "$T/quickstart.log")"
	step "docs/quickstart.md as written, with the packaged programs (tests/integration/quickstart.sh)"
	rc=0
	MFS_QUICKSTART_BIN=$T/root/usr/sbin bash "$MFS_SRC/tests/integration/quickstart.sh" \
		>"$T/quickstart-doc.log" 2>&1 || rc=$?
	case $rc in
	0) grep -E '^(programs|ran|the mirror equals)' "$T/quickstart-doc.log" ;;
	77) echo "NOTE: $(grep SKIP "$T/quickstart-doc.log")" ;;
	*) tail -n 30 "$T/quickstart-doc.log" >&2; fail "docs/quickstart.md with the packaged programs" ;;
	esac
else
	echo "NOTE: no /dev/fuse, fusermount3 or root: quickstart not run"
fi

step "the tree is clean after the build"
(cd "$S" && find . -path ./.git -prune -o ! -type d -print | sort) >"$T/after"
comm -13 "$T/before" "$T/after" | sed 's|^\./||' >"$T/new"
(cd "$MFS_SRC" && git check-ignore --no-index --stdin) <"$T/new" >"$T/ignored" || true
left=$(grep -vxF -f "$T/ignored" "$T/new" || true)
[ -z "$left" ] || { printf '%s\n' "$left" >&2; fail "the build left files that .gitignore does not cover"; }
echo "$(wc -l <"$T/new") new files, all ignored"

if command -v lintian >/dev/null; then
	step "lintian"
	lintian --pedantic "$T"/mirrorfs_"${version}"_"$arch".changes >"$T/lintian" 2>&1 || true
	grep -v '^running with root privileges' "$T/lintian" || true
	! grep -q '^[EW]:' "$T/lintian" || fail "lintian reports errors or warnings"
else
	echo "NOTE: no lintian: not run"
fi
echo "PASS"
