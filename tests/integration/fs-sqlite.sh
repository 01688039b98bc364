#!/bin/bash
# SPDX-License-Identifier: MIT
# fs-sqlite.sh - SQLite on mirrorfs: 10,000 transactions in WAL mode and
# 10,000 in rollback-journal mode; PRAGMA integrity_check is ok on the
# mount and on a copy rebuilt from the journal alone, which equals the
# backing folder.
set -eu
. "$(dirname "$0")/lib.sh"
command -v sqlite3 >/dev/null || skip "no sqlite3"
N=${MFS_SQLITE_TXNS:-10000}

mkdir -p "$T/data"
mfs_mount "$T/data" "$T/mnt" -o rotate_size=8M
mkdir "$T/mnt/db"
step "$N transactions, WAL mode"
t0=$(date +%s.%N)
sqlite_workload "$T/mnt/db/wal.db" wal "$N" || fail "sqlite (wal) failed"
t1=$(date +%s.%N)
step "$N transactions, rollback journal"
sqlite_workload "$T/mnt/db/rollback.db" delete "$N" || fail "sqlite (delete) failed"
t2=$(date +%s.%N)
echo "wal: $(echo "$N / ($t1 - $t0)" | bc) tx/s, rollback: $(echo "$N / ($t2 - $t1)" | bc) tx/s"
sqlite_ok "$T/mnt/db/wal.db" || fail "integrity (wal) on the mount"
sqlite_ok "$T/mnt/db/rollback.db" || fail "integrity (rollback) on the mount"
grep -o '"journal_sync[a-z_]*":[0-9]*' "$T/mnt/.mirrorfs/status" | tr '\n' ' '; echo
rows=$(sqlite3 "$T/mnt/db/wal.db" "SELECT count(*) FROM t;")
mfs_umount "$T/mnt"

step "replay the journal into an empty folder"
replay_journal "$T/data/.mirrorfs" "$T/copy" || fail "replay"
verify_equal "$T/data" "$T/copy" || fail "replayed copy differs from the backing folder"
sqlite_ok "$T/copy/db/wal.db" || fail "integrity (wal) on the replayed copy"
sqlite_ok "$T/copy/db/rollback.db" || fail "integrity (rollback) on the replayed copy"
[ "$(sqlite3 "$T/copy/db/wal.db" "SELECT count(*) FROM t;")" = "$rows" ] || fail "row count"
echo PASS
