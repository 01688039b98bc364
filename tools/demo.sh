#!/bin/bash
# SPDX-License-Identifier: MIT
#
# demo.sh - the main job, end to end on this one machine: the seeds' 4D
# logical-mirror scenario (steps 1-6 of its table) with PostgreSQL.
#
#   primary (netns mfsP)                          mirror (netns mfsM)
#   PostgreSQL + pgbench                          rsync daemon :873 (incoming, state)
#     on mirrorfs (rotate every second)  --veth-> mirrord replaying into data/
#   mirrorfs-ship --trim                          PostgreSQL after promotion
#
# then, while pgbench still runs, kill -9 of PostgreSQL and mirrorfs;
# promotion of the mirror with the dead primary's open segment (mirrorctl
# promote, or mirrord --once + mirrorctl replay on a build without it);
# mirrorfs on the promoted data as the new primary, PostgreSQL on it, and a
# closing table (committed vs present, LSNs, lag p50/p99, failover time).
# Falls back to loopback (two folders, two ports) when network namespaces
# cannot be created. Cleans up everything it started, also on failure.
#
# Environment: DEMO_SECONDS (pgbench run, 30), DEMO_CLIENTS (4),
# DEMO_SCALE (10), DEMO_NO_NETNS=1 (force the loopback fallback),
# DEMO_KEEP=1 (keep the work folder), MFS_BUILD (build folder, "build"),
# DEMO_PARTS=1 (check only the parts that need no mirrorfs: namespaces,
# rsync daemon, shipping, PostgreSQL on a plain folder), DEMO_SKIP_SETUP=1
# (do not run tools/setup.sh: use what is built).
set -eu
cd "$(dirname "$0")/.."
src=$PWD
build=${MFS_BUILD:-build}
[ "${DEMO_SKIP_SETUP:-0}" = 1 ] || bash tools/setup.sh "$build"

seconds=${DEMO_SECONDS:-30}
clients=${DEMO_CLIENTS:-4}
scale=${DEMO_SCALE:-10}
parts=${DEMO_PARTS:-0}
case "$build" in /*) bdir=$build ;; *) bdir=$src/$build ;; esac
fs_bin=$bdir/fs/mirrorfs
mirrord_bin=$bdir/daemon/mirrord
ctl=$bdir/tools/mirrorctl
ship=$src/tools/mirrorfs-ship
pgbin=/usr/lib/postgresql/15/bin

say() { printf '== %s\n' "$*"; }
die() { printf 'demo: %s\n' "$*" >&2; exit 1; }
now() { date +%s.%N; }

# ------------------------------------------------------------ prerequisites
if [ "$parts" != 1 ]; then
	[ -x "$fs_bin" ] || die "mirrorfs not built yet ('$build/fs/mirrorfs' is missing): the filesystem (fs/) has not landed"
	[ -x "$mirrord_bin" ] || die "mirrord not built yet ('$build/daemon/mirrord' is missing): the mirror daemon (daemon/) has not landed"
fi
[ -x "$ctl" ] || [ "$parts" = 1 ] || die "mirrorctl not built ('$build/tools/mirrorctl' is missing)"
[ -x "$pgbin/initdb" ] || die "PostgreSQL 15 is not installed ('$pgbin/initdb' is missing)"
[ -e /dev/fuse ] || [ "$parts" = 1 ] || die "/dev/fuse is missing (modprobe fuse)"
for c in rsync inotifywait fusermount3 python3 runuser; do
	command -v "$c" >/dev/null || die "'$c' is missing"
done
id postgres >/dev/null 2>&1 || die "no 'postgres' user (Debian's postgresql package creates it)"

# ------------------------------------------------------------ state + cleanup
work=$(mktemp -d /tmp/mirrorfs-demo.XXXXXX)
chmod 755 "$work"
logs=$work/logs
mkdir -p "$logs"
NSP="" NSM=""
pids=()          # background processes we started, killed by PID at exit
fs_pid="" fs2_pid="" mirrord_pid="" rsyncd_pid="" ship_pid="" sampler_pid="" pgbench_pid=""
pg_dirs=()       # data folders of PostgreSQL servers we started
mounts=()        # FUSE mounts we made
step="start"

cleanup() {
	local rc=$? p d m
	trap - EXIT INT TERM
	set +e
	if [ $rc != 0 ]; then
		printf 'demo: FAILED during "%s" (exit %d)\n' "$step" "$rc" >&2
		for f in "$logs"/*.log; do
			[ -s "$f" ] || continue
			printf -- '--- last lines of %s\n' "${f##*/}" >&2
			tail -n 8 "$f" >&2
		done
	fi
	for d in "${pg_dirs[@]}"; do
		[ -f "$d/postmaster.pid" ] || continue
		p=$(head -n 1 "$d/postmaster.pid" 2>/dev/null)
		{ [ -n "$p" ] && kill -0 "$p" 2>/dev/null; } || continue
		timeout 20 runuser -u postgres -- "$pgbin/pg_ctl" -D "$d" -m immediate stop \
			>/dev/null 2>&1 || kill -9 "$p" 2>/dev/null
	done
	for p in "$sampler_pid" "$ship_pid" "$mirrord_pid" "$rsyncd_pid"; do
		[ -n "$p" ] && kill "$p" 2>/dev/null
	done
	for m in "${mounts[@]}"; do
		mountpoint -q "$m" 2>/dev/null && fusermount3 -u -z "$m" 2>/dev/null
	done
	for p in "${pids[@]}"; do
		kill "$p" 2>/dev/null
	done
	sleep 0.3
	for p in "${pids[@]}"; do
		kill -0 "$p" 2>/dev/null && kill -9 "$p" 2>/dev/null
		wait "$p" 2>/dev/null
	done
	[ -n "$NSP" ] && ip netns del "$NSP" 2>/dev/null
	[ -n "$NSM" ] && ip netns del "$NSM" 2>/dev/null
	if [ "${DEMO_KEEP:-0}" = 1 ]; then
		echo "demo: work folder kept: $work" >&2
	elif [ $rc != 0 ]; then
		local keep
		keep=$(mktemp -d /tmp/mirrorfs-demo-logs.XXXXXX)
		cp -a "$logs/." "$keep/" 2>/dev/null
		echo "demo: logs kept in $keep" >&2
		rm -rf "$work"
	else
		rm -rf "$work"
	fi
	exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Run in the primary's / the mirror's network namespace (or here). For
# background jobs use "${PRI[@]}" / "${MIR[@]}" directly, so that $! is the
# program's own PID (ip netns exec execs it), not a subshell's.
PRI=() MIR=()
on_pri() { "${PRI[@]}" "$@"; }
on_mir() { "${MIR[@]}" "$@"; }

# Wait until "$@" succeeds, at most $1 seconds; never a bare sleep.
wait_for() {
	local deadline=$(($(date +%s) + $1))
	shift
	until "$@" >/dev/null 2>&1; do
		[ "$(date +%s)" -lt "$deadline" ] || return 1
		sleep 0.1
	done
}

alive() { kill -0 "$1" 2>/dev/null; }

# ------------------------------------------------------------ the network
setup_network() {
	step="network"
	local tag=$$
	NSP=mfsP$tag NSM=mfsM$tag
	if [ "${DEMO_NO_NETNS:-0}" != 1 ] && ip netns add "$NSP" 2>/dev/null; then
		if ip netns add "$NSM" &&
		   ip link add "vp$tag" type veth peer name "vm$tag" &&
		   ip link set "vp$tag" netns "$NSP" && ip link set "vm$tag" netns "$NSM" &&
		   ip -n "$NSP" addr add 10.231.0.1/24 dev "vp$tag" &&
		   ip -n "$NSM" addr add 10.231.0.2/24 dev "vm$tag" &&
		   ip -n "$NSP" link set lo up && ip -n "$NSM" link set lo up &&
		   ip -n "$NSP" link set "vp$tag" up && ip -n "$NSM" link set "vm$tag" up &&
		   ip netns exec "$NSP" true; then
			PRI=(ip netns exec "$NSP") MIR=(ip netns exec "$NSM")
			PRI_IP=10.231.0.1 MIR_IP=10.231.0.2 PRI_PORT=5432 MIR_PORT=5432
			RSYNC_PORT=873
			say "network: namespaces $NSP (10.231.0.1) and $NSM (10.231.0.2) joined by a veth pair"
			return
		fi
		ip netns del "$NSP" 2>/dev/null
		ip netns del "$NSM" 2>/dev/null
	fi
	NSP="" NSM=""
	PRI_IP=127.0.0.1 MIR_IP=127.0.0.1 PRI_PORT=54331 MIR_PORT=54332 RSYNC_PORT=18873
	say "network: no network namespaces here; primary and mirror are two folders on loopback"
}

# ------------------------------------------------------------ the mirror side
start_rsyncd() {
	step="rsync daemon"
	mkdir -p "$work/mirror/incoming" "$work/mirror/state" "$work/mirror/failover"
	cat >"$work/rsyncd.conf" <<EOF
# the mirror's rsync daemon: segments in, applied state out
use chroot = no
uid = root
gid = root
max connections = 16
reverse lookup = no
log file = $logs/rsyncd.log
[incoming]
	path = $work/mirror/incoming
	read only = false
[state]
	path = $work/mirror/state
	read only = true
[failover]
	path = $work/mirror/failover
	read only = false
EOF
	"${MIR[@]}" rsync --daemon --no-detach --config="$work/rsyncd.conf" \
		--address="$MIR_IP" --port="$RSYNC_PORT" >>"$logs/rsyncd.log" 2>&1 &
	rsyncd_pid=$!
	pids+=("$rsyncd_pid")
	RSYNC_URL="rsync://$MIR_IP:$RSYNC_PORT"
	wait_for 10 on_pri rsync --contimeout=2 "$RSYNC_URL/" ||
		die "the rsync daemon did not answer on $RSYNC_URL"
	say "mirror: rsync daemon at $RSYNC_URL (modules incoming, state, failover)"
}

start_mirrord() {
	step="mirrord"
	mkdir -p "$work/mirror/data"
	"${MIR[@]}" "$mirrord_bin" --incoming "$work/mirror/incoming" --data "$work/mirror/data" \
		--state "$work/mirror/state" >>"$logs/mirrord.log" 2>&1 &
	mirrord_pid=$!
	pids+=("$mirrord_pid")
	wait_for 10 test -s "$work/mirror/state/status.json" ||
		{ alive "$mirrord_pid" || die "mirrord exited at start"; }
	say "mirror: mirrord replaying $work/mirror/incoming into $work/mirror/data"
}

# ------------------------------------------------------------ the primary side
start_mirrorfs() {
	step="mirrorfs"
	mkdir -p "$work/primary/data" "$work/primary/mnt"
	"$fs_bin" -f -o rotate_interval=1,allow_other "$work/primary/data" "$work/primary/mnt" \
		>>"$logs/mirrorfs.log" 2>&1 &
	fs_pid=$!
	pids+=("$fs_pid")
	mounts+=("$work/primary/mnt")
	wait_for 30 mountpoint -q "$work/primary/mnt" ||
		die "mirrorfs did not mount '$work/primary/mnt' within 30 s"
	[ -d "$work/primary/mnt/.mirrorfs/journal" ] ||
		die "no .mirrorfs/journal/ under the mount"
	say "primary: mirrorfs on $work/primary/mnt (rotate every second)"
}

# PostgreSQL: initdb (as postgres) into $1, server settings for this demo.
pg_init() {
	local dir=$1
	mkdir -p "$dir"
	chown postgres:postgres "$dir"
	chmod 700 "$dir"
	runuser -u postgres -- "$pgbin/initdb" -D "$dir" -A trust -U postgres \
		>>"$logs/initdb.log" 2>&1 || die "initdb in '$dir' failed"
	cat >>"$dir/postgresql.conf" <<EOF
# mirrorfs demo
shared_buffers = 128MB
# failover time is mostly PostgreSQL's own crash recovery on the promoted
# copy: replaying the WAL since the last checkpoint, then the end-of-recovery
# checkpoint. Frequent checkpoints bound both (at some cost in throughput).
max_wal_size = 64MB
checkpoint_timeout = 30s
fsync = on
synchronous_commit = on
logging_collector = off
# crash recovery starts by fsyncing every file of the data folder, one by
# one; on a FUSE mount each is a round trip. syncfs does it in one call, and
# the promoted files were already flushed by the promotion.
recovery_init_sync_method = syncfs
EOF
	echo "host all all 10.231.0.0/24 trust" >>"$dir/pg_hba.conf"
}

# Start PostgreSQL on data folder $1 in namespace function $2 at IP $3 port $4.
pg_start() {
	local dir=$1 ns=$2 ip=$3 port=$4 sock=$5
	mkdir -p "$sock"
	chown postgres:postgres "$sock"
	touch "$logs/pg-${sock##*/}.log"
	chown postgres "$logs/pg-${sock##*/}.log"
	pg_dirs+=("$dir")
	$ns runuser -u postgres -- "$pgbin/pg_ctl" -D "$dir" -w -t 120 -l "$logs/pg-${sock##*/}.log" \
		-o "-c listen_addresses=$ip -c port=$port -c unix_socket_directories=$sock" start \
		>/dev/null
}

psql_on() { # psql_on NSFUNC SOCKDIR PORT SQL
	local ns=$1 sock=$2 port=$3
	shift 3
	$ns runuser -u postgres -- psql -X -q -At -h "$sock" -p "$port" -d postgres -c "$*"
}

start_postgres_primary() {
	step="PostgreSQL on the primary"
	local mnt=$work/primary/mnt
	pg_init "$mnt/pgdata"
	pg_start "$mnt/pgdata" on_pri "$PRI_IP" "$PRI_PORT" "$work/sock-pri" ||
		die "PostgreSQL did not start on the mirrorfs mount"
	say "primary: PostgreSQL 15 on the mount, $PRI_IP:$PRI_PORT"
}

start_shipper() {
	step="mirrorfs-ship"
	"${PRI[@]}" "$ship" --interval 0.2 --trim --status "$work/ship-status.json" \
		--mirrorctl "$ctl" \
		--state-of "$RSYNC_URL/incoming/=$RSYNC_URL/state/" \
		"$work/primary/mnt" "$RSYNC_URL/incoming/" >>"$logs/ship.log" 2>&1 &
	ship_pid=$!
	pids+=("$ship_pid")
	wait_for 10 test -s "$work/ship-status.json" ||
		{ alive "$ship_pid" || die "mirrorfs-ship exited at start"; }
	say "primary: mirrorfs-ship -> $RSYNC_URL/incoming/, trimming what the mirror applied"
}

# Sample, every 0.2 s, the primary's last LSN and the mirror's applied LSN.
start_sampler() {
	python3 - "$work/primary/mnt/.mirrorfs/status" "$work/mirror/state/status.json" \
		"$work/lag.tsv" <<'PY' &
import re, sys, time, signal
pri, mir, out = sys.argv[1:4]
signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
def lsn(path, keys):
    try:
        s = open(path).read()
    except OSError:
        return None
    for k in keys:
        m = re.search(r'"%s"\s*:\s*"?(\d+)' % k, s)
        if m:
            return int(m.group(1))
    return None
with open(out, "w", buffering=1) as f:
    while True:
        t = time.time()
        p = lsn(pri, ("last_lsn", "lsn"))
        a = lsn(mir, ("applied_lsn",))
        if p is not None and a is not None:
            f.write("%.3f\t%d\t%d\n" % (t, p, a))
        time.sleep(max(0.0, 0.2 - (time.time() - t)))
PY
	sampler_pid=$!
	pids+=("$sampler_pid")
}

# lag(t) = t - (first sample time at which the primary had passed the
# mirror's applied LSN); prints "p50 p99 max samples".
lag_stats() {
	python3 - "$work/lag.tsv" <<'PY'
import sys
rows = [tuple(float(x) for x in l.split()) for l in open(sys.argv[1]) if l.strip()]
lags, j = [], 0
for t, p, a in rows:
    while j < len(rows) and rows[j][1] <= a:
        j += 1
    lags.append(max(0.0, t - rows[j][0]) if j < len(rows) and rows[j][0] <= t else 0.0)
if not lags:
    print("n/a n/a n/a 0"); sys.exit()
lags.sort()
q = lambda f: lags[min(len(lags) - 1, int(f * len(lags)))]
print("%.2f %.2f %.2f %d" % (q(0.50), q(0.99), lags[-1], len(lags)))
PY
}

# mirror_progress: where the mirror is, for the progress lines
mirror_progress() {
	local p a
	p=$(json_field "$work/primary/mnt/.mirrorfs/status" last_lsn)
	a=$(json_field "$work/mirror/state/status.json" applied_lsn)
	printf 'primary LSN %s, mirror applied %s' "${p:-?}" "${a:-?}"
}

# pgbench_progress RE: pgbench's own last progress line matching RE (in its log)
pgbench_progress() {
	local l
	l=$(grep -E "$1" "$logs/pgbench.log" 2>/dev/null | tail -n 1)
	printf '%s' "${l:-starting}"
}

# pgbench under load; the primary is killed while it runs (kill_primary).
# A line every 5 s: a long step is never silent.
start_pgbench() {
	step="pgbench"
	say "primary: pgbench -i -s $scale (a line every 5 s)"
	"${PRI[@]}" runuser -u postgres -- "$pgbin/pgbench" -i -s "$scale" -q -h "$work/sock-pri" \
		-p "$PRI_PORT" postgres >>"$logs/pgbench.log" 2>&1 &
	local init_pid=$! t0 t
	pids+=("$init_pid")
	t0=$(date +%s)
	while alive "$init_pid"; do
		sleep 1
		t=$(($(date +%s) - t0))
		[ $((t % 5)) != 0 ] || ! alive "$init_pid" ||
			printf '   %3d s  pgbench -i: %s; %s\n' "$t" \
				"$(pgbench_progress 'tuples \(|^(vacuuming|creating|generating|done in)')" \
				"$(mirror_progress)"
	done
	wait "$init_pid" || die "pgbench -i failed"
	say "primary: pgbench -c $clients -j 2 for $seconds s, then the primary is killed under load (mirror lag sampled every 0.2 s)"
	start_sampler
	"${PRI[@]}" runuser -u postgres -- "$pgbin/pgbench" -c "$clients" -j 2 -T $((seconds + 120)) \
		-P 5 -h "$work/sock-pri" -p "$PRI_PORT" postgres >"$work/pgbench.out" \
		2>>"$logs/pgbench.log" &
	pgbench_pid=$!
	pids+=("$pgbench_pid")
	# the workload's duration (not a readiness wait), a line every 5 s
	t0=$(date +%s)
	local end=$((t0 + seconds)) next=$((t0 + 5))
	while [ "$(date +%s)" -lt "$end" ]; do
		alive "$pgbench_pid" || die "pgbench stopped early: $(tail -n 3 "$logs/pgbench.log")"
		if [ "$(date +%s)" -ge "$next" ]; then
			printf '   %3d/%d s  %s; %s\n' $((next - t0)) "$seconds" \
				"$(pgbench_progress '^progress: ')" "$(mirror_progress)"
			next=$((next + 5))
		fi
		sleep 0.5
	done
}

# After the kill: what pgbench says it committed (its clients abort when
# the server dies; it still prints its count, and exits 2).
pgbench_result() {
	step="pgbench result"
	wait "$pgbench_pid" 2>/dev/null || true
	pgbench_pid=""
	committed=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' \
		"$work/pgbench.out")
	tps=$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' "$work/pgbench.out" | head -n 1)
	[ -n "$committed" ] || die "cannot read pgbench's transaction count"
	say "primary: pgbench reported $committed committed transactions before the kill ($tps tps)"
}

# ------------------------------------------------------------ the incident
# The open segment in the dead primary's journal folder: the newest file
# with a segment header whose name is not a closed segment's.
find_open_segment() {
	local f best="" bt=0 t
	while IFS= read -r -d '' f; do
		[[ "${f##*/}" =~ ^[0-9]{20}-[0-9]{20}\.mfsj$ ]] && continue
		[ "$(head -c 8 "$f" 2>/dev/null)" = "MFSJRNL" ] || continue
		t=$(stat -c %Y "$f")
		[ "$t" -ge "$bt" ] && { best=$f; bt=$t; }
	done < <(find "$work/primary/data/.mirrorfs" -type f -print0 2>/dev/null)
	printf '%s' "$best"
}

kill_primary() {
	step="kill -9 of the primary"
	local pm victims
	pm=$(head -n 1 "$work/primary/mnt/pgdata/postmaster.pid")
	victims="$pm $(pgrep -P "$pm" | tr '\n' ' ')"
	kill "$sampler_pid" 2>/dev/null; wait "$sampler_pid" 2>/dev/null || true
	sampler_pid=""
	primary_last=$(json_field "$work/primary/mnt/.mirrorfs/status" last_lsn)
	mirror_at_kill=$(json_field "$work/mirror/state/status.json" applied_lsn)
	t_kill=$(now)
	# shellcheck disable=SC2086
	kill -9 $victims "$fs_pid" 2>/dev/null || true
	say "incident: kill -9 of PostgreSQL (pid $pm and its backends) and mirrorfs (pid $fs_pid), under load"
	wait "$fs_pid" 2>/dev/null || true
	fusermount3 -u -z "$work/primary/mnt" 2>/dev/null || true
	# the shipper has nothing left to ship: stop it
	kill "$ship_pid" 2>/dev/null; wait "$ship_pid" 2>/dev/null || true
	ship_pid=""
}

# 4D step 5: copy what is left of the primary's journal (closed segments not
# shipped yet, and the open segment) to the mirror, over the same link.
ship_leftovers() {
	step="copy of the primary's journal tail"
	local closed=()
	while IFS= read -r -d '' f; do closed+=("$f"); done < <(find "$work/primary/data/.mirrorfs" \
		-type f -regextype posix-extended -regex '.*/[0-9]{20}-[0-9]{20}\.mfsj' -print0)
	if [ ${#closed[@]} -gt 0 ]; then
		on_pri rsync -t "${closed[@]}" "$RSYNC_URL/incoming/" || die "cannot copy the closed segments left on the primary"
	fi
	open_seg=$(find_open_segment)
	if [ -n "$open_seg" ]; then
		on_pri rsync -t "$open_seg" "$RSYNC_URL/failover/current.mfsj" ||
			die "cannot copy the open segment to the mirror"
		current=$work/mirror/failover/current.mfsj
	else
		current=""
	fi
	say "incident: ${#closed[@]} closed segment(s) still on the primary (not yet acknowledged) and the open segment copied to the mirror"
}

promote_mirror() {
	step="promotion"
	kill "$mirrord_pid" 2>/dev/null; wait "$mirrord_pid" 2>/dev/null || true
	mirrord_pid=""
	if "$ctl" --help 2>/dev/null | grep -q '^ *promote'; then
		"$ctl" promote --data "$work/mirror/data" --state "$work/mirror/state" \
			--incoming "$work/mirror/incoming" \
			${current:+--current "$current"} >"$work/promote.out" 2>>"$logs/promote.log" ||
			die "mirrorctl promote failed: $(tail -n 2 "$logs/promote.log")"
		promoted_by="mirrorctl promote"
	else
		# TODO(issue 6 item 2): drop this path once mirrorctl promote exists.
		"$mirrord_bin" --once --incoming "$work/mirror/incoming" --data "$work/mirror/data" \
			--state "$work/mirror/state" >>"$logs/mirrord.log" 2>&1 ||
			die "mirrord --once could not apply what was left in incoming"
		local applied
		applied=$(json_field "$work/mirror/state/status.json" applied_lsn)
		if [ -n "$current" ]; then
			"$ctl" replay --to "$work/mirror/data" --after "${applied:-0}" "$current" \
				>"$work/promote.out" 2>>"$logs/promote.log" ||
				die "integrating the open segment failed: $(tail -n 2 "$logs/promote.log")"
		else
			echo "applied up to LSN $applied" >"$work/promote.out"
		fi
		promoted_by="mirrord --once + mirrorctl replay (no promote yet)"
	fi
	mirror_last=$(sed -n 's/.*final LSN \([0-9]*\).*/\1/p; s/^applied up to LSN \([0-9]*\).*/\1/p' \
		"$work/promote.out" | tail -n 1)
	t_promoted=$(now)
	say "switch-over: mirror promoted with $promoted_by, up to LSN ${mirror_last:-?}"
}

start_postgres_mirror() {
	step="PostgreSQL on the promoted mirror"
	local base=$work/mirror/data
	new_primary=""
	if [ "$promoted_by" = "mirrorctl promote" ]; then
		# the promoted data is the new primary: journal it, same data set
		mkdir -p "$work/mirror/mnt"
		"$fs_bin" -f -o rotate_interval=1,allow_other "$work/mirror/data" "$work/mirror/mnt" \
			>>"$logs/mirrorfs-new-primary.log" 2>&1 &
		fs2_pid=$!
		pids+=("$fs2_pid")
		mounts+=("$work/mirror/mnt")
		wait_for 30 mountpoint -q "$work/mirror/mnt" ||
			die "mirrorfs did not mount the promoted data as the new primary"
		base=$work/mirror/mnt
		new_primary=$base
	fi
	local dir=$base/pgdata
	[ -d "$dir" ] || die "no pgdata in the promoted mirror's data folder"
	# the dead primary's lock file came along with the data; on another
	# machine its PID means nothing (here it may even be a zombie's)
	rm -f "$dir/postmaster.pid"
	pg_start "$dir" on_mir "$MIR_IP" "$MIR_PORT" "$work/sock-mir" ||
		die "PostgreSQL did not start on the promoted mirror"
	psql_on on_mir "$work/sock-mir" "$MIR_PORT" \
		"CREATE TABLE IF NOT EXISTS demo_probe(t timestamptz); INSERT INTO demo_probe VALUES (now())" ||
		die "the promoted mirror does not accept writes"
	t_ok=$(now)
	say "switch-over: PostgreSQL accepts writes on the mirror, $MIR_IP:$MIR_PORT${new_primary:+ (on mirrorfs: the new primary)}"
}

report() {
	step="report"
	local rows consistent failover
	rows=$(psql_on on_mir "$work/sock-mir" "$MIR_PORT" "SELECT count(*) FROM pgbench_history")
	consistent=$(psql_on on_mir "$work/sock-mir" "$MIR_PORT" \
		"SELECT (SELECT coalesce(sum(delta),0) FROM pgbench_history) = (SELECT sum(abalance) FROM pgbench_accounts)")
	read -r lag50 lag99 lagmax nlag <<<"$(lag_stats)"
	failover=$(python3 -c "print('%.2f (copy + promote %.2f, mount + PostgreSQL recovery + write %.2f)' % ($t_ok - $t_kill, $t_promoted - $t_kill, $t_ok - $t_promoted))")
	echo
	printf '%-48s %s\n' "closing table" ""
	printf '%-48s %s\n' "------------------------------------------------" "--------------------"
	printf '%-48s %s\n' "transactions pgbench reported committed" "$committed"
	printf '%-48s %s\n' "rows in pgbench_history on the promoted mirror" "$rows"
	printf '%-48s %s\n' "committed transactions lost" "$((committed > rows ? committed - rows : 0))"
	[ "$rows" -gt "$committed" ] && printf '%-48s %s\n' \
		"  + committed, reply lost in the kill" "$((rows - committed))"
	printf '%-48s %s\n' "balances consistent on the mirror" "$([ "$consistent" = t ] && echo yes || echo NO)"
	printf '%-48s %s\n' "primary: last LSN in its status before the kill" "${primary_last:-?}"
	printf '%-48s %s\n' "mirror: applied LSN at the kill" "${mirror_at_kill:-?}"
	printf '%-48s %s\n' "open segment of the dead primary" "$(verdict_of_open)"
	printf '%-48s %s\n' "mirror: final LSN after promotion" "${mirror_last:-?}"
	printf '%-48s %s\n' "mirror lag during pgbench p50 / p99 / max (s)" "$lag50 / $lag99 / $lagmax ($nlag samples)"
	printf '%-48s %s\n' "failover time, kill -> writes on the mirror (s)" "$failover"
	printf '%-48s %s\n' "pgbench" "-c $clients, scale $scale, $tps tps, killed after $seconds s"
	printf '%-48s %s\n' "network" "$([ -n "$NSP" ] && echo "netns + veth" || echo "loopback fallback")"
	if [ -n "$new_primary" ]; then
		printf '%-48s %s\n' "new primary (mirrorfs on the promoted data)" \
			"data set $(json_field "$new_primary/.mirrorfs/status" dataset), last LSN $(json_field "$new_primary/.mirrorfs/status" last_lsn)"
	fi
	[ "$rows" -ge "$committed" ] || die "the promoted mirror lacks $((committed - rows)) committed transactions"
	[ "$consistent" = t ] || die "balances are inconsistent on the promoted mirror"
}

verdict_of_open() {
	if [ -z "${current:-}" ]; then
		echo "none"
		return
	fi
	"$ctl" dump "$current" 2>/dev/null | grep '^# ' | tail -n 1 |
		sed 's/^# [^:]*: //; s/^data set [^,]*, //' || true
}

json_field() { # json_field FILE KEY: a number or a string value
	sed -n 's/.*"'"$2"'" *: *"\{0,1\}\([^",}]*\).*/\1/p' "$1" 2>/dev/null | head -n 1
}

# ------------------------------------------------------------ parts only
# Everything that does not need mirrorfs: the namespaces, the rsync daemon,
# mirrorfs-ship over the veth with acknowledgements, PostgreSQL + pgbench
# on a plain folder, the lag sampler.
parts_only() {
	setup_network
	start_rsyncd
	step="shipping fake segments"
	mkdir -p "$work/jr"
	local i
	for i in 1 2 3; do
		printf 'x' >"$work/jr/$(printf '%020d-%020d.mfsj' $((i * 10 - 9)) $((i * 10)))"
	done
	echo '{"applied_lsn": 20}' >"$work/mirror/state/status.json"
	RSYNC_URL="rsync://$MIR_IP:$RSYNC_PORT"
	on_pri "$ship" --once --trim --status "$work/ship-status.json" \
		--state-of "$RSYNC_URL/incoming/=$RSYNC_URL/state/" "$work/jr" "$RSYNC_URL/incoming/" \
		>>"$logs/ship.log" 2>&1 && die "mirrorfs-ship --once said all done with LSN 30 unapplied"
	[ "$(ls "$work/jr")" = 00000000000000000021-00000000000000000030.mfsj ] ||
		die "mirrorfs-ship trimmed the wrong segments: $(ls "$work/jr")"
	[ -f "$work/mirror/incoming/00000000000000000021-00000000000000000030.mfsj" ] ||
		die "mirrorfs-ship did not ship the unapplied segment"
	say "parts: mirrorfs-ship shipped over $RSYNC_URL and trimmed only what the mirror applied"
	step="PostgreSQL on a plain folder"
	pg_init "$work/plain/pgdata"
	pg_start "$work/plain/pgdata" on_pri "$PRI_IP" "$PRI_PORT" "$work/sock-pri" ||
		die "PostgreSQL did not start"
	on_pri runuser -u postgres -- "$pgbin/pgbench" -i -s 1 -q -h "$work/sock-pri" \
		-p "$PRI_PORT" postgres >>"$logs/pgbench.log" 2>&1 || die "pgbench -i failed"
	on_pri runuser -u postgres -- "$pgbin/pgbench" -c 2 -T 3 -h "$PRI_IP" -p "$PRI_PORT" \
		postgres >"$work/pgbench.out" 2>>"$logs/pgbench.log" || die "pgbench over TCP failed"
	committed=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' \
		"$work/pgbench.out")
	local rows
	rows=$(psql_on on_pri "$work/sock-pri" "$PRI_PORT" "SELECT count(*) FROM pgbench_history")
	[ "$rows" = "$committed" ] || die "pgbench said $committed, pgbench_history has $rows"
	say "parts: PostgreSQL + pgbench over $PRI_IP:$PRI_PORT: $committed transactions, $rows history rows"
	step="done"
}

# ------------------------------------------------------------ main
if [ "$parts" = 1 ]; then
	parts_only
	say "parts: all good"
	exit 0
fi
setup_network
start_rsyncd
start_mirrord
start_mirrorfs
start_postgres_primary
start_shipper
start_pgbench
kill_primary
pgbench_result
ship_leftovers
promote_mirror
start_postgres_mirror
report
step="done"
