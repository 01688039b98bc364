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
grep -q "with a key not given" "$T/fs.log" || fail "no reason for the refusal"
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

step "the primary refuses to mount over a closed segment altered at rest"
# a copy of the primary's folder (unmounted): s2 altered in its journal,
# CRCs made right; the mount stops and names the path and the LSN
cp -a "$P" "$T/tp"
printf '\x5a' | dd of="$T/tp/.mirrorfs/journal/$s2" bs=1 seek=$((off + len - 33)) conv=notrunc \
	status=none
"$SEGTOOL" fix "$T/tp/.mirrorfs/journal/$s2"
alsn=$(awk -v o="$off" '$1 == o { print $3 }' < <("$SEGTOOL" offsets "$J/$s2"))
: >"$T/fs.log"
if mfs_try_mount "$T/tp" "$T/tmp" -o auth_key="$T/k1"; then
	fail "mirrorfs mounted over an altered closed segment"
fi
grep "refusing to mount" "$T/fs.log" | grep -F "$T/tp/.mirrorfs/journal/$s2" |
	grep -q "tag of record LSN $alsn at byte $off does not verify" ||
	fail "no path, LSN and record in the refusal: $(tail -3 "$T/fs.log")"
cp "$J/$s2" "$T/tp/.mirrorfs/journal/$s2" # the real one back: it mounts
mfs_mount "$T/tp" "$T/tmp" -o auth_key="$T/k1"
mfs_umount "$T/tmp"

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

step "a keyed cascade forwards a chain that a keyed mirror of it accepts"
# c1 applies s1, then (a new mirrord, the chain read back from its cascade
# folder) s2 and s3, re-emitting them in C; c2 applies C with the key
mkdir -p "$T/c1/in" "$T/c1/data" "$T/c1/state" "$T/c2/in" "$T/c2/data" "$T/c2/state"
cp "$J/$s1" "$T/c1/in/"
run c1 --auth-key "$T/k1" --cascade "$T/C" || fail "c1 refused: $(tail -3 "$T/c1.log")"
cp "$J/$s2" "$J/$s3" "$T/c1/in/"
run c1 --auth-key "$T/k1" --cascade "$T/C" || fail "c1 refused: $(tail -3 "$T/c1.log")"
mapfile -t CS < <(ls "$T/C" | grep -E '^[0-9]{20}-[0-9]{20}\.mfsj$' | sort)
[ "${#CS[@]}" = 3 ] || fail "cascade holds ${#CS[@]} segments, not 3"
for c in "${CS[@]}"; do
	"$CTL" dump --auth-key "$T/k1" "$T/C/$c" | tail -1 | grep -q "authenticated, ok" ||
		fail "cascade segment $c: $("$CTL" dump --auth-key "$T/k1" "$T/C/$c" | tail -1)"
done
cp "$T/C/${CS[0]}" "$T/c2/in/"
run c2 --auth-key "$T/k1" || fail "c2 refused the cascade: $(tail -3 "$T/c2.log")"
cp "$T/C/${CS[1]}" "$T/C/${CS[2]}" "$T/c2/in/"
run c2 --auth-key "$T/k1" || fail "c2 refused the cascade: $(tail -3 "$T/c2.log")"
[ "$(applied_lsn c2)" = "$(seg_last "$s3")" ] || fail "c2 applied $(applied_lsn c2)"
[ "$(grep -c "chain starts" "$T/c2.log")" = 1 ] ||
	fail "the cascade's chain started again: $(grep "chain starts" "$T/c2.log")"
diff -r -x .mirrorfs "$T/m/data" "$T/c2/data" >/dev/null || fail "c2 differs from the mirror"
# the cascade's chain is checked: its second segment with the first's
# previous tag (zeros: a new chain) would pass; one with another is refused
copy_mirror c1 c3
rm -rf "$T/c3/data" "$T/c3/state" && mkdir "$T/c3/data" "$T/c3/state"
cp "$T/C/${CS[0]}" "$T/c3/in/"
run c3 --auth-key "$T/k1" || fail "c3 refused: $(tail -3 "$T/c3.log")"
printf '%s\n' "mknod evil 0100644" "write evil 0 pwned" |
	MKSEG_KEY=$T/k1 MKSEG_PREV=$(printf 'cd%.0s' $(seq 32)) "$MKSEG" "$T/c3/in" \
		"$(sed -n 's/^data_set //p' "$T/m/state/applied")" $((L1 + 1)) 50 >/dev/null
refused c3 "chain broken at LSN $((L1 + 1))"

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

step "the promoted mirror's first segment continues the chain it verified"
# pf: a mirror that followed the old primary as far as pm; pg: one at the
# same LSN from another history (its chain value differs)
copy_mirror pm pf
rm -f "$T/pf/data/.mirrorfs/state" "$T/pf/data/.mirrorfs/promoted"
copy_mirror pf pg
sed -i "s/^chain_tag .*/chain_tag $(printf 'ef%.0s' $(seq 32))/" "$T/pg/state/applied"
grep -q "^chain_tag $(sed -n 's/^chain_tag //p' "$T/pm/state/applied")$" <(
	sed -n 's/^chain_tag=/chain_tag /p' "$T/pm/data/.mirrorfs/state") ||
	fail "promote did not hand the chain to the new primary: $(cat "$T/pm/data/.mirrorfs/state")"
: >"$T/fs.log"
mfs_mount "$T/pm/data" "$T/pmp" -o auth_key="$T/k2"
echo six >"$T/pmp/d6"
sp=$("$CTL" rotate "$T/pmp")
mfs_umount "$T/pmp"
grep -q "chain continues from the promoted mirror's at LSN $lsn" "$T/fs.log" ||
	fail "the new primary started a new chain: $(grep chain "$T/fs.log")"
cp "$T/pm/data/.mirrorfs/journal/$sp" "$T/pf/in/"
run pf --auth-key "$T/k2" || fail "pf refused the new primary's segment: $(tail -3 "$T/pf.log")"
[ "$(cat "$T/pf/data/d6")" = six ] || fail "pf did not apply the new primary's segment"
if grep -q "chain starts" "$T/pf.log"; then fail "pf saw a new chain, not a continued one"; fi
cp "$T/pm/data/.mirrorfs/journal/$sp" "$T/pg/in/"
if run pg --auth-key "$T/k2"; then fail "pg (another history) applied the new primary's segment"; fi
grep -q "chain broken at LSN $((lsn + 1))" "$T/pg/state/quarantine/"*.reason ||
	fail "pg: $(cat "$T/pg/state/quarantine/"*.reason 2>/dev/null)"
[ ! -e "$T/pg/data/d6" ] || fail "pg applied records of a segment it refused"

copy_mirror m pm2
if "$CTL" promote --data "$T/pm2/data" --state "$T/pm2/state" --current "$T/cur" \
	--auth-key "$T/k1" >"$T/promote.out" 2>&1; then fail "promote with the wrong key exited 0"; fi
grep -q "nothing of it applied" "$T/promote.out" || fail "promote: $(cat "$T/promote.out")"
[ ! -e "$T/pm2/data/d5" ] || fail "promote with the wrong key applied records"
echo "PASS"
