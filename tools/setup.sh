#!/bin/bash
# setup.sh - install what mirrorfs needs from Debian's packages and build it.
# Usage: tools/setup.sh [BUILDDIR] [meson options...]   (as root on Debian 12)
set -eu
cd "$(dirname "$0")/.."

PACKAGES="build-essential libfuse3-dev fuse3 liburing-dev libcunit1-dev inotify-tools meson
ninja-build pkg-config rsync sqlite3 clang attr fio xfsprogs postgresql postgresql-contrib
iproute2 util-linux psmisc procps e2fsprogs debhelper lintian prometheus libsystemd-dev libsodium-dev libzstd-dev"

missing=""
for p in $PACKAGES; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
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
			apt-get install -y -qq --no-install-recommends prometheus >/dev/null ||
				{ rm -f /usr/sbin/policy-rc.d; exit 1; }
			rm -f /usr/sbin/policy-rc.d
		else
			apt-get install -y -qq --no-install-recommends prometheus >/dev/null
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
		apt-get install -y -qq --no-install-recommends postgresql-common >/dev/null
		conf=/etc/postgresql-common/createcluster.conf
		cp -p "$conf" "$conf.mirrorfs-setup"
		echo "create_main_cluster = false" >>"$conf"
		apt-get install -y -qq --no-install-recommends $missing >/dev/null || {
			mv "$conf.mirrorfs-setup" "$conf"
			exit 1
		}
		mv "$conf.mirrorfs-setup" "$conf"
		;;
	*) apt-get install -y -qq --no-install-recommends $missing >/dev/null ;;
	esac
fi
modprobe fuse 2>/dev/null || true

builddir="${1:-build}"
[ $# -gt 0 ] && shift
if [ -f "$builddir/build.ninja" ]; then
	meson configure "$builddir" "$@" >/dev/null
else
	meson setup "$builddir" --wrap-mode=nofallback "$@" >/dev/null
fi
ninja -C "$builddir" >/dev/null
echo "setup: built in '$builddir'"
