#!/bin/bash
# SPDX-License-Identifier: MIT
# cli.sh - the command line as documented (issue 21, item 6): --help for
# every mirrorctl subcommand (on stdout, exit 0), a description for every
# mirrord option, --version for every program, usage errors exit 2, a
# rotate with nothing to close prints no empty line, the mirrord(8) page
# documents every option, the bash completion completes subcommands.
set -eu
. "$(dirname "$0")/lib.sh"

D=$MFS_BUILD/daemon/mirrord
COMP=$MFS_SRC/tools/mirrorfs.bash-completion

# fingerprint DIR...: every entry's path, type, size, mode, mtime, and file contents
fingerprint() {
	find "$@" -printf '%p %y %s %m %T@\n' | sort
	find "$@" -type f -exec md5sum {} + | sort
}

step "mirrorctl SUBCOMMAND --help: usage on stdout, exit 0, nothing else done"
cd "$T"
for c in rotate status checkpoint lock unlock snapshot dump verify replay promote \
	restore rejoin sample; do
	for h in --help -h; do
		out=$("$CTL" "$c" "$h" 2>"$T/err") || fail "mirrorctl $c $h exited $?: $(cat "$T/err")"
		grep -q "usage: mirrorctl $c" <<<"$out" || fail "mirrorctl $c $h printed no usage: $out"
	done
done
[ -z "$(ls -A "$T")" ] || [ "$(ls -A "$T")" = err ] || fail "a --help wrote files: $(ls -A "$T")"

step "--version for every program"
for p in "$CTL" "$FS" "$D" "$SHIP"; do
	v=$("$p" --version 2>&1) || fail "'$p --version' exited $?: $v"
	grep -Eq "^$(basename "$p") [0-9]" <<<"$v" || fail "'$p --version' printed '$v'"
done

pv=$(sed -n "s/^ *version: '\(.*\)',/\1/p" "$MFS_SRC/meson.build")
[ "$("$SHIP" --version)" = "mirrorfs-ship $pv" ] || fail "mirrorfs-ship --version is not $pv"

step "mirrord --help describes every option; mirrord(8) documents every option"
"$D" --help >"$T/dhelp"
opts=$(grep -o '{ "[a-z-]*", ' "$MFS_SRC/daemon/main.c" | sed 's/{ "\(.*\)", /\1/')
for o in $opts; do
	grep -Eq -- "^ +(-[a-z], )?--$o( [A-Z]+)? {2,}[a-z]" "$T/dhelp" ||
		fail "mirrord --help has no description for --$o"
	grep -q -- "^\.B[IR]\? .*\\\\-\\\\-${o//-/\\\\-}" "$MFS_SRC/docs/mirrord.8" ||
		fail "mirrord(8) does not document --$o"
done
grep -q '^\.BR\? .*\\-v\b' "$MFS_SRC/docs/mirrord.8" || fail "mirrord(8) does not document -v"

step "logs: a failing path is named; stderr lines carry the time and the level"
mkdir -p "$T/d1"
rc=0; "$D" --incoming "$T/no-such" --data "$T/d1" --once 2>"$T/derr" || rc=$?
[ "$rc" = 1 ] || fail "mirrord on a missing --incoming exited $rc"
grep -q "'$T/no-such'" "$T/derr" || fail "mirrord did not name the missing folder: $(cat "$T/derr")"
grep -Eq '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:]{8}\.[0-9]{3}[+-][0-9]{4} mirrord\[[0-9]+\] error: ' \
	"$T/derr" || fail "mirrord's stderr has no time and level: $(cat "$T/derr")"
rm -rf "$T/d1" "$T/derr"

step "promote --dry-run: the plan on stdout, nothing written"
U=0badc0de-1111-2222-3333-444455556666
mkdir -p "$T/pin" "$T/pdata"
printf 'mknod first 0100644\nwrite first 0 @4096:1\nclose\n' | "$MKSEG" "$T/pin" $U 1 >/dev/null
"$D" --once --incoming "$T/pin" --data "$T/pdata" 2>"$T/perr" || fail "mirrord --once: $(cat "$T/perr")"
printf 'mknod second 0100644\nclose\n' | "$MKSEG" "$T/pin" $U 3 2 >/dev/null
fingerprint "$T/pin" "$T/pdata" >"$T/before"
"$CTL" promote --dry-run --data "$T/pdata" --state "$T/pin/.mirrord" --incoming "$T/pin" \
	>"$T/plan" 2>"$T/perr" || fail "promote --dry-run exited $?: $(cat "$T/perr")"
fingerprint "$T/pin" "$T/pdata" >"$T/after"
diff "$T/before" "$T/after" >&2 || fail "promote --dry-run changed something"
grep -q "applied up to LSN 2" "$T/plan" && grep -q "would apply what waits in '$T/pin'" "$T/plan" ||
	fail "promote --dry-run's plan: $(cat "$T/plan")"
# promote applies INCOMING itself: a mirrorctl with no mirrord beside it or in PATH
mkdir -p "$T/ctl-alone"
cp "$CTL" "$T/ctl-alone/mirrorctl"
PATH=/usr/bin:/bin "$T/ctl-alone/mirrorctl" promote --data "$T/pdata" --state "$T/pin/.mirrord" \
	--incoming "$T/pin" >"$T/plan" 2>&1 || fail "promote after the dry run: $(cat "$T/plan")"
grep -q "applied '$T/pin' up to LSN 3" "$T/plan" || fail "promote's report: $(cat "$T/plan")"
[ -f "$T/pdata/.mirrorfs/promoted" ] && [ -f "$T/pdata/second" ] || fail "promote did not promote"
rm -rf "$T/pin" "$T/pdata" "$T/perr" "$T/plan" "$T/before" "$T/after"

step "usage errors exit 2"
rc=0; "$CTL" snapshot remove /nonexistent x 2>/dev/null || rc=$?
[ "$rc" = 2 ] || fail "snapshot remove (no such action) exited $rc, not 2"
rc=0; "$D" --bogus 2>/dev/null || rc=$?
[ "$rc" = 2 ] || fail "mirrord --bogus exited $rc, not 2"
rc=0; "$SHIP" --bogus 2>/dev/null || rc=$?
[ "$rc" = 2 ] || fail "mirrorfs-ship --bogus exited $rc, not 2"

step "rotate with nothing to close: no empty line on stdout"
mkdir -p "$T/data"
mfs_mount "$T/data" "$T/mnt"
out=$("$CTL" rotate "$T/mnt" 2>"$T/err" | od -c | sed "/^0000000$/d")
[ -z "$out" ] || fail "rotate with nothing to close printed: $out"
grep -q "nothing to close" "$T/err" || fail "rotate with nothing to close said: $(cat "$T/err")"
echo x >"$T/mnt/f"
seg=$("$CTL" rotate "$T/mnt")
[ -n "$seg" ] && [ -f "$T/data/.mirrorfs/journal/$seg" ] || fail "rotate printed '$seg'"
mfs_umount "$T/mnt"

step "rejoin --dry-run: the plan on stdout, nothing written or created"
# the old primary's folder, and the new primary's segments: they continue
# the same data set right after the old primary's last LSN
mkdir -p "$T/rin"
ds=$(sed -n 's/^dataset=//p' "$T/data/.mirrorfs/state")
last=$(sed -n 's/^last=//p' "$T/data/.mirrorfs/state")
[ -n "$ds" ] && [ -n "$last" ] || fail "no dataset= or last= in '$T/data/.mirrorfs/state'"
printf 'mknod after 0100644\nclose\n' | "$MKSEG" "$T/rin" "$ds" $((last + 1)) 9 >/dev/null
fingerprint "$T/data" "$T/rin" >"$T/before"
"$CTL" rejoin --dry-run --data "$T/data" --state "$T/rstate" --incoming "$T/rin" >"$T/plan" \
	2>"$T/err" || fail "rejoin --dry-run exited $?: $(cat "$T/err")"
fingerprint "$T/data" "$T/rin" >"$T/after"
diff "$T/before" "$T/after" >&2 || fail "rejoin --dry-run changed something"
[ ! -e "$T/rstate" ] || fail "rejoin --dry-run created the state folder"
grep -q "would set the applied LSN in '$T/rstate/applied'" "$T/plan" ||
	fail "rejoin --dry-run's plan: $(cat "$T/plan")"
"$CTL" rejoin --data "$T/data" --state "$T/rstate" --incoming "$T/rin" >"$T/plan" 2>&1 ||
	fail "rejoin after the dry run: $(cat "$T/plan")"
[ -f "$T/rstate/applied" ] || fail "rejoin wrote no state"

step "the README lists every mirrorctl command of mirrorctl --help"
cmds=$("$CTL" --help | sed -n '/^commands:/,$s/^  \([a-z0-9]\+\) .*/\1/p')
[ "$(wc -w <<<"$cmds")" -ge 10 ] || fail "mirrorctl --help lists too few commands: $cmds"
for c in $cmds; do
	grep -q "^mirrorctl $c " "$MFS_SRC/README.md" || fail "README.md does not list 'mirrorctl $c'"
done

step "bash completion"
[ -f "$COMP" ] || fail "no bash completion file"
bash -n "$COMP"
got=$(bash -c '. "$1"; COMP_WORDS=(mirrorctl pro); COMP_CWORD=1; _mirrorctl; echo "${COMPREPLY[@]}"' _ "$COMP")
[ "$got" = promote ] || fail "completion of 'mirrorctl pro' gave '$got'"
got=$(bash -c '. "$1"; COMP_WORDS=(mirrorctl rejoin --dr); COMP_CWORD=2; _mirrorctl; echo "${COMPREPLY[@]}"' _ "$COMP")
[ "$got" = --dry-run ] || fail "completion of 'mirrorctl rejoin --dr' gave '$got'"
got=$(bash -c '. "$1"; COMP_WORDS=(mirrorctl restore --seg); COMP_CWORD=2; _mirrorctl; echo "${COMPREPLY[@]}"' _ "$COMP")
[ "$got" = --segments ] || fail "completion of 'mirrorctl restore --seg' gave '$got'"
got=$(bash -c '. "$1"; COMP_WORDS=(mirrord --na); COMP_CWORD=1; _mirrord; echo "${COMPREPLY[@]}"' _ "$COMP")
[ "$got" = --naive ] || fail "completion of 'mirrord --na' gave '$got'"
echo PASS
