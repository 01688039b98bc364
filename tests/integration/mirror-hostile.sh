#!/bin/bash
# mirror-hostile.sh - segments the primary can make that must apply, and
# hostile ones that must be refused whole (nothing of them applied), by
# mirrord --once (also in --naive mode) and by mirrorctl replay alike:
#  - the reserved .mirrorfs folder reached through a symlink inside the root;
#  - EFBIG: a truncate and a write past the largest file, each followed by
#    the primary's compensating truncate (applied: the primary's failure),
#    and a write at 2^62 alone (refused);
#  - a 65,536-byte xattr value (refused, not retried for ever), unless the
#    primary's compensation follows (its ENOSPC: applied), also with other
#    files' records between a failure and its compensation;
#  - a write or truncate of a name the same segment made a FIFO, folder or
#    symlink (refused whole: nothing applied, mirrord does not block);
#  - a 1 TiB fallocate (refused: past the allowed share of the file system);
#  - a FIFO named like a segment in incoming/ (skipped, mirrord does not hang);
#  - a folder tree deeper than 256 levels removed.
set -eu
MFS_NO_FUSE=1
. "$(dirname "$0")/lib.sh"
U=0badc0de-1111-2222-3333-444455556666

newmirror() { # newmirror NAME: fresh incoming/data/state, segments from the script on stdin
	local n=$1
	rm -rf "${T:?}/$n"
	mkdir -p "$T/$n/in" "$T/$n/data" "$T/$n/state" "$T/$n/gen" "$T/$n/rep"
	"$MKSEG" "$T/$n/gen" $U 1 > "$T/$n/names"
	cp "$T/$n/gen/"*.mfsj "$T/$n/in/"
}
run_once() { # run_once NAME [args]
	local n=$1
	shift
	timeout 60 "$MIRRORD" --incoming "$T/$n/in" --data "$T/$n/data" --state "$T/$n/state" \
		--once ${MIRRORD_ARGS:-} "$@"
}
replay() { # replay NAME: mirrorctl replay of the generated segments into NAME/rep
	local n=$1
	(cd "$T/$n/gen" && timeout 60 "$CTL" replay --to "$T/$n/rep" $(cat "$T/$n/names"))
}
refused_whole() { # refused_whole NAME PATTERN: quarantined, reason matches, nothing applied
	local n=$1 pat=$2 reason
	if run_once "$n" 2>/dev/null; then fail "$n: mirrord --once exited 0"; fi
	reason=$(cat "$T/$n/state/quarantine/"*.reason 2>/dev/null) || fail "$n: not quarantined"
	echo "   $n: $reason"
	echo "$reason" | grep -q -- "$pat" || fail "$n: reason does not say '$pat'"
	[ -z "$(ls -A "$T/$n/data" | grep -v '^\.mirrorfs$')" ] ||
		fail "$n: records before the refused one were applied: $(ls -A "$T/$n/data")"
	if replay "$n" 2>"$T/$n/replay.err"; then fail "$n: mirrorctl replay exited 0"; fi
	echo "   $n (replay): $(cat "$T/$n/replay.err")"
	[ -z "$(ls -A "$T/$n/rep")" ] ||
		fail "$n: mirrorctl replay applied records of a refused segment: $(ls -A "$T/$n/rep")"
}

step "the reserved .mirrorfs is unreachable through a symlink inside the root"
printf '%s\n' "mknod a 0100644" "write a 0 before" "symlink m .mirrorfs" "write m/state 0 pwned" \
	"mknod m/planted 0100644" "unlink m/keep" | newmirror reserved
mkdir -p "$T/reserved/data/.mirrorfs"
echo journal-state > "$T/reserved/data/.mirrorfs/state"
echo keep > "$T/reserved/data/.mirrorfs/keep"
printf 'data_set %s\napplied_lsn 0\n' $U > "$T/reserved/state/applied" # a rejoined data folder
refused_whole reserved "LSN 4 write 'm/state'"
[ "$(cat "$T/reserved/data/.mirrorfs/state")" = journal-state ] || fail "journal state overwritten"
[ -e "$T/reserved/data/.mirrorfs/keep" ] || fail ".mirrorfs/keep removed"
[ ! -e "$T/reserved/data/.mirrorfs/planted" ] || fail ".mirrorfs/planted made"
# a symlink made earlier (applied), used by a later segment
printf '%s\n' "symlink self ." "close" "write self/.mirrorfs/state 0 pwned" | newmirror reserved2
mkdir -p "$T/reserved2/data/.mirrorfs"
echo journal-state > "$T/reserved2/data/.mirrorfs/state"
printf 'data_set %s\napplied_lsn 0\n' $U > "$T/reserved2/state/applied"
if run_once reserved2 2>/dev/null; then fail "reserved2: mirrord --once exited 0"; fi
[ "$(cat "$T/reserved2/data/.mirrorfs/state")" = journal-state ] ||
	fail "journal state overwritten through 'self -> .'"
echo "   reserved2: $(cat "$T/reserved2/state/quarantine/"*.reason)"

step "EFBIG: the primary's failures and their compensations apply; a write at 2^62 alone does not"
printf '%s\n' "mknod f 0100644" "write f 0 hello" "truncate f 999999999999999" "truncate f 5" \
	"write f 17592186044416 x" "truncate f 5" "write f 5 more" | newmirror efbig
run_once efbig || fail "efbig: a compensated EFBIG stopped the mirror: $(cat "$T/efbig/state/quarantine/"*.reason 2>/dev/null)"
[ "$(cat "$T/efbig/data/f")" = hellomore ] || fail "efbig: f is '$(cat "$T/efbig/data/f")'"
[ "$(applied_lsn "$T/efbig/state")" = 7 ] || fail "efbig: applied LSN $(applied_lsn "$T/efbig/state"), not 7"
replay efbig >/dev/null || fail "efbig: mirrorctl replay failed"
[ "$(cat "$T/efbig/rep/f")" = hellomore ] || fail "efbig: replay made f '$(cat "$T/efbig/rep/f")'"
printf '%s\n' "mknod g 0100644" "write g 4611686018427387904 x" | newmirror w62
refused_whole w62 "LSN 2 write 'g': offset + length 4611686018427387905 is past the largest file size"

step "a 65,536-byte xattr value is refused, not retried for ever"
{ echo "mknod x 0100644"; echo "setxattr x user.big $(head -c 65536 /dev/zero | tr '\0' v)"; } |
	newmirror xattr
refused_whole xattr "LSN 2 setxattr 'x': value: 65536 bytes"

step "the primary's xattr failures and EFBIG, compensated with other files' records between"
v3000=$(head -c 3000 /dev/zero | tr '\0' a)
{ echo "mknod x 0100644"; echo "setxattr x user.a $v3000"
  echo "setxattr x user.big $(head -c 65536 /dev/zero | tr '\0' v)" # ENOSPC on the primary
  echo "mknod other 0100644"; echo "write other 0 between"; echo "removexattr x user.big"
  echo "setxattr x user.b $v3000" # fits alone, not next to user.a: ENOSPC on the primary too
  echo "write other 7 -again"; echo "removexattr x user.b"
  echo "truncate other 999999999999999"; echo "mknod third 0100644"; echo "truncate other 13"
  echo "setxattr x user.c ok"; } | newmirror xcomp
run_once xcomp 2>"$T/xcomp.err" ||
	fail "xcomp: compensated failures stopped the mirror: $(cat "$T/xcomp.err")"
got=$(getfattr --absolute-names -d "$T/xcomp/data/x" 2>/dev/null | grep -o '^user\.[a-z]*' | tr '\n' ' ')
[ "$got" = "user.a user.c " ] || fail "xcomp: x has xattrs '$got'"
[ "$(cat "$T/xcomp/data/other")" = between-again ] || fail "xcomp: other is '$(cat "$T/xcomp/data/other")'"
replay xcomp >/dev/null 2>&1 || fail "xcomp: mirrorctl replay failed"
[ "$(cat "$T/xcomp/rep/other")" = between-again ] || fail "xcomp: replay made other '$(cat "$T/xcomp/rep/other")'"

step "a data change of a name the segment made a FIFO, folder or symlink is refused whole"
printf '%s\n' "mknod a 0100644" "write a 0 before" "mknod p 010644" "write p 0 blocks" | newmirror wfifo
refused_whole wfifo "LSN 4 write 'p': path: not a regular file (LSN 3 made a FIFO there)"
printf '%s\n' "mknod a 0100644" "mkdir d 0755" "truncate d 5" | newmirror tdir
refused_whole tdir "LSN 3 truncate 'd': path: not a regular file (LSN 2 made a folder there)"
printf '%s\n' "mknod a 0100644" "symlink s a" "rename s u" "link u v" "write v 0 x" | newmirror wlink
refused_whole wlink "LSN 5 write 'v': path: not a regular file (LSN 2 made a symlink there)"
printf '%s\n' "mknod p 010644" "unlink p" "mknod p 0100644" "write p 0 fine" | newmirror wok
run_once wok 2>/dev/null || fail "wok: a regular file made again was refused"
[ "$(cat "$T/wok/data/p")" = fine ] || fail "wok: p is '$(cat "$T/wok/data/p")'"

step "--naive mode runs the same preflight"
MIRRORD_ARGS=--naive
printf '%s\n' "mknod a 0100644" "write a 0 before" "symlink m .mirrorfs" "write m/state 0 pwned" |
	newmirror nreserved
refused_whole nreserved "LSN 4 write 'm/state': goes through the symlink made at LSN 3"
printf '%s\n' "mknod a 0100644" "write a 0 before" "mknod p 010644" "write p 0 blocks" | newmirror nfifo
refused_whole nfifo "LSN 4 write 'p': path: not a regular file"
printf '%s\n' "mknod f 0100644" "write f 0 hello" "truncate f 999999999999999" "mknod g 0100644" \
	"truncate f 5" "write f 17592186044416 x" "truncate f 5" "write f 5 more" | newmirror nefbig
run_once nefbig 2>"$T/nefbig.err" || fail "nefbig: a compensated EFBIG stopped the naive mirror: $(cat "$T/nefbig.err")"
[ "$(cat "$T/nefbig/data/f")" = hellomore ] || fail "nefbig: f is '$(cat "$T/nefbig/data/f")'"
MIRRORD_ARGS=

step "a 1 TiB fallocate is refused: past the allowed share of the file system"
printf '%s\n' "mknod big 0100644" "fallocate big 0 0 1099511627776" | newmirror falloc
refused_whole falloc "LSN 2 fallocate 'big': length: 1099511627776 bytes, and the segment's fallocate records allocate up to 1099511627776 bytes"
df_used=$(df --output=pcent "$T" | tail -1)
echo "   file system use after: $df_used"

step "a FIFO named like a segment in incoming/ is skipped without blocking"
rm -rf "$T/fifo"
mkdir -p "$T/fifo/in" "$T/fifo/data" "$T/fifo/state"
mkfifo "$T/fifo/in/00000000000000000001-00000000000000000001.mfsj"
start=$(date +%s)
if run_once fifo 2>"$T/fifo/err"; then fail "fifo: --once exited 0"; fi
[ $(( $(date +%s) - start )) -lt 30 ] || fail "fifo: mirrord --once hung on the FIFO"
grep -q "not a regular file" "$T/fifo/err" || fail "fifo: not reported: $(cat "$T/fifo/err")"
[ -p "$T/fifo/in/00000000000000000001-00000000000000000001.mfsj" ] || fail "fifo: FIFO moved"
rc=0
timeout 30 "$CTL" replay --to "$T/fifo/data" \
	"$T/fifo/in/00000000000000000001-00000000000000000001.mfsj" 2>/dev/null || rc=$?
[ $rc -ne 124 ] || fail "fifo: mirrorctl replay hung on the FIFO"
[ $rc -ne 0 ] || fail "fifo: mirrorctl replay of a FIFO exited 0"

step "a tree deeper than 256 levels is removed"
{
	p=t
	echo "mkdir t 0755"
	for i in $(seq 300); do p=$p/d; echo "mkdir $p 0755"; echo "mknod $p/f 0100644"; done
	echo "close"
	echo "rmdir t"
} | newmirror deep
run_once deep || fail "deep: $(cat "$T/deep/state/quarantine/"*.reason 2>/dev/null)"
[ ! -e "$T/deep/data/t" ] || fail "deep: the tree is still there"

echo "PASS"
