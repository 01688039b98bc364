#!/bin/bash
# setup.sh - install what mirrorfs needs from Debian's packages and build it.
# Usage: tools/setup.sh [BUILDDIR] [meson options...]   (as root on Debian 12)
set -eu
cd "$(dirname "$0")/.."

# progress LABEL CMD...: run CMD, its output in a log; while it runs, a line
# every 5 s with the time so far and the log's last line (a package being
# unpacked, a file being compiled), so that a long step is never silent. On
# failure, the log's last lines. Returns CMD's status.
progress() {
	local label=$1 log pid t0=$SECONDS next=5 rc=0 last
	shift
	log=$(mktemp /tmp/mirrorfs-setup.XXXXXX)
	"$@" >"$log" 2>&1 &
	pid=$!
	while kill -0 "$pid" 2>/dev/null; do
		sleep 1
		if [ $((SECONDS - t0)) -ge "$next" ] && kill -0 "$pid" 2>/dev/null; then
			last=$(tail -n 1 "$log" | tr -d '\r' | cut -c 1-100)
			echo "setup: $label: $((SECONDS - t0)) s${last:+, $last}"
			next=$((SECONDS - t0 + 5))
		fi
	done
	wait "$pid" || rc=$?
	[ "$rc" = 0 ] || { echo "setup: $label failed (exit $rc):"; tail -n 20 "$log"; } >&2
	rm -f "$log"
	return "$rc"
}

PACKAGES="build-essential libfuse3-dev fuse3 liburing-dev libcunit1-dev inotify-tools meson
ninja-build pkg-config rsync sqlite3 clang attr fio xfsprogs postgresql postgresql-contrib
iproute2 util-linux psmisc procps e2fsprogs debhelper lintian prometheus libsystemd-dev systemd-container libsodium-dev libzstd-dev
libcurl4-openssl-dev libxml2-dev"
# a single-node Ceph cluster with its RADOS Gateway: the real S3 server of the
# object-storage tests (tests/integration/rgw.sh); installed, never started
CEPH_PACKAGES="ceph-mon ceph-mgr ceph-osd radosgw"
# the system units those packages enable on a first install
CEPH_UNITS="ceph.target ceph-mon.target ceph-mgr.target ceph-osd.target
ceph-radosgw.target ceph-crash.service rbdmap.service"

# install_ceph PACKAGE... - install Ceph's packages without starting or
# enabling any system Ceph service: a temporary policy-rc.d refuses to start
# any service while they are installed (smartmontools comes with ceph-osd;
# one already on the machine is left as it is and decides), and the
# units a first install enabled (whose packages were never installed before)
# are disabled again. Units an administrator already had are never touched.
install_ceph() {
	local fresh="" u rc=0 rcd=""
	for u in $CEPH_UNITS; do
		[ -e "/var/lib/systemd/deb-systemd-helper-enabled/$u.dsh-also" ] || fresh="$fresh $u"
	done
	ls /etc/rc?.d/S*radosgw >/dev/null 2>&1 || rcd=1
	if [ ! -e /usr/sbin/policy-rc.d ]; then
		printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
		chmod 755 /usr/sbin/policy-rc.d
		progress "installing Ceph" apt-get install -y -q --no-install-recommends "$@" || rc=1
		rm -f /usr/sbin/policy-rc.d
	else
		progress "installing Ceph" apt-get install -y -q --no-install-recommends "$@" || rc=1
	fi
	for u in $fresh; do
		[ -e "/lib/systemd/system/$u" ] && systemctl disable --quiet "$u" 2>/dev/null || true
	done
	[ -z "$rcd" ] || [ ! -e /etc/init.d/radosgw ] || { update-rc.d radosgw disable >/dev/null 2>&1 || true; }
	return $rc
}

echo "setup: checking the Debian packages"
missing=""
for p in $PACKAGES; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
ceph=""
for p in $CEPH_PACKAGES; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || ceph="$ceph $p"
done
if [ -n "$missing" ]; then
	echo "setup: installing:$missing"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	case " $missing " in
	*" prometheus "*)
		# only for promtool (tests/integration/metrics.sh): Debian's
		# prometheus starts its server when installed: a policy-rc.d that
		# refuses to start that one service keeps it stopped. A policy-rc.d
		# already on the machine is left as it is (and decides).
		missing=${missing/ prometheus/}
		if [ ! -e /usr/sbin/policy-rc.d ]; then
			printf '#!/bin/sh\n[ "$1" = prometheus ] && exit 101\nexit 0\n' >/usr/sbin/policy-rc.d
			chmod 755 /usr/sbin/policy-rc.d
			progress "installing prometheus" \
				apt-get install -y -q --no-install-recommends prometheus ||
				{ rm -f /usr/sbin/policy-rc.d; exit 1; }
			rm -f /usr/sbin/policy-rc.d
		else
			progress "installing prometheus" \
				apt-get install -y -q --no-install-recommends prometheus
		fi
		;;
	esac
	[ -n "${missing// /}" ] || missing=""
	case " $missing " in
	"  ") ;;
	*" postgresql "*)
		# Debian's postgresql creates and starts a cluster "main" when it
		# is first installed; the tests and the demo run their own servers
		# on private sockets and ports and need none. postgresql-common is
		# installed first, and its createcluster.conf says "no main
		# cluster" while the server is installed, then is put back as it
		# was. A cluster already on the machine is never stopped or touched.
		progress "installing postgresql-common" \
			apt-get install -y -q --no-install-recommends postgresql-common
		conf=/etc/postgresql-common/createcluster.conf
		cp -p "$conf" "$conf.mirrorfs-setup"
		echo "create_main_cluster = false" >>"$conf"
		progress "installing packages" apt-get install -y -q --no-install-recommends $missing || {
			mv "$conf.mirrorfs-setup" "$conf"
			exit 1
		}
		mv "$conf.mirrorfs-setup" "$conf"
		;;
	*) progress "installing packages" apt-get install -y -q --no-install-recommends $missing ;;
	esac
fi
if [ -n "$ceph" ]; then
	echo "setup: installing:$ceph"
	export DEBIAN_FRONTEND=noninteractive
	[ -n "$missing" ] || apt-get update -qq
	install_ceph $ceph
fi
modprobe fuse 2>/dev/null || true

builddir="${1:-build}"
[ $# -gt 0 ] && shift
if [ -f "$builddir/build.ninja" ]; then
	progress "configuring" meson configure "$builddir" "$@"
else
	progress "configuring" meson setup "$builddir" --wrap-mode=nofallback "$@"
fi
progress "building" ninja -C "$builddir"
echo "setup: built in '$builddir'"
