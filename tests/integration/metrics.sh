#!/bin/bash
# metrics.sh - the Prometheus textfiles of all three programs (issue 21):
# mirrorfs -o metrics=FILE, mirrord --metrics FILE (labels, lag, build_info)
# and mirrorfs-ship --metrics FILE (up, backlog, per destination the
# acknowledged LSN and last success), each checked by `promtool check
# metrics` and against the status JSON; docs/alerts.yml by `promtool check
# rules`. Skips (77) without promtool (Debian: prometheus).
set -eu
. "$(dirname "$0")/lib.sh"

PROMTOOL=${MFS_PROMTOOL:-$(command -v promtool || true)}
[ -n "$PROMTOOL" ] || skip "no promtool (Debian package prometheus)"
[ -x "$MIRRORD" ] || skip "mirrord not built"
command -v rsync >/dev/null || skip "no rsync"

MPID='' SPID=''
EXTRA_CLEANUP='stop_pid $SPID $MPID'
export MFS_SHIP_LOCK_DIR=$T/locks
mkdir -p "$T/locks"

# value FILE SERIES: the value of the first sample of SERIES (a name, or a
# name with its labels up to a prefix), in REPLY; 1 if absent
value() {
	REPLY=$(awk -v s="$2" 'index($0, s) == 1 && substr($0, length(s) + 1, 1) ~ /[ {,]/ {
		print $NF; exit }' "$1")
	[ -n "$REPLY" ]
}
promcheck() {
	"$PROMTOOL" check metrics <"$1" >"$T/promtool.out" 2>&1 ||
		{ cat "$1" "$T/promtool.out" >&2; fail "promtool check metrics: '$1'"; }
}

step "docs/alerts.yml passes promtool check rules"
"$PROMTOOL" check rules "$MFS_SRC/docs/alerts.yml" >"$T/rules.out" 2>&1 ||
	{ cat "$T/rules.out" >&2; fail "promtool check rules docs/alerts.yml"; }

step "a metrics file in a missing folder is refused before anything is created"
mkdir -p "$T/bad"
if mfs_try_mount "$T/bad" "$T/badmnt" -o "metrics=$T/nowhere/fs.prom"; then
	fail "mirrorfs mounted with -o metrics in a missing folder"
fi
[ ! -e "$T/bad/.mirrorfs" ] || fail "a refused mount created '$T/bad/.mirrorfs'"

step "mirrorfs: mount with -o metrics, write, compare with the status JSON"
mkdir -p "$T/data" "$T/in" "$T/mdata"
mfs_mount "$T/data" "$T/mnt" -o "metrics=$T/fs.prom"
wait_for test -s "$T/fs.prom" || fail "no mirrorfs metrics file"
for i in 1 2 3 4 5; do
	head -c 100000 /dev/urandom >"$T/mnt/f$i"
	sync "$T/mnt/f$i"
done
"$CTL" rotate "$T/mnt" >/dev/null || fail "rotate"
cp "$T/mnt/.mirrorfs/status" "$T/status.json"
want=$(json_field "$T/status.json" last_lsn) || fail "no last_lsn in the status"
[ "$want" -gt 5 ] || fail "status last_lsn $want"
fs_lsn_is() { value "$T/fs.prom" mirrorfs_last_lsn && [ "$REPLY" = "$1" ]; }
wait_for fs_lsn_is "$want" || fail "mirrorfs_last_lsn ${REPLY:-none}, status says $want"
promcheck "$T/fs.prom"
value "$T/fs.prom" mirrorfs_journal_records_total && [ "$REPLY" -ge "$want" ] ||
	fail "records_total ${REPLY:-none} < $want"
value "$T/fs.prom" mirrorfs_journal_bytes_total && [ "$REPLY" -ge 500000 ] ||
	fail "bytes_total ${REPLY:-none}"
value "$T/fs.prom" mirrorfs_journal_fsyncs_total && [ "$REPLY" -ge 1 ] || fail "fsyncs_total"
value "$T/fs.prom" 'mirrorfs_journal_fsync_duration_seconds_count' && fsyncs=$REPLY
value "$T/fs.prom" 'mirrorfs_journal_fsync_duration_seconds_bucket{le="+Inf"}' &&
	[ "$REPLY" = "$fsyncs" ] || fail "histogram +Inf bucket ${REPLY:-none} != count $fsyncs"
value "$T/fs.prom" mirrorfs_locked && [ "$REPLY" = 0 ] || fail "mirrorfs_locked ${REPLY:-none}"
value "$T/fs.prom" mirrorfs_failed && [ "$REPLY" = 0 ] || fail "mirrorfs_failed ${REPLY:-none}"
echo "mirrorfs: last LSN $want, $fsyncs fsyncs"

step "mirrord and the shipper: labels, lag, build_info, up"
"$MIRRORD" --incoming "$T/in" --data "$T/mdata" --metrics "$T/mirrord.prom" \
	--metrics-instance test-mirror >"$T/mirrord.log" 2>&1 &
MPID=$!
"$SHIP" --interval 0.2 --status "$T/ship.json" --metrics "$T/ship.prom" "$T/mnt" "$T/in/" \
	>"$T/ship.log" 2>&1 &
SPID=$!
dataset=$(json_field "$T/status.json" dataset)
lbl="{dataset=\"$dataset\",instance=\"test-mirror\"}"
applied_is() { value "$T/mirrord.prom" "mirrord_applied_lsn$lbl" && [ "$REPLY" = "$1" ]; }
wait_for applied_is "$want" ||
	{ cat "$T/mirrord.log" "$T/ship.log" >&2; fail "mirrord_applied_lsn ${REPLY:-none}, want $want"; }
promcheck "$T/mirrord.prom"
grep -q "^mirrord_build_info{dataset=\"$dataset\",instance=\"test-mirror\",version=\"[^\"]*\"} 1$" \
	"$T/mirrord.prom" || fail "no mirrord_build_info"
value "$T/mirrord.prom" "mirrord_lag_seconds$lbl" || fail "no mirrord_lag_seconds"
awk -v v="$REPLY" 'BEGIN { exit !(v + 0 == v && v >= 0 && v < 3600) }' ||
	fail "lag '$REPLY' not finite"
value "$T/mirrord.prom" "mirrord_quarantined$lbl" && [ "$REPLY" = 0 ] || fail "quarantined"
value "$T/mirrord.prom" "mirrord_retries$lbl" && [ "$REPLY" = 0 ] || fail "retries"
# every sample carries both labels
if grep -v '^#' "$T/mirrord.prom" | grep -v "dataset=\"$dataset\",instance=\"test-mirror\""; then
	fail "a mirrord series without the dataset and instance labels"
fi

ack_is() {
	value "$T/ship.prom" "mirrorfs_ship_acknowledged_lsn{source=\"$T/mnt\",destination=\"$T/in/\"}" &&
		[ "$REPLY" = "$1" ]
}
wait_for ack_is "$want" || { cat "$T/ship.prom" >&2; fail "acknowledged LSN ${REPLY:-none}"; }
promcheck "$T/ship.prom"
value "$T/ship.prom" "mirrorfs_ship_up{source=\"$T/mnt\"}" && [ "$REPLY" = 1 ] || fail "up ${REPLY:-none}"
value "$T/ship.prom" "mirrorfs_ship_backlog_segments{source=\"$T/mnt\"}" && [ "$REPLY" = 0 ] ||
	fail "backlog ${REPLY:-none}"
value "$T/ship.prom" "mirrorfs_ship_last_success_timestamp_seconds{source=\"$T/mnt\",destination=\"$T/in/\"}" &&
	[ "$REPLY" -gt $(( $(date +%s) - 60 )) ] || fail "last success ${REPLY:-none}"

step "unmount: the shipper reports up 0"
mfs_umount "$T/mnt"
up_is() { value "$T/ship.prom" "mirrorfs_ship_up{source=\"$T/mnt\"}" && [ "$REPLY" = "$1" ]; }
wait_for up_is 0 || { cat "$T/ship.prom" >&2; fail "shipper up ${REPLY:-none} after unmount"; }
promcheck "$T/ship.prom"
value "$T/fs.prom" mirrorfs_last_lsn && [ "$REPLY" -ge "$want" ] || fail "fs metrics after unmount"

step "mirrord: a metrics folder that is missing is logged once, not at every pass"
stop_pid $SPID $MPID; MPID='' SPID=''
mkdir -p "$T/in2" "$T/mdata2"
"$MIRRORD" --incoming "$T/in2" --data "$T/mdata2" --metrics "$T/nodir/m.prom" >"$T/m2.log" 2>&1 &
MPID=$!
wait_for grep -q "nodir/m.prom" "$T/m2.log" || fail "no message about '$T/nodir/m.prom'"
# two more passes (mirrord rescans every 10 s when idle): status.json rewritten twice
st=$T/in2/.mirrord/status.json
for pass in 1 2; do
	m0=$(stat -c %Y "$st")
	newer() { [ "$(stat -c %Y "$st")" -gt "$m0" ]; }
	wait_for newer || fail "mirrord did not pass again within 30 s"
done
n=$(grep -c "nodir/m.prom" "$T/m2.log")
[ "$n" = 1 ] || fail "the metrics failure was logged $n times: $(cat "$T/m2.log")"
mkdir "$T/nodir"
echo x >"$T/in2/not-a-segment-6"
wait_for test -s "$T/nodir/m.prom" || fail "no metrics once the folder exists"
wait_for grep -q "m.prom' is written again" "$T/m2.log" || fail "no notice that metrics work again"
echo "logged once, then 'written again'"
echo "OK"
