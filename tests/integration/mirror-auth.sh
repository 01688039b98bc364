#!/bin/bash
# mirror-auth.sh - authenticated segments (format 2), end to end with real
# mounts: a primary mounted with -o auth_key tags its segments; a mirror
# with --auth-key applies them and quarantines, with nothing applied:
#  - a segment forged by a copy of the primary's data folder mounted
#    without the key (right data-set id, next LSNs, right CRCs), which a
#    mirror without a key applies;
#  - a segment tagged with another key;
#  - one tagged with the right key that does not continue the chain;
#  - a real segment altered, truncated and extended, or renumbered to
#    follow the segment before the one dropped (CRCs made right again);
# a re-delivered segment changes nothing; a key change on the primary
# (auth_key + auth_key_old) is followed by a mirror holding both keys;
# promote --auth-key integrates only the authenticated prefix of the open
# segment.
set -eu
. "$(dirname "$0")/lib.sh"

MIRRORD=$MFS_BUILD/daemon/mirrord
MKSEG=$MFS_BUILD/tests/integration/mkseg
SEGTOOL=$MFS_BUILD/tests/integration/segtool

run() { # run NAME [mirrord args]: mirrord --once on mirror NAME
	local n=$1
	shift
	timeout 120 "$MIRRORD" --once --incoming "$T/$n/in" --data "$T/$n/data" \
		--state "$T/$n/state" "$@" 2>>"$T/$n.log"
}
copy_mirror() { # copy_mirror FROM TO
	rm -rf "${T:?}/$2"
	cp -a "$T/$1" "$T/$2"
}
applied_lsn() { sed -n 's/^applied_lsn //p' "$T/$1/state/applied"; }
refused() { # refused NAME PATTERN: quarantined by a keyed mirror, nothing applied
	local n=$1 pat=$2 before reason
	before=$(applied_lsn "$n")
	cp -a "$T/$n/data" "$T/$n.before"
	if run "$n" --auth-key "$T/k1"; then fail "$n: mirrord --once exited 0"; fi
	reason=$(cat "$T/$n/state/quarantine/"*.reason 2>/dev/null) || fail "$n: not quarantined"
	echo "   $n: $reason"
	echo "$reason" | grep -q -- "$pat" || fail "$n: the reason does not say '$pat'"
	diff -r -x .mirrorfs "$T/$n.before" "$T/$n/data" >/dev/null || fail "$n: something of it was applied"
	[ "$(applied_lsn "$n")" = "$before" ] || fail "$n: the applied LSN moved"
}
seg_first() { echo "$1" | sed 's/^0*\([0-9]*\)-.*/\1/'; }
seg_last() { echo "$1" | sed 's/^[0-9]*-0*\([0-9]*\)\.mfsj$/\1/'; }
name_of() { printf '%020d-%020d.mfsj' "$1" "$2"; }

step "keygen: 256 bits, mode 0600, never overwrites"
"$CTL" keygen "$T/k1" | grep -q "key id" || fail "keygen printed no key id"
"$CTL" keygen "$T/k2" >/dev/null
[ "$(stat -c %a "$T/k1")" = 600 ] || fail "key file mode $(stat -c %a "$T/k1")"
[ "$(tr -d '\n' <"$T/k1" | wc -c)" = 64 ] || fail "key file is not 64 hex digits"
cp "$T/k1" "$T/k1.copy"
if "$CTL" keygen "$T/k1" 2>/dev/null; then fail "keygen overwrote a key"; fi
cmp -s "$T/k1" "$T/k1.copy" || fail "keygen changed an existing key"
cp "$T/k1" "$T/k1.open" && chmod 644 "$T/k1.open"
if "$MIRRORD" --once --incoming "$T" --data "$T" --auth-key "$T/k1.open" 2>"$T/err"; then
	fail "mirrord took a key file others can read"
fi
grep -q "mode 0600" "$T/err" || fail "no reason given: $(cat "$T/err")"

step "a primary mounted with -o auth_key writes tagged segments"
P=$T/p
J=$P/.mirrorfs/journal
mkdir -p "$P"
mfs_mount "$P" "$T/mp" -o auth_key="$T/k1"
mkdir "$T/mp/db"
head -c 100000 /dev/urandom >"$T/mp/db/t1"
echo one >"$T/mp/a"
s1=$("$CTL" rotate "$T/mp")
echo two >>"$T/mp/a"
head -c 20000 /dev/urandom | dd of="$T/mp/db/t1" bs=4096 seek=3 conv=notrunc status=none
s2=$("$CTL" rotate "$T/mp")
echo three >"$T/mp/c"
chmod 4755 "$T/mp/c"
s3=$("$CTL" rotate "$T/mp")
echo after >"$T/mp/after3" # left in the open segment, tagged with the first key
L1=$(seg_last "$s1")
L2=$(seg_last "$s2")
"$CTL" dump "$J/$s1" | grep -q "format 2, tagged with key id .*tags not checked" ||
	fail "dump does not show the tags: $("$CTL" dump "$J/$s1" | tail -1)"
"$CTL" dump --auth-key "$T/k1" "$J/$s2" | tail -1 | grep -q ", authenticated, ok" ||
	fail "dump --auth-key: $("$CTL" dump --auth-key "$T/k1" "$J/$s2" | tail -1)"
if "$CTL" dump --auth-key "$T/k2" "$J/$s2" >"$T/out" 2>&1; then fail "dump with another key exited 0"; fi
grep -q "not one of this reader's keys" "$T/out" || fail "dump with another key: $(cat "$T/out")"

step "a keyed mirror applies them, and records the chain"
mkdir -p "$T/m/in" "$T/m/data" "$T/m/state"
cp "$J/$s1" "$T/m/in/"
run m --auth-key "$T/k1" || fail "the keyed mirror refused '$s1': $(cat "$T/m.log")"
[ "$(applied_lsn m)" = "$L1" ] || fail "applied LSN $(applied_lsn m), not $L1"
grep -q "^chain_lsn $L1$" "$T/m/state/applied" || fail "no chain in the applied state"
grep -q '"authentication":"required"' "$T/m/state/status.json" || fail "status: $(cat "$T/m/state/status.json")"

step "a mirror without a key applies them too, and says so"
copy_mirror m u0
rm -rf "$T/u0/data" "$T/u0/state" && mkdir "$T/u0/data" "$T/u0/state"
cp "$J/$s1" "$J/$s2" "$J/$s3" "$T/u0/in/"
run u0 || fail "the mirror without a key refused: $(cat "$T/u0.log")"
grep -q '"authentication":"off' "$T/u0/state/status.json" || fail "status: $(cat "$T/u0/state/status.json")"
cmp "$T/u0/data/db/t1" "$T/mp/db/t1" || fail "unkeyed mirror differs"

step "a copy of the primary's folder mounted without the key"
mfs_umount "$T/mp"
cp -a "$P" "$T/f"
if mfs_try_mount "$T/f" "$T/mf"; then fail "a keyed open segment was continued without the key"; fi
grep -q "authenticated with a key not given" "$T/fs.log" || fail "no reason for the refusal"
# the forger drops what it cannot continue and rewinds to the mirror's LSN
rm -f "$T/f/.mirrorfs/open/"* "$T/f/.mirrorfs/journal/$s2" "$T/f/.mirrorfs/journal/$s3"
sed -i "s/^checkpoint=.*/checkpoint=$L1/; s/^last=.*/last=$L1/" "$T/f/.mirrorfs/state"
mfs_mount "$T/f" "$T/mf"
echo pwned >"$T/mf/evil"
echo pwned >"$T/mf/a"
sf=$("$CTL" rotate "$T/mf")
mfs_umount "$T/mf"
[ "$(seg_first "$sf")" = $((L1 + 1)) ] || fail "the forged segment '$sf' does not follow LSN $L1"
"$CTL" dump "$T/f/.mirrorfs/journal/$sf" | tail -1 | grep -q "format 1, no tags, ok" ||
	fail "forged: $("$CTL" dump "$T/f/.mirrorfs/journal/$sf" | tail -1)"
copy_mirror m u
cp "$T/f/.mirrorfs/journal/$sf" "$T/u/in/"
run u || fail "a mirror without a key refused the forged segment: $(cat "$T/u.log")"
[ -e "$T/u/data/evil" ] || fail "the forged segment is not a good forgery (not applied without a key)"
copy_mirror m forged
cp "$T/f/.mirrorfs/journal/$sf" "$T/forged/in/"
refused forged "not authenticated: format 1 segment without tags"
[ ! -e "$T/forged/data/evil" ] || fail "evil applied"

step "a segment tagged with another key"
copy_mirror m otherkey
printf '%s\n' "mknod evil 0100644" "write evil 0 pwned" |
	MKSEG_KEY=$T/k2 "$MKSEG" "$T/otherkey/in" "$(sed -n 's/^data_set //p' "$T/m/state/applied")" \
		$((L1 + 1)) 50 >/dev/null
refused otherkey "not one of this reader's keys"

step "the right key, but not the chain (previous tag of another history)"
copy_mirror m chain
printf '%s\n' "mknod evil 0100644" "write evil 0 pwned" |
	MKSEG_KEY=$T/k1 MKSEG_PREV=$(printf 'ab%.0s' $(seq 32)) "$MKSEG" "$T/chain/in" \
		"$(sed -n 's/^data_set //p' "$T/m/state/applied")" $((L1 + 1)) 50 >/dev/null
refused chain "chain broken at LSN $((L1 + 1))"

step "a real segment altered (CRCs made right)"
copy_mirror m altered
cp "$J/$s2" "$T/altered/in/$s2"
read -r off len _ <<<"$("$SEGTOOL" offsets "$J/$s2" | awk '$4 == 1' | head -1)"
printf '\x5a' | dd of="$T/altered/in/$s2" bs=1 seek=$((off + len - 33)) conv=notrunc status=none
"$SEGTOOL" fix "$T/altered/in/$s2"
refused altered "does not verify"

step "a real segment truncated and extended with another one's record"
copy_mirror m trunc
X=$T/trunc/x
mapfile -t R2 < <("$SEGTOOL" offsets "$J/$s2")
mapfile -t R3 < <("$SEGTOOL" offsets "$J/$s3")
read -r o2 _ <<<"${R2[2]}"
head -c "$o2" "$J/$s2" >"$X"
read -r o3 l3 _ <<<"${R3[0]}"
tail -c +$((o3 + 1)) "$J/$s3" | head -c "$l3" >>"$X"
"$SEGTOOL" setlsn "$X" "$o2" $((L1 + 3))
read -r ot lt _ <<<"${R2[${#R2[@]} - 1]}"
tail -c +$((ot + 1)) "$J/$s2" | head -c "$lt" >>"$X"
"$SEGTOOL" fix "$X"
mv "$X" "$T/trunc/in/$(name_of $((L1 + 1)) $((L1 + 3)))"
refused trunc "tag of record LSN $((L1 + 3)) .* does not verify"

step "a segment dropped, the next renumbered to follow the one before it"
copy_mirror m dropped
X=$T/dropped/x
cp "$J/$s3" "$X"
"$SEGTOOL" setlsn "$X" 0 $((L1 + 1))
i=0
while read -r o _ _ t; do
	[ "$t" = 66 ] && continue
	"$SEGTOOL" setlsn "$X" "$o" $((L1 + 1 + i))
	i=$((i + 1))
done < <("$SEGTOOL" offsets "$J/$s3")
"$SEGTOOL" fix "$X"
mv "$X" "$T/dropped/in/$(name_of $((L1 + 1)) $((L1 + i)))"
refused dropped "does not verify"

step "the real ones apply; a segment delivered again changes nothing"
cp "$J/$s2" "$J/$s3" "$T/m/in/"
run m --auth-key "$T/k1" || fail "the keyed mirror refused real segments: $(cat "$T/m.log")"
[ "$(applied_lsn m)" = "$(seg_last "$s3")" ] || fail "applied $(applied_lsn m)"
cp -a "$T/m/data" "$T/m.ok"
cp "$J/$s1" "$J/$s2" "$T/m/in/"
run m --auth-key "$T/k1" || fail "a re-delivered segment failed the mirror"
diff -r -x .mirrorfs "$T/m.ok" "$T/m/data" >/dev/null || fail "a re-delivered segment changed the data"
[ -z "$(ls -A "$T/m/state/quarantine" 2>/dev/null)" ] || fail "something was quarantined"

step "key change: the primary closes its old-key segment, the mirror holds both keys"
mfs_mount "$P" "$T/mp" -o auth_key="$T/k2",auth_key_old="$T/k1"
echo four >"$T/mp/d4"
s5=$("$CTL" rotate "$T/mp")
new=$(ls "$J" | sort | awk -v l="$(seg_last "$s3")" '{ split($0, a, "-"); if (a[1] + 0 > l) print }')
[ "$(echo "$new" | wc -l)" = 2 ] || fail "expected the old-key segment and a new one: $new"
"$CTL" dump --auth-key "$T/k2" "$J/$s5" | tail -1 | grep -q "authenticated, ok" || fail "new segment not tagged with the new key"
for s in $new; do cp "$J/$s" "$T/m/in/"; done
if run m --auth-key "$T/k2"; then fail "a mirror with the new key only took the old key's segment"; fi
rm -rf "$T/m/state/quarantine" && for s in $new; do cp "$J/$s" "$T/m/in/"; done
run m --auth-key "$T/k2" --auth-key "$T/k1" || fail "the mirror with both keys refused: $(tail -3 "$T/m.log")"
[ "$(applied_lsn m)" = "$(seg_last "$s5")" ] || fail "applied $(applied_lsn m), not $(seg_last "$s5")"
verify_equal "$T/mp" "$T/m/data" || fail "mirror and primary differ"

step "promote --auth-key: the open segment's authenticated prefix only"
echo five >"$T/mp/d5"
"$CTL" checkpoint "$T/mp" >/dev/null
mfs_umount "$T/mp"
cur=$(ls "$P/.mirrorfs/open/"*.mfsj | head -1)
cp "$cur" "$T/cur"
read -r o l lsn _ <<<"$("$SEGTOOL" offsets "$T/cur" | tail -1)"
tail -c +$((o + 1)) "$T/cur" | head -c "$l" >"$T/rec"
"$SEGTOOL" setlsn "$T/rec" 0 0 2>/dev/null || true
cat "$T/rec" >>"$T/cur" # the last record again, as LSN + 1: its tag cannot verify
"$SEGTOOL" setlsn "$T/cur" "$((o + l))" $((lsn + 1))
"$SEGTOOL" fix "$T/cur"
copy_mirror m pm
"$CTL" promote --data "$T/pm/data" --state "$T/pm/state" --current "$T/cur" \
	--auth-key "$T/k2" >"$T/promote.out" 2>&1 || fail "promote: $(cat "$T/promote.out")"
grep -q "authenticated part, up to LSN $lsn" "$T/promote.out" || fail "promote: $(cat "$T/promote.out")"
[ "$(applied_lsn pm)" = "$lsn" ] || fail "promote applied up to $(applied_lsn pm), not $lsn"
[ "$(cat "$T/pm/data/d5")" = five ] || fail "the open segment's authenticated records were not integrated"
copy_mirror m pm2
if "$CTL" promote --data "$T/pm2/data" --state "$T/pm2/state" --current "$T/cur" \
	--auth-key "$T/k1" >"$T/promote.out" 2>&1; then fail "promote with the wrong key exited 0"; fi
grep -q "nothing of it applied" "$T/promote.out" || fail "promote: $(cat "$T/promote.out")"
[ ! -e "$T/pm2/data/d5" ] || fail "promote with the wrong key applied records"
echo "PASS"
