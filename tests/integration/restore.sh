#!/bin/bash
# SPDX-License-Identifier: MIT
# restore.sh - mirrorctl restore, point-in-time restore from a snapshot plus
# segments: a copy of the data folder after a first batch stands in for a
# snapshot (user.mirrorfs.lsn set by hand), three more batches go into
# further segments; then restore to the end (= a replay of every segment
# from empty, = the mount), to an LSN in the middle of a segment (= replay
# --until, != one LSN later), to times between batches (local, UTC offset,
# @epoch); the copy keeps modes, owners, times, xattrs, hard links, fifos,
# symlinks (never followed) and deep paths; the open segment last, up to its
# last record; refusals (non-empty target, gaps, no LSN, foreign data set,
# --until out of range) with one clear line and nothing written; a time past
# the last record is an error naming the target and the last point reached,
# --until latest restores whatever is there.
set -eu
. "$(dirname "$0")/lib.sh"
command -v setfattr >/dev/null || skip "no setfattr (attr)"
[ "$(id -u)" = 0 ] || skip "needs root (owners, chown)"

M=$T/mnt
D=$T/data
J=$M/.mirrorfs/journal
SNAP=$T/snap

rotate() {
	local name
	name=$("$CTL" rotate "$M") || fail "rotate failed"
	[ -f "$J/$name" ] || fail "rotated segment '$name' not in journal/"
	echo "$name"
}
# restore_ok OUT ARGS...: restore into OUT, must succeed quietly (stderr is not a terminal).
restore_ok() {
	local out=$1
	shift
	"$CTL" restore --to "$out" "$@" >"$T/restore.out" 2>"$T/restore.err" ||
		{ cat "$T/restore.err" >&2; fail "restore $* failed"; }
	[ ! -s "$T/restore.err" ] || fail "restore wrote to stderr: $(cat "$T/restore.err")"
	[ "$(wc -l <"$T/restore.out")" = 1 ] || fail "not one summary line: $(cat "$T/restore.out")"
}
# restore_refused OUT PATTERN ARGS...: restore must fail with one line matching PATTERN.
restore_refused() {
	local out=$1 pat=$2
	shift 2
	if "$CTL" restore --to "$out" "$@" >"$T/restore.out" 2>"$T/restore.err"; then
		fail "restore $* succeeded"
	fi
	[ "$(wc -l <"$T/restore.err")" = 1 ] || fail "not one error line: $(cat "$T/restore.err")"
	grep -q "^mirrorctl restore: .*$pat" "$T/restore.err" ||
		fail "expected '$pat': $(cat "$T/restore.err")"
	echo "   refused: $(cat "$T/restore.err")"
}
# replay_ref DEST [--until LSN]: every closed segment from empty.
replay_ref() {
	local dest=$1
	shift
	rm -rf "$dest"
	mkdir -p "$dest"
	"$CTL" replay --to "$dest" "$@" $(segs_upto "$J") >"$T/replay.log" 2>&1 ||
		{ cat "$T/replay.log" >&2; fail "replay $*"; }
}
summary_is() { # summary_is LSN SNAPSHOT_LSN
	grep -q "^restored to LSN $1 (snapshot $2, $(($1 - $2)) records replayed, [0-9]* bytes copied) in [0-9.]* s$" \
		"$T/restore.out" || fail "summary: $(cat "$T/restore.out"), expected LSN $1"
}

mkdir -p "$D"
mfs_mount "$D" "$M"

step "batch 1, rotate, a copy of the data folder as the snapshot"
mkdir -p "$M/db/sub/deep" "$M/db/old"
head -c 300000 /dev/urandom >"$M/db/big"
dd if=/dev/urandom of="$M/db/sparse" bs=4k count=2 seek=100 status=none
printf 'hello\n' >"$M/db/small"
chmod 640 "$M/db/small"
ln "$M/db/small" "$M/db/sub/small.hard"
ln -s ../small "$M/db/sub/link"
ln -s /etc/passwd "$M/db/abs-link"
ln -s ../../../../../../../etc "$M/db/sub/deep/up"
mkfifo "$M/db/fifo"
setfattr -n user.color -v blue "$M/db/big"
chown 1234:5678 "$M/db/big"
install -m 4750 /dev/null "$M/db/setuid"
echo tmp >"$M/db/old/tmp"
touch -d '2001-02-03 04:05:06.123456789' "$M/db/small"
A=$(rotate)
N=$(seg_last "$A")
DS=$(status_field "$M" dataset)
[ "$N" -gt 10 ] || fail "batch 1 too small ($N)"
mkdir "$SNAP"
cp -a "$D/." "$SNAP/"
rm -rf "$SNAP/.mirrorfs"
setfattr -n user.mirrorfs.lsn -v "$N" "$SNAP"
setfattr -n user.mirrorfs.dataset -v "$DS" "$SNAP"
verify_equal "$M" "$SNAP" || fail "the stand-in snapshot differs from the mount"

sleep 0.55
T1_LOCAL=$(TZ=America/New_York date +%Y-%m-%dT%H:%M:%S.%N)
T1_UTC=$(date -u +%Y-%m-%dT%H:%M:%SZ) # whole seconds: a little earlier, still before batch 2
sleep 0.6

step "batch 2 over two segments, batch 3"
printf 'appended\n' >>"$M/db/small"
truncate -s 1000 "$M/db/big"
mv "$M/db/sub/link" "$M/db/link2"
rm "$M/db/old/tmp"
rmdir "$M/db/old"
setfattr -x user.color "$M/db/big"
chmod 600 "$M/db/sparse"
B=$(rotate)
for i in 1 2 3 4 5 6; do printf 'step%d\n' $i >>"$M/db/log"; done
mkdir "$M/db/new"
echo n >"$M/db/new/file"
C=$(rotate)
L2=$(seg_last "$C")
[ "$(status_field "$M" last_lsn)" = "$L2" ] || fail "status last_lsn $(status_field "$M" last_lsn) != $L2"
sleep 0.55
T2_EPOCH=@$(date +%s.%N)
T2_OFFSET=$(TZ=Asia/Kolkata date +%Y-%m-%dT%H:%M:%S.%N%:z)
sleep 0.6
rm "$M/db/sub/small.hard"
dd if=/dev/urandom of="$M/db/big" bs=1k count=3 conv=notrunc status=none
echo late >"$M/late"
Dseg=$(rotate)
L3=$(seg_last "$Dseg")
[ "$(seg_first "$B")" = $((N + 1)) ] || fail "segments do not follow each other"

step "--dry-run: the plan on stdout, nothing written (the target not created)"
find "$SNAP" "$J" -printf '%p %y %s %m %T@\n' | sort >"$T/dry-before"
"$CTL" restore --dry-run --snapshot "$SNAP" --segments "$J" --to "$T/out-dry" >"$T/dry.out" \
	2>"$T/dry.err" || fail "restore --dry-run exited $?: $(cat "$T/dry.err")"
find "$SNAP" "$J" -printf '%p %y %s %m %T@\n' | sort >"$T/dry-after"
diff "$T/dry-before" "$T/dry-after" >&2 || fail "restore --dry-run changed the snapshot or segments"
[ ! -e "$T/out-dry" ] || fail "restore --dry-run created the target"
grep -q "would copy the snapshot '$SNAP' (LSN $N," "$T/dry.out" &&
	grep -q "would replay [1-9][0-9]* segments .*\.\.$L3,.* up to the end" "$T/dry.out" ||
	fail "restore --dry-run's plan: $(cat "$T/dry.out")"

step "(a) restore to the end = replay of every segment from empty = the mount"
restore_ok "$T/out-all" --snapshot "$SNAP" --segments "$J"
summary_is "$L3" "$N"
replay_ref "$T/ref-all"
verify_equal "$T/ref-all" "$T/out-all" || fail "restore differs from a full replay"
verify_equal "$M" "$T/out-all" || fail "restore differs from the mount"
[ "$(cat "$T/out-all/late")" = late ] || fail "batch 3 missing"
[ -p "$T/out-all/db/fifo" ] || fail "fifo not restored"
[ ! -e "$T/out-all/.mirrorfs" ] || fail ".mirrorfs restored"
[ -z "$(getfattr --absolute-names -d -m '^user\.mirrorfs' "$T/out-all" 2>/dev/null)" ] ||
	fail "the snapshot's own attributes were copied onto the target"

step "(b) --until an LSN in the middle of a segment = replay --until, != one LSN later"
mapfile -t W < <("$CTL" dump "$J/$C" | awk '$3 == "write" && $4 == "'"'db/log'"'" { print $1 }')
[ ${#W[@]} = 6 ] || fail "expected 6 writes to db/log in '$C', got ${#W[@]}"
X=$((W[2] - 1))
[ "$X" -ge "$(seg_first "$C")" ] && [ "$X" -lt "$L2" ] || fail "LSN $X not inside '$C'"
restore_ok "$T/out-x" --snapshot "$SNAP" --segments "$J" --until "$X"
summary_is "$X" "$N"
replay_ref "$T/ref-x" --until "$X"
verify_equal "$T/ref-x" "$T/out-x" || fail "restore --until $X differs from replay --until $X"
replay_ref "$T/ref-x1" --until $((X + 1))
if "$CTL" verify "$T/ref-x1" "$T/out-x" >/dev/null 2>&1; then
	fail "restore --until $X equals the state at LSN $((X + 1))"
fi
[ "$(cat "$T/out-x/db/log")" = "$(printf 'step1\nstep2')" ] || fail "db/log at $X: $(cat "$T/out-x/db/log")"

step "(c) --until TIME: between batches 1 and 2 = the snapshot; between 2 and 3 = up to LSN $L2"
for t in "$T1_LOCAL" "$T1_UTC"; do
	rm -rf "$T/out-t1"
	TZ=America/New_York restore_ok "$T/out-t1" --snapshot "$SNAP" --segments "$J" --until "$t"
	summary_is "$N" "$N"
	verify_equal "$SNAP" "$T/out-t1" || fail "--until $t is not the first batch only"
	[ ! -e "$T/out-t1/db/log" ] && [ -e "$T/out-t1/db/old/tmp" ] || fail "--until $t: batch 2 applied"
done
replay_ref "$T/ref-l2" --until "$L2"
for t in "$T2_EPOCH" "$T2_OFFSET"; do
	rm -rf "$T/out-t2"
	restore_ok "$T/out-t2" --snapshot "$SNAP" --segments "$J" --until "$t"
	summary_is "$L2" "$N"
	verify_equal "$T/ref-l2" "$T/out-t2" || fail "--until $t is not batches 1 and 2"
	[ ! -e "$T/out-t2/late" ] && [ -e "$T/out-t2/db/new/file" ] || fail "--until $t: wrong batches"
done

step "the copy: modes, owners, times, xattrs, hard links, symlinks, sparse files"
restore_ok "$T/out-n" --snapshot "$SNAP/" --segments "$J" --until "$N"
summary_is "$N" "$N"
# before anything reads them: access times too (restore reads with O_NOATIME)
for f in . db db/sub db/small db/big db/setuid db/fifo db/sub/deep/up db/abs-link; do
	[ "$(stat -c '%f %u %g %Y %X' "$SNAP/$f")" = "$(stat -c '%f %u %g %Y %X' "$T/out-n/$f")" ] ||
		fail "'$f': $(stat -c '%f %u %g %Y %X' "$SNAP/$f") != $(stat -c '%f %u %g %Y %X' "$T/out-n/$f")"
done
[ "$(stat -c %y "$T/out-n/db/small")" = "$(stat -c %y "$SNAP/db/small")" ] || fail "ns mtime"
[ "$(stat -c %u:%g:%a "$T/out-n/db/big")" = 1234:5678:644 ] || fail "owner of db/big"
[ "$(stat -c %a "$T/out-n/db/setuid")" = 4750 ] || fail "setuid bit lost"
[ "$(getfattr --absolute-names --only-values -n user.color "$T/out-n/db/big")" = blue ] || fail "xattr lost"
[ "$(stat -c %i "$T/out-n/db/small")" = "$(stat -c %i "$T/out-n/db/sub/small.hard")" ] ||
	fail "hard link not kept"
[ "$(readlink "$T/out-n/db/sub/deep/up")" = ../../../../../../../etc ] || fail "symlink target"
[ "$(readlink "$T/out-n/db/abs-link")" = /etc/passwd ] || fail "absolute symlink"
cmp "$SNAP/db/sparse" "$T/out-n/db/sparse" || fail "sparse file content"
# after the atime checks: reading changes access times
verify_equal "$SNAP" "$T/out-n" --times || fail "copy differs"

step "deep paths (longer than PATH_MAX), --lsn, an empty segment folder"
mkdir -p "$T/deep/snap" "$T/deep/segs"
long=$(printf 'd%.0s' $(seq 200))
(cd "$T/deep/snap" && for i in $(seq 30); do mkdir "$long$i" && cd "$long$i"; done && echo bottom >leaf)
restore_ok "$T/deep/out" --snapshot "$T/deep/snap" --lsn 7 --segments "$T/deep/segs"
summary_is 7 7
[ "$(cd "$T/deep/out" && for i in $(seq 30); do cd "$long$i"; done && cat leaf)" = bottom ] ||
	fail "deep file not restored"

step "the open segment, last, up to its last record"
echo tail >"$M/open-tail"
mkdir "$M/db/opendir"
mkdir -p "$T/with-open"
cp "$J"/*.mfsj "$T/with-open/"
first=$(status_field "$M" open_segment_first_lsn)
last=$(status_field "$M" last_lsn)
cp "$M/.mirrorfs/current" "$T/with-open/$(printf '%020d-09999999999999999999.mfsj' "$first")"
echo not-a-segment >"$T/with-open/notes.txt"
"$CTL" restore --snapshot "$SNAP" --segments "$T/with-open" --to "$T/out-open" >"$T/restore.out" \
	2>"$T/restore.err" || { cat "$T/restore.err"; fail "restore with the open segment"; }
[ "$(status_field "$M" last_lsn)" = "$last" ] || fail "the mount changed by itself"
summary_is "$last" "$N"
grep -q "torn\|no trailer\|open" "$T/restore.err" || fail "open segment not reported: $(cat "$T/restore.err")"
echo "   $(cat "$T/restore.err")"
verify_equal "$M" "$T/out-open" || fail "restore with the open segment differs from the mount"

step "progress: a line on a terminal, none otherwise"
if command -v script >/dev/null; then
	script -qec "'$CTL' restore --snapshot '$SNAP' --segments '$J' --to '$T/out-tty'" /dev/null \
		>"$T/tty.out" </dev/null || fail "restore on a terminal failed: $(cat "$T/tty.out")"
	grep -q $'\r''copy: ' "$T/tty.out" || fail "no progress line: $(od -c "$T/tty.out" | head)"
	grep -q "^restored to LSN $L3 " <(tr '\r' '\n' <"$T/tty.out" | sed 's/\x1b\[K//g') ||
		fail "no summary on a terminal"
	verify_equal "$T/ref-all" "$T/out-tty" || fail "restore on a terminal differs"
else
	echo "(no script(1): terminal progress not checked)"
fi

step "(d) refusals"
mkdir -p "$T/full"
echo keep >"$T/full/precious"
restore_refused "$T/full" "not empty" --snapshot "$SNAP" --segments "$J"
[ "$(ls -A "$T/full")" = precious ] && [ "$(cat "$T/full/precious")" = keep ] || fail "non-empty target touched"
echo file >"$T/a-file"
restore_refused "$T/a-file" "not a directory" --snapshot "$SNAP" --segments "$J"

mkdir -p "$T/gap-mid" "$T/gap-start"
cp "$J/$A" "$J/$B" "$J/$Dseg" "$T/gap-mid/"
restore_refused "$T/out-gap" "LSN $(seg_first "$C")\.\.$L2 missing" --snapshot "$SNAP" --segments "$T/gap-mid"
[ ! -e "$T/out-gap" ] || fail "target created despite a gap"
cp "$J/$A" "$J/$C" "$J/$Dseg" "$T/gap-start/"
restore_refused "$T/out-gap" "LSN $((N + 1))\.\.$(seg_last "$B") missing" --snapshot "$SNAP" \
	--segments "$T/gap-start"
# a gap the names hide: a segment renamed to cover the missing one
cp "$J/$Dseg" "$T/gap-mid/$(printf '%020d-%020d.mfsj' "$(seg_first "$C")" "$L3")"
rm "$T/gap-mid/$Dseg"
restore_refused "$T/out-gap" "name does not match" --snapshot "$SNAP" --segments "$T/gap-mid"
rm -rf "$T/out-gap"

cp -a "$SNAP" "$T/snap-nolsn"
setfattr -x user.mirrorfs.lsn "$T/snap-nolsn"
restore_refused "$T/out-nolsn" "no LSN .*--lsn" --snapshot "$T/snap-nolsn" --segments "$J"
[ ! -e "$T/out-nolsn" ] || fail "target created without an LSN"
restore_ok "$T/out-nolsn" --snapshot "$T/snap-nolsn" --lsn "$N" --segments "$J"
verify_equal "$T/ref-all" "$T/out-nolsn" || fail "restore with --lsn differs"

cp -a "$SNAP" "$T/snap-foreign"
setfattr -n user.mirrorfs.dataset -v 0badc0de-1111-2222-3333-444455556666 "$T/snap-foreign"
restore_refused "$T/out-foreign" "foreign data set" --snapshot "$T/snap-foreign" --segments "$J"
rm -rf "$T/out-foreign"

restore_refused "$T/out-r" "before the snapshot's LSN $N" --snapshot "$SNAP" --segments "$J" --until $((N - 1))
restore_refused "$T/out-r" "past the last segment" --snapshot "$SNAP" --segments "$J" --until $((L3 + 100))
restore_refused "$T/out-r" "neither an LSN nor a time" --snapshot "$SNAP" --segments "$J" --until 2024-13-01T00:00:00
restore_refused "$T/out-r" "cannot list the segments" --snapshot "$SNAP" --segments "$T/nope"
[ ! -e "$T/out-r" ] || fail "target created by a refused restore"

step "a target time past the last record is an error naming both; --until latest is not"
# (issue 18) the segments end at L3: a later time cannot be known to be reached
late=@$(( $(date +%s) + 3600 ))
restore_refused "$T/out-late" "--until .* not reached: the segments in '$J' end at LSN $L3 (.*Z)" \
	--snapshot "$SNAP" --segments "$J" --until "$late"
grep -q "'$T/out-late' holds that point, not the target" "$T/restore.err" ||
	fail "the refusal does not say what the target folder holds: $(cat "$T/restore.err")"
mkdir -p "$T/no-later"
restore_refused "$T/out-late2" "not reached: no record after the snapshot's LSN $N" \
	--snapshot "$SNAP" --segments "$T/no-later" --until "$late"
restore_ok "$T/out-latest" --snapshot "$SNAP" --segments "$J" --until latest
summary_is "$L3" "$N"
verify_equal "$T/ref-all" "$T/out-latest" || fail "--until latest differs from a full replay"

mfs_umount "$M"
echo PASS
