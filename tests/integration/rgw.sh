# SPDX-License-Identifier: MIT
# rgw.sh - a real S3 server for the object-storage tests (sourced after lib.sh).
#
# rgw_start starts a single-node Ceph cluster from Debian's packages (one
# ceph-mon, one ceph-osd with BlueStore on a sparse file, pool size 1, no
# cephx; a ceph-mgr too with RGW_MGR=1) and its RADOS Gateway, everything
# in $T/ceph with its own config file, its own fsid and its own ports on
# 127.0.0.1, then creates a test user and exports the AWS variables a client
# needs:
#   AWS_ENDPOINT_URL (http://127.0.0.1:PORT), AWS_ACCESS_KEY_ID,
#   AWS_SECRET_ACCESS_KEY, AWS_REGION (the gateway's zonegroup, "default").
# Every daemon runs in the foreground as a child of the test and is stopped by
# its PID (rgw_stop, or the EXIT trap through EXTRA_CLEANUP); nothing outside
# $T/ceph is read or written: no /etc/ceph, no /var/lib/ceph, no system unit,
# so a cluster the machine already has is never touched.
# rgw_gw_stop / rgw_gw_start stop and restart the gateway alone (same port).
# RGW_BLOCK_BYTES sizes the OSD's sparse block file (default 4 GiB; the
# benchmarks store more).
# The test SKIPs (77) only when the Ceph packages are not installed.

for _b in ceph-mon ceph-mgr ceph-osd radosgw radosgw-admin ceph; do
	command -v "$_b" >/dev/null ||
		skip "Ceph is not installed ($_b missing): tools/setup.sh installs ceph-mon ceph-mgr ceph-osd radosgw"
done
unset _b

CEPH_DIR=$T/ceph
CEPH_CONF=$CEPH_DIR/ceph.conf
declare -A RGW_PID=()
RGW_PORT=

# free_port: a TCP port on 127.0.0.1 nobody listens on now.
free_port() {
	python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

ceph_() { timeout 60 ceph -c "$CEPH_CONF" --connect-timeout 30 "$@"; }

# rgw_daemon NAME CMD...: start one daemon in the foreground, in the background.
rgw_daemon() {
	local name=$1
	shift
	"$@" -c "$CEPH_CONF" -f >>"$CEPH_DIR/log/$name.out" 2>&1 &
	RGW_PID[$name]=$!
}

# rgw_kill NAME: SIGTERM, 20 s, then SIGKILL; always reaped.
rgw_kill() {
	local name=$1 pid=${RGW_PID[$1]:-} i
	[ -n "$pid" ] || return 0
	kill "$pid" 2>/dev/null || true
	for i in $(seq 200); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -9 "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
	unset "RGW_PID[$name]"
	return 0
}

rgw_stop() {
	local n
	set +e
	for n in rgw osd.0 mgr.x mon.a; do rgw_kill "$n"; done
	[ -n "${KEEP_TMP:-}" ] || rm -rf "$CEPH_DIR"
}
# (a test that sets EXTRA_CLEANUP itself sets it before sourcing this file)
RGW_NEXT_CLEANUP=$EXTRA_CLEANUP
rgw_cleanup() {
	rgw_stop
	eval "$RGW_NEXT_CLEANUP"
}
EXTRA_CLEANUP=rgw_cleanup
# a test stopped by a signal (meson's timeout, ^C) still stops the cluster
trap 'exit 143' TERM
trap 'exit 130' INT

rgw_conf() {
	local fsid=$1 monport=$2
	cat >"$CEPH_CONF" <<EOF
[global]
fsid = $fsid
mon host = v2:127.0.0.1:$monport
public addr = 127.0.0.1
cluster addr = 127.0.0.1
ms bind msgr1 = false
ms mon client mode = crc secure
auth cluster required = none
auth service required = none
auth client required = none
auth supported = none
run dir = $CEPH_DIR/run
admin socket = $CEPH_DIR/run/\$name.asok
log file = $CEPH_DIR/log/\$name.log
crash dir = $CEPH_DIR/crash
exporter sock dir = $CEPH_DIR/run
keyring = $CEPH_DIR/keyring
log to stderr = false
err to stderr = true
debug ms = 0
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
mon allow pool size one = true
mon allow pool delete = true
mon warn on pool no redundancy = false
mon max pg per osd = 1000
osd crush chooseleaf type = 0
mon data = $CEPH_DIR/mon.\$id
mgr data = $CEPH_DIR/mgr.\$id
osd data = $CEPH_DIR/osd.\$id
osd objectstore = bluestore
bluestore block path = $CEPH_DIR/osd.\$id.block
bluestore block create = true
bluestore block size = ${RGW_BLOCK_BYTES:-4294967296}
bluestore block db create = false
bluestore block wal create = false
bluestore fsck on mkfs = false
bluestore cache autotune = false
bluestore cache size = 67108864
osd memory target = 939524096
osd op num shards = 1
osd op num threads per shard = 2
osd max object size = 134217728
mgr initial modules =
[mon]
mon cluster log file = $CEPH_DIR/log/cluster.log
[client.rgw]
rgw frontends = beast endpoint=127.0.0.1:$RGW_PORT
rgw data = $CEPH_DIR/rgw
rgw thread pool size = 32
rgw dns name = 127.0.0.1
EOF
}

# rgw_wait DESC SECONDS CMD...: poll CMD every 0.2 s.
rgw_wait() {
	local desc=$1 n=$(($2 * 5)) i
	shift 2
	for i in $(seq "$n"); do
		"$@" >/dev/null 2>&1 && return 0
		sleep 0.2
	done
	tail -n 30 "$CEPH_DIR"/log/*.out "$CEPH_DIR"/log/*.log >&2 2>/dev/null
	fail "ceph: $desc not within $2 s"
}

rgw_gw_start() {
	rgw_daemon rgw radosgw -n client.rgw
	rgw_wait "gateway answering on $RGW_PORT" 90 \
		curl -sf -o /dev/null "http://127.0.0.1:$RGW_PORT/"
}

rgw_gw_stop() { rgw_kill rgw; }

rgw_start() {
	local fsid monport osd uuid
	fsid=$(cat /proc/sys/kernel/random/uuid)
	uuid=$(cat /proc/sys/kernel/random/uuid)
	monport=$(free_port)
	RGW_PORT=$(free_port)
	mkdir -p "$CEPH_DIR"/{run,log,crash,rgw,mon.a,mgr.x,osd.0}
	rgw_conf "$fsid" "$monport"
	monmaptool --create --fsid "$fsid" --addv a "[v2:127.0.0.1:$monport]" \
		"$CEPH_DIR/monmap" >>"$CEPH_DIR/log/mkfs.out" 2>&1 || fail "monmaptool failed"
	ceph-mon -c "$CEPH_CONF" -i a --mkfs --monmap "$CEPH_DIR/monmap" >>"$CEPH_DIR/log/mkfs.out" 2>&1 ||
		fail "ceph-mon --mkfs: $(tail -n 5 "$CEPH_DIR/log/mkfs.out")"
	rgw_daemon mon.a ceph-mon -i a
	rgw_wait "monitor quorum" 60 ceph_ mon stat
	# the gateway needs no manager (it serves statistics, dashboards, the
	# PG autoscaler: all off here); it costs 316 MB and a sixth of a core
	# while it runs and about 20 s of start on a loaded machine. RGW_MGR=1
	# starts one.
	[ -z "${RGW_MGR:-}" ] || rgw_daemon mgr.x ceph-mgr -i x
	osd=$(ceph_ osd new "$uuid") || fail "ceph osd new"
	[ "$osd" = 0 ] || fail "ceph osd new gave '$osd'"
	ceph-osd -c "$CEPH_CONF" -i 0 --mkfs --osd-uuid "$uuid" >>"$CEPH_DIR/log/mkfs.out" 2>&1 ||
		fail "ceph-osd --mkfs: $(tail -n 5 "$CEPH_DIR/log/mkfs.out")"
	rgw_daemon osd.0 ceph-osd -i 0
	rgw_wait "osd.0 up" 120 sh -c "ceph -c '$CEPH_CONF' osd dump 2>/dev/null | grep -q '^osd.0 up'"
	rgw_gw_start
	radosgw-admin -c "$CEPH_CONF" user create --uid=mfs-test --display-name=mfs-test \
		--access-key=MFSTESTACCESSKEY --secret-key=mfs-test-secret-key \
		>"$CEPH_DIR/log/user.out" 2>&1 || fail "radosgw-admin user create: $(tail -n 5 "$CEPH_DIR/log/user.out")"
	export AWS_ENDPOINT_URL=http://127.0.0.1:$RGW_PORT
	export AWS_ACCESS_KEY_ID=MFSTESTACCESSKEY
	export AWS_SECRET_ACCESS_KEY=mfs-test-secret-key
	export AWS_REGION=default
}
