#!/bin/bash
# SPDX-License-Identifier: MIT
# quickstart.sh - the shell blocks of docs/quickstart.md work as written.
#
# Runs, in order, every fenced block of docs/quickstart.md (MFS_QUICKSTART
# names another copy, e.g. a broken one to see this test fail) that is
# preceded by a marker line, one of:
#   <!-- quickstart.sh: run -->
#   <!-- quickstart.sh: run, then wait for PATH -->       (PATH exists, 30 s)
#   <!-- quickstart.sh: run once STATE has caught up with MNT -->
#   <!-- quickstart.sh: run in the background -->       (a daemon: ` &` added)
#   <!-- quickstart.sh: rsyncd.conf -->                  (an ```ini block)
# ("caught up": the mirror's applied LSN in STATE reached the last LSN of
# MNT's closed segments, 60 s): the waits a reader does between two blocks.
# Each sh block is sourced by this shell, under `set -e` and traced: a
# command that fails fails the test, naming it; background jobs (`... &`)
# are this shell's, and one that exits before its wait is over fails it.
# The rsyncd.conf block (two machines) is served by an rsync daemon this
# test starts on a free loopback port (rsync --daemon --no-detach, stopped by
# PID); a block that starts mirrorfs-ship first stops the shipper an
# earlier block started (one shipper per source: the second is refused).
#
# Substitution rule (the only changes to the text of a block):
#   /srv/...                        -> $Q/srv/...   ($Q: a scratch folder)
#   /backup                         -> $Q/backup
#   /mnt/db                         -> $Q/mnt/db
#   /run/mirrorfs-ship/mnt_db.json  -> /run/mirrorfs-ship/NAME.json, NAME
#                                      being what mirrorfs-ship derives from
#                                      $Q/mnt/db (its default status file)
#   rsync://mirror/                 -> rsync://127.0.0.1:PORT/ (the daemon)
#   hosts allow = 192.0.2.10        -> hosts allow = 127.0.0.1
# plus, at the top of the rsyncd.conf: port, pid file and log file in $Q.
# and, outside the text: PATH starts with a folder of links to the build's
# mirrorfs, mirrord, mirrorctl and mirrorfs-ship (MFS_QUICKSTART_BIN=DIR uses
# the ones installed in DIR instead, e.g. /usr/sbin); MFS_SHIP_LOCK_DIR puts
# the shipper's source lock in $Q instead of /run/lock.
#
# The database the quickstart points at the mount is played by a SQLite
# workload (lib.sh), followed by a rotate, right after the block that mounts
# /mnt/db, after the one that takes a snapshot (so that a restore has
# segments to apply) and after the last block. A block that runs
# `mirrorctl restore ... --to DIR` must leave DIR equal to the primary's
# data folder (mirrorctl verify). Checked besides each command's exit status: after
# the last block (the shipper over the rsync daemon, when the quickstart has
# one), rotated and caught up, the mirror's copy of that database passes
# integrity_check and equals the primary's, the shipper trims what the
# mirror applied, and every marked block ran.
#
# Cleanup (also on failure): the shipper and mirrord by PID, the mount
# (fusermount3 -u; the daemonized mirrorfs's PID from DATADIR/.mirrorfs/lock),
# the status file and its lock in /run/mirrorfs-ship (and that folder if
# this test created it), $Q. Nothing else is started, stopped or touched.
set -eu
. "$(dirname "$0")/lib.sh"

S=${MFS_SRC:-$(cd "$(dirname "$0")/../.." && pwd)}
DOC=${MFS_QUICKSTART:-$S/docs/quickstart.md}
[ -f "$DOC" ] || fail "no '$DOC'"
command -v sqlite3 >/dev/null || skip "no sqlite3"
[ "$(id -u)" = 0 ] || skip "the quickstart runs as root (mirrorfs -o allow_other, /run)"

Q=$T/q
BIN=$T/bin
mkdir -p "$Q" "$BIN"
if [ -n "${MFS_QUICKSTART_BIN:-}" ]; then
	for p in mirrorfs mirrord mirrorctl mirrorfs-ship; do
		[ -x "$MFS_QUICKSTART_BIN/$p" ] || fail "no '$MFS_QUICKSTART_BIN/$p'"
		ln -s "$MFS_QUICKSTART_BIN/$p" "$BIN/$p"
	done
else
	[ -x "$MFS_BUILD/daemon/mirrord" ] || skip "mirrord not built"
	ln -s "$FS" "$BIN/mirrorfs"
	ln -s "$MFS_BUILD/daemon/mirrord" "$BIN/mirrord"
	ln -s "$CTL" "$BIN/mirrorctl"
	ln -s "$S/tools/mirrorfs-ship" "$BIN/mirrorfs-ship"
fi
export PATH=$BIN:$PATH
echo "programs: $(for p in mirrorfs mirrord mirrorctl mirrorfs-ship; do readlink -f "$(command -v "$p")"; done | tr '\n' ' ')"
export MFS_SHIP_LOCK_DIR=$Q/locks

MNT=$Q/mnt/db
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
san=$(printf '%s' "$MNT" | tr -c 'A-Za-z0-9._-' '_')
SHIP_STATUS=/run/mirrorfs-ship/${san#_}.json
run_dir_made=0
[ -d /run/mirrorfs-ship ] || run_dir_made=1

qs_cleanup() {
	local pid
	for pid in $(jobs -p); do
		kill "$pid" 2>/dev/null
		wait "$pid" 2>/dev/null
	done
	if mountpoint -q "$MNT"; then
		pid=$(cut -d' ' -f1 "$Q/srv/db/.mirrorfs/lock" 2>/dev/null)
		fusermount3 -u "$MNT" 2>/dev/null || fusermount3 -u -z "$MNT"
		# the daemonized mirrorfs is not our child: wait for it to finish
		for _ in $(seq 100); do
			[ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
	fi
	rm -f "$SHIP_STATUS" "$SHIP_STATUS.lock" "$SHIP_STATUS.tmp"*
	[ "$run_dir_made" = 0 ] || rmdir /run/mirrorfs-ship 2>/dev/null
}
EXTRA_CLEANUP=qs_cleanup

# substitute TEXT: the rule above
substitute() {
	sed -e "s|/run/mirrorfs-ship/mnt_db\.json|$SHIP_STATUS|g" \
	    -e "s|/srv/|$Q/srv/|g" -e "s|/mnt/db|$MNT|g" -e "s|/backup|$Q/backup|g" \
	    -e "s|rsync://mirror/|rsync://127.0.0.1:$PORT/|g" \
	    -e "s|hosts allow = 192\.0\.2\.10\$|hosts allow = 127.0.0.1|"
}

# Split the marked blocks into $T/block.N (the text, substituted) and
# $T/block.N.how (the marker's directive, substituted).
python3 - "$DOC" "$T" <<'PY'
import re, sys
doc, out = sys.argv[1], sys.argv[2]
lines = open(doc).read().split("\n")
n, i = 0, 0
while i < len(lines):
    m = re.fullmatch(r"<!-- quickstart\.sh: (.*) -->", lines[i].strip())
    if not m:
        i += 1
        continue
    fence = ("```ini",) if m.group(1) == "rsyncd.conf" else ("```sh", "```bash")
    if i + 1 >= len(lines) or lines[i + 1].strip() not in fence:
        sys.exit("%s:%d: a quickstart.sh marker not followed by a %s block" % (doc, i + 1, fence[0]))
    j = i + 2
    while j < len(lines) and lines[j].strip() != "```":
        j += 1
    if j == len(lines):
        sys.exit("%s:%d: unterminated block" % (doc, i + 2))
    n += 1
    open("%s/block.%d" % (out, n), "w").write("\n".join(lines[i + 2:j]) + "\n")
    open("%s/block.%d.how" % (out, n), "w").write(m.group(1) + "\n")
    i = j + 1
open(out + "/blocks", "w").write("%d\n" % n)
PY
nblocks=$(cat "$T/blocks")
[ "$nblocks" -ge 5 ] || fail "only $nblocks marked blocks in '$DOC'"

# caught_up STATE MNT: the mirror applied every closed segment of MNT
caught_up() {
	local applied first
	applied=$(mirrorctl status --json "$1" | sed -n 's/.*"applied_lsn":\([0-9]*\).*/\1/p')
	first=$(mirrorctl status --json "$2" | sed -n 's/.*"open_segment_first_lsn":\([0-9]*\).*/\1/p')
	[ -n "$applied" ] && [ -n "$first" ] && [ "$applied" -ge $((first - 1)) ]
}

# ready FILE PID...: FILE exists, or one of the PIDs (background jobs of
# the block) exited
ready() {
	local f=$1 p st
	shift
	[ -e "$f" ] && return 0
	for p in "$@"; do
		st=$(ps -o stat= -p "$p" 2>/dev/null) || return 0
		case $st in Z*) return 0 ;; esac
	done
	return 1
}

bg=""
# start_rsyncd FILE: serve the quickstart's rsyncd.conf FILE on $PORT
start_rsyncd() {
	{
		printf 'port = %s\naddress = 127.0.0.1\npid file = %s\nlog file = %s\n' \
			"$PORT" "$Q/rsyncd.pid" "$Q/rsyncd.log"
		cat "$1"
	} >"$Q/rsyncd.conf"
	cat "$Q/rsyncd.conf"
	rsync --daemon --no-detach --config="$Q/rsyncd.conf" &
	bg="$bg $!"
	wait_for rsync "rsync://127.0.0.1:$PORT/" >/dev/null 2>&1 ||
		fail "the rsync daemon does not answer on port $PORT: $(tail -n 3 "$Q/rsyncd.log")"
}

# stop_shippers: stop the mirrorfs-ship jobs started so far
stop_shippers() {
	local p
	for p in $ship_pids; do
		kill "$p" 2>/dev/null || true
		wait "$p" 2>/dev/null || true
	done
	ship_pids=""
}

# write_db N: the database's work (N transactions) on the mount, then a
# rotate: what a "caught up" wait waits for includes it
write_db() {
	sqlite_workload "$MNT/app.db" wal "$1" || fail "the database on '$MNT'"
	mirrorctl rotate "$MNT" >/dev/null 2>&1
}

bg="" ship_pids=""
db_written=0
for k in $(seq "$nblocks"); do
	how=$(substitute <"$T/block.$k.how")
	substitute <"$T/block.$k" >"$T/run.$k.sh"
	step "block $k of $nblocks ($how)"
	case $how in
	rsyncd.conf)
		start_rsyncd "$T/run.$k.sh"
		continue ;;
	"run once "*" has caught up with "*)
		st=${how#run once }; st=${st%% has caught up with *}
		wait_for caught_up "$st" "${how##* has caught up with }" ||
			wait_for caught_up "$st" "${how##* has caught up with }" ||
			fail "block $k: '$st' did not catch up within 60 s" ;;
	"run in the background")
		sed -i '$ s/$/ \&/' "$T/run.$k.sh" ;;
	run | "run, then wait for "*) ;;
	*) fail "block $k: unknown directive '$how'" ;;
	esac
	! grep -q '^ *mirrorfs-ship ' "$T/run.$k.sh" || stop_shippers
	cat "$T/run.$k.sh"
	echo "--"
	PS4="+ quickstart block $k: "
	trap 'qs_rc=$?; { set +x; } 2>/dev/null; echo "FAIL: quickstart block $k: \"$BASH_COMMAND\" failed (exit $qs_rc)" >&2' ERR
	set -x
	. "$T/run.$k.sh"
	{ set +x; } 2>/dev/null
	trap - ERR
	started=$(jobs -p | grep -vxF -f <(printf '%s\n' $bg) || true)
	bg="$bg $started"
	for p in $started; do
		case $(ps -o args= -p "$p") in *mirrorfs-ship*) ship_pids="$ship_pids $p" ;; esac
	done
	case $how in
	"run, then wait for "*)
		f=${how#run, then wait for }
		wait_for ready "$f" $started || fail "block $k: '$f' did not appear within 30 s"
		test -e "$f" || fail "block $k: a command it started in the background exited" ;;
	"run in the background")
		sleep 1
		! ready /nonexistent $started || fail "block $k: the command exited at once" ;;
	esac
	# the database the quickstart points at the mount
	if [ "$db_written" = 0 ] && mountpoint -q "$MNT"; then
		write_db 300
		db_written=1
	elif grep -q 'mirrorctl snapshot create' "$T/run.$k.sh"; then
		write_db 100
	fi
	to=$(sed -e ':a' -e '/\\$/{N;s/\\\n//;ba' -e '}' "$T/run.$k.sh" |
		sed -n 's/.*mirrorctl restore .*--to \([^ ]*\).*/\1/p')
	[ -z "$to" ] || mirrorctl verify "$to" "$Q/srv/db" ||
		fail "block $k: the restored '$to' differs from the primary's data"
done
echo "ran $nblocks blocks of '$DOC'"

step "what the quickstart promises"
[ "$db_written" = 1 ] || fail "no block mounted '$MNT'"
# more work, shipped by the last shipper the quickstart started
write_db 100
wait_for caught_up "$Q/srv/mirror/state" "$MNT" || wait_for caught_up "$Q/srv/mirror/state" "$MNT" ||
	fail "the mirror did not catch up within 60 s: $(cat "$SHIP_STATUS")"
sqlite_ok "$Q/srv/mirror/data/app.db" || fail "the mirror's copy of the database is damaged"
cmp "$Q/srv/db/app.db" "$Q/srv/mirror/data/app.db" || fail "the mirror's database differs"
[ -n "$(ls "$Q/srv/mirror/archive")" ] || fail "mirrord --keep archived nothing"
# the shipper trims closed segments once the mirror acknowledged them
trimmed() { [ -z "$(ls "$Q/srv/db/.mirrorfs/journal")" ]; }
wait_for trimmed || fail "the shipper did not trim: $(ls "$Q/srv/db/.mirrorfs/journal")"
if [ -f "$Q/rsyncd.conf" ]; then
	grep -q "\"dest\":\"rsync://127.0.0.1:$PORT/mirrorfs-incoming/\"" "$SHIP_STATUS" ||
		fail "the last shipper did not ship over the rsync daemon: $(cat "$SHIP_STATUS")"
	echo "shipped over the quickstart's rsync daemon"
fi
echo "the mirror equals the primary; segments archived, closed ones trimmed"
