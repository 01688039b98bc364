#!/bin/bash
# SPDX-License-Identifier: MIT
# units-boot.sh - the systemd units run under a real systemd as PID 1.
#
# units.sh checks the units with systemd-analyze; this test runs them. The
# machine need not run systemd: the test boots one with systemd-nspawn
# (Debian package systemd-container) in a throwaway container that shares
# nothing writable with the host but the folders below:
#   -D / --volatile=yes   the root is a tmpfs, the host's /usr is mounted
#                         read-only: the host's /etc, /var and their enabled
#                         units are not seen, so none of the host's services
#                         is started, stopped or reconfigured
#   --private-network     its own network namespace (loopback only)
#   --register=no --keep-unit   no machined, no D-Bus on the host
# and binds: the build's programs over /usr/local/sbin (where the units
# built here run them from, read-only), the built units into
# /etc/systemd/system (enabled), /srv (data, mirror folders), /mnt, the
# node-exporter textfile folder, /etc/mirrorfs, and /dev/fuse.
#
# Inside: mnt-db.mount (docs/systemd, fuse.mirrorfs through mount.fuse3)
# mounts /srv/db on /mnt/db, mirrord.service (Type=notify: active only
# after READY=1; STATUS= lines; WATCHDOG=1) applies into /srv/mirror/data,
# mirrorfs-ship@mnt-db.service ships to /srv/mirror/incoming (a local
# destination: a drop-in adds it to ReadWritePaths=, as the unit's comment
# says; systemd-networkd-wait-online is masked: no network to wait for).
# Checked: every unit is active; mirrord's status text and watchdog
# timestamp; a file written on the mount inside reaches the mirror's data
# folder (compared from the host), the metrics textfiles of mirrord and of
# the shipper (--metrics in its SHIP_OPTS) through their sandboxes; a
# `systemctl stop` of each ends inactive, not failed. Then the container is
# powered off (killed by PID if it does not stop), and what nspawn leaves in
# /run/systemd/nspawn is removed if this test created it.
# Skipped (77) without root, systemd-nspawn, /dev/fuse or the built units.
set -eu
. "$(dirname "$0")/lib.sh"

S=${MFS_SRC:-$(cd "$(dirname "$0")/../.." && pwd)}
[ "$(id -u)" = 0 ] || skip "needs root (systemd-nspawn)"
command -v systemd-nspawn >/dev/null || skip "no systemd-nspawn (Debian package systemd-container)"
command -v nsenter >/dev/null || skip "no nsenter"
[ -x /lib/systemd/systemd ] || skip "no /lib/systemd/systemd"
U=$MFS_BUILD/docs/systemd
[ -f "$U/mirrord.service" ] && [ -f "$U/mirrorfs-ship@.service" ] || skip "units not built"
SBIN=$(sed -n 's|^ExecStart=\(.*\)/mirrord .*|\1|p' "$U/mirrord.service")
[ -n "$SBIN" ] || fail "no ExecStart= in '$U/mirrord.service'"

machine=mfs-units-$$
# what nspawn creates under /run/systemd (it cannot remove it: /run is not a tmpfs here)
run_made=""
for d in /run/systemd /run/systemd/nspawn /run/systemd/nspawn/propagate /run/systemd/nspawn-root; do
	[ -e "$d" ] || run_made="$d $run_made"
done
NPID="" P1=""
boot_cleanup() {
	local d
	if [ -n "$NPID" ] && kill -0 "$NPID" 2>/dev/null; then
		[ -n "$P1" ] && nsenter -t "$P1" -a systemctl poweroff >/dev/null 2>&1
		for _ in $(seq 300); do kill -0 "$NPID" 2>/dev/null || break; sleep 0.1; done
		kill -9 "$NPID" 2>/dev/null
		wait "$NPID" 2>/dev/null
	fi
	rmdir "/run/systemd/nspawn/propagate/$machine" 2>/dev/null
	for d in $run_made; do rmdir "$d" 2>/dev/null; done
}
EXTRA_CLEANUP=boot_cleanup

# ---------------------------------------------------------------- the binds
B=$T/binds
mkdir -p "$B/sbin" "$B/units/multi-user.target.wants" "$B/etc-mirrorfs" "$B/prom" \
	"$B/srv/db" "$B/srv/mirror/incoming" "$B/srv/mirror/data" "$B/srv/mirror/state" "$B/mnt/db"
cp "$FS" "$CTL" "$MFS_BUILD/daemon/mirrord" "$S/tools/mirrorfs-ship" "$B/sbin/"
cp "$U/mirrord.service" "$U/mirrorfs-ship@.service" "$S/docs/systemd/mnt-db.mount" "$B/units/"
for u in mirrord.service mnt-db.mount; do
	ln -s "../$u" "$B/units/multi-user.target.wants/$u"
done
ln -s "../mirrorfs-ship@.service" "$B/units/multi-user.target.wants/mirrorfs-ship@mnt-db.service"
# the container has no network: network-online.target (the shipper's After=)
# would wait 2 min for systemd-networkd-wait-online to give up
ln -s /dev/null "$B/units/systemd-networkd-wait-online.service"
mkdir -p "$B/units/mirrorfs-ship@mnt-db.service.d"
printf '[Service]\nReadWritePaths=/srv/mirror/incoming\n' \
	>"$B/units/mirrorfs-ship@mnt-db.service.d/local-destination.conf"
cat >"$B/etc-mirrorfs/ship-mnt-db.conf" <<'EOF'
SHIP_OPTS=--trim --state-of /srv/mirror/incoming=/srv/mirror/state --metrics /var/lib/prometheus/node-exporter/ship.prom
SHIP_DESTS=/srv/mirror/incoming
EOF

step "boot a container with systemd as PID 1 (host's /usr read-only, root on tmpfs, no network)"
binds=(--bind-ro="$B/sbin:$SBIN" --bind="$B/units:/etc/systemd/system"
	--bind-ro="$B/etc-mirrorfs:/etc/mirrorfs" --bind="$B/srv:/srv" --bind="$B/mnt:/mnt"
	--bind="$B/prom:/var/lib/prometheus/node-exporter" --bind=/dev/fuse)
systemd-nspawn --register=no --keep-unit -D / --volatile=yes --private-network --boot \
	--machine="$machine" --console=pipe -q "${binds[@]}" >"$T/console.log" 2>&1 &
NPID=$!
pid1() { P1=$(pgrep -P "$NPID" -x systemd | head -n 1); [ -n "$P1" ]; }
wait_for pid1 || fail "no systemd in the container: $(tail -n 5 "$T/console.log")"
ctr() { nsenter -t "$P1" -a "$@"; }
[ "$(ctr cat /proc/1/comm)" = systemd ] || fail "PID 1 in the container is not systemd"
echo "container PID 1 = host PID $P1 ($(ctr systemctl --version | head -n 1))"

# active UNIT: systemctl is-active says active
active() { [ "$(ctr systemctl is-active "$1" 2>/dev/null)" = active ]; }
units="mnt-db.mount mirrord.service mirrorfs-ship@mnt-db.service"
for u in $units; do
	wait_for active "$u" || wait_for active "$u" ||
		{ ctr systemctl status --no-pager "$u" >&2 || true; fail "$u is not active"; }
done
ctr systemctl --no-pager list-units $units

step "mirrord.service: Type=notify readiness, STATUS=, watchdog"
show() { ctr systemctl show -P "$2" "$1"; }
[ "$(show mirrord.service Type)" = notify ] || fail "mirrord.service is not Type=notify"
status=$(show mirrord.service StatusText)
case $status in "applied LSN "*) ;; *) fail "mirrord's status text: '$status'" ;; esac
[ -n "$(show mirrord.service WatchdogTimestampMonotonic | tr -d 0)" ] ||
	fail "mirrord never fed the watchdog"
echo "status: $status; watchdog $(show mirrord.service WatchdogUSec), last fed $(show mirrord.service WatchdogTimestamp)"
[ "$(ctr findmnt -n -o FSTYPE /mnt/db)" = fuse.mirrorfs ] || fail "/mnt/db is not a mirrorfs mount inside"

step "a write on the mount inside reaches the mirror"
ctr sh -c 'seq 1 200000 >/mnt/db/numbers && mkdir -p /mnt/db/d && echo hello >/mnt/db/d/greeting'
ctr mirrorctl rotate /mnt/db >/dev/null || fail "mirrorctl rotate inside"
arrived() { cmp -s "$B/srv/db/numbers" "$B/srv/mirror/data/numbers" &&
	cmp -s "$B/srv/db/d/greeting" "$B/srv/mirror/data/d/greeting"; }
wait_for arrived || wait_for arrived ||
	{ ctr journalctl --no-pager -n 30 >&2 || true; fail "the write did not reach the mirror"; }
"$CTL" verify "$B/srv/db" "$B/srv/mirror/data" || fail "the mirror differs from the primary"
has_metrics() { grep -q '^mirrord_applied_lsn' "$B/prom/mirrord.prom" 2>/dev/null &&
	grep -q '^mirrorfs_ship_up{.*} 1$' "$B/prom/ship.prom" 2>/dev/null; }
wait_for has_metrics || fail "no metrics of mirrord and the shipper in the textfile folder: $(ls "$B/prom")"
echo "shipped by mirrorfs-ship@mnt-db, applied by mirrord.service, metrics in the textfile folder"

step "systemctl stop: each unit ends inactive, not failed"
for u in mirrorfs-ship@mnt-db.service mirrord.service mnt-db.mount; do
	ctr systemctl stop "$u" || fail "systemctl stop $u"
	st=$(ctr systemctl is-active "$u" || true)
	[ "$st" = inactive ] || { ctr systemctl status --no-pager "$u" >&2 || true; fail "$u is $st after stop"; }
done
! ctr journalctl --no-pager -u mirrord.service | grep -q 'Failed to write' ||
	fail "mirrord could not write its status or metrics under its sandbox"

step "power off"
ctr systemctl poweroff
for _ in $(seq 300); do kill -0 "$NPID" 2>/dev/null || break; sleep 0.1; done
kill -0 "$NPID" 2>/dev/null && fail "the container did not power off within 30 s"
wait "$NPID" || fail "systemd-nspawn exited $?"
NPID=""
echo PASS
