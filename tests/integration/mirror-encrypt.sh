#!/bin/bash
# mirror-encrypt.sh - encrypted segments (format 2, -o encrypt_key) end to
# end with real mounts: nothing of the paths or data is in the segments;
# a reader without the key reads none of it (dump, mirrord quarantines);
# kill -9 with sealed records in the open segment, recovery continues it
# (and a mount without the key refuses it); a mirror with --encrypt-key
# (and --auth-key, compressed too) applies them; mirrorctl replay
# --encrypt-key; a keyed cascade forwards them still encrypted; a primary
# with encrypt_key + encrypt_key_old changes the key; mirrorctl rejoin
# reads both journals with --encrypt-key, and without it names the segment
# it cannot read rather than claiming a divergence.
set -eu
. "$(dirname "$0")/lib.sh"

MIRRORD=$MFS_BUILD/daemon/mirrord
MARK=Xq7SECRETMARKzP
run() { # run NAME [mirrord args]: mirrord --once on mirror NAME
	local n=$1
	shift
	mkdir -p "$T/$n/in" "$T/$n/data" "$T/$n/state"
	timeout 120 "$MIRRORD" --once --incoming "$T/$n/in" --data "$T/$n/data" \
		--state "$T/$n/state" "$@" 2>>"$T/$n.log"
}
applied_lsn() { sed -n 's/^applied_lsn //p' "$T/$1/state/applied"; }
clear_in() { # clear_in FOLDER...: no marker in any segment there
	local f
	for f in "$@"; do
		[ -e "$f" ] || continue
		if grep -q -a "$MARK" "$f"; then fail "'$f' holds the marker in the clear"; fi
	done
}

"$CTL" keygen "$T/ke" >/dev/null
"$CTL" keygen "$T/ka" >/dev/null
id2=$("$CTL" keygen "$T/ke2" | sed -n 's/.*key id //p')
P=$T/p
J=$P/.mirrorfs/journal
mkdir -p "$P"

step "a primary with encrypt_key, auth_key and compress: nothing in the clear"
mfs_mount "$P" "$T/mp" -o encrypt_key="$T/ke",auth_key="$T/ka",compress=zstd
mkdir "$T/mp/db-$MARK"
for i in $(seq 200); do echo "row $i $MARK the quick brown fox"; done >"$T/mp/db-$MARK/t1"
head -c 200000 /dev/urandom >"$T/mp/rand"
ln -s "target-$MARK" "$T/mp/link"
s1=$("$CTL" rotate "$T/mp")
clear_in "$J"/*.mfsj "$P"/.mirrorfs/open/*.mfsj
"$CTL" dump "$J/$s1" >"$T/dump" 2>&1 || true
tail -1 "$T/dump" | grep -q "encrypted with key id .*not one of this reader's encryption keys" ||
	fail "dump without the key: $(tail -1 "$T/dump")"
[ "$(grep -c "^[0-9]" "$T/dump")" = 0 ] || fail "dump without the key printed records"
"$CTL" dump --encrypt-key "$T/ke" --auth-key "$T/ka" "$J/$s1" >"$T/dump"
grep -q "$MARK" "$T/dump" || fail "dump with the key does not show the records"
tail -1 "$T/dump" | grep -q "authenticated, encrypted with key id .*, ok" ||
	fail "dump with the key: $(tail -1 "$T/dump")"
grep -q '"encrypt_key_id":"[0-9a-f]\{16\}"' "$T/mp/.mirrorfs/status" ||
	fail "status: $(cat "$T/mp/.mirrorfs/status")"

step "kill -9 with sealed records in the open segment; recovery continues it"
for i in $(seq 50); do echo "more $i $MARK"; done >>"$T/mp/db-$MARK/t1"
sync "$T/mp/db-$MARK/t1"
cp "$T/mp/db-$MARK/t1" "$T/t1.now"
mfs_kill9 "$T/mp"
open=$(ls "$P"/.mirrorfs/open/*.mfsj)
printf 'torn tail' >>"$open" # a record that never finished
clear_in "$open"
: >"$T/fs.log"
if mfs_try_mount "$P" "$T/mp" -o auth_key="$T/ka"; then fail "mounted without the encryption key"; fi
grep -q "with a key not given" "$T/fs.log" || fail "no reason: $(tail -3 "$T/fs.log")"
mfs_mount "$P" "$T/mp" -o encrypt_key="$T/ke",auth_key="$T/ka",compress=zstd
cmp "$T/mp/db-$MARK/t1" "$T/t1.now" || fail "the file differs after recovery"
echo "after recovery $MARK" >"$T/mp/after"
s2=$("$CTL" rotate "$T/mp")
clear_in "$J"/*.mfsj

step "a mirror without the key quarantines; with it, applies everything"
mkdir -p "$T/nokey/in" && cp "$J"/*.mfsj "$T/nokey/in/"
if run nokey --auth-key "$T/ka"; then fail "a mirror without the encryption key exited 0"; fi
grep -q "encrypted with key id" "$T/nokey/state/quarantine/"*.reason ||
	fail "no reason: $(cat "$T/nokey/state/quarantine/"*.reason 2>/dev/null)"
[ ! -e "$T/nokey/data/db-$MARK" ] || fail "something was applied without the key"
mkdir -p "$T/m/in" && cp "$J"/*.mfsj "$T/m/in/"
run m --auth-key "$T/ka" --encrypt-key "$T/ke" --cascade "$T/C" ||
	fail "the mirror with the keys refused: $(tail -3 "$T/m.log")"
[ "$(applied_lsn m)" = "$(echo "$s2" | sed 's/^[0-9]*-0*\([0-9]*\)\.mfsj$/\1/')" ] ||
	fail "applied $(applied_lsn m)"
verify_equal "$T/mp" "$T/m/data" || fail "mirror and primary differ"

step "the cascade forwards them encrypted (and tagged); its mirror applies them"
ls "$T/C"/*.mfsj >/dev/null || fail "nothing in the cascade"
clear_in "$T/C"/*.mfsj
mkdir -p "$T/m2/in" && cp "$T/C"/*.mfsj "$T/m2/in/"
run m2 --auth-key "$T/ka" --encrypt-key "$T/ke" || fail "m2 refused: $(tail -3 "$T/m2.log")"
verify_equal "$T/m/data" "$T/m2/data" || fail "the cascade's mirror differs"

step "mirrorctl replay --encrypt-key"
mkdir "$T/r"
if "$CTL" replay --to "$T/r" "$J"/*.mfsj >"$T/replay.log" 2>&1; then
	fail "replay without the key exited 0"
fi
rm -rf "$T/r" && mkdir "$T/r"
"$CTL" replay --to "$T/r" --encrypt-key "$T/ke" "$J"/*.mfsj >"$T/replay.log" 2>&1 ||
	fail "replay: $(tail -3 "$T/replay.log")"
cmp "$T/r/db-$MARK/t1" "$T/mp/db-$MARK/t1" || fail "replayed file differs"

step "key change: encrypt_key=NEW,encrypt_key_old=OLD; a mirror holding both"
mfs_umount "$T/mp"
mfs_mount "$P" "$T/mp" -o encrypt_key="$T/ke2",encrypt_key_old="$T/ke",auth_key="$T/ka"
echo "new key $MARK" >"$T/mp/d2"
s3=$("$CTL" rotate "$T/mp")
"$CTL" dump --encrypt-key "$T/ke2" --auth-key "$T/ka" "$J/$s3" | tail -1 |
	grep -q "authenticated, encrypted with key id $id2, ok" ||
	fail "not sealed with the new key: $("$CTL" dump --encrypt-key "$T/ke2" "$J/$s3" | tail -1)"
clear_in "$J"/*.mfsj
cp "$J"/*.mfsj "$T/m/in/" # those applied already are skipped
run m --auth-key "$T/ka" --encrypt-key "$T/ke2" --encrypt-key "$T/ke" ||
	fail "the mirror with both keys refused: $(tail -3 "$T/m.log")"
verify_equal "$T/mp" "$T/m/data" || fail "mirror and primary differ after the key change"
mfs_umount "$T/mp"

step "rejoin of the old primary P reads its encrypted journal and the new one's"
# the new primary's history: P's own segments (promoted at P's last LSN)
mkdir -p "$T/rj/in"
cp -a "$P" "$T/rj/old"
cp "$J"/*.mfsj "$T/rj/in/"
for keys in "" "--auth-key $T/ka --encrypt-key $T/ke2"; do # none; only the new key
	# shellcheck disable=SC2086
	if "$CTL" rejoin --data "$T/rj/old" --state "$T/rj/s1" --incoming "$T/rj/in" $keys \
		2>"$T/rj.log"; then
		fail "rejoin without the (old) encryption key exited 0"
	fi
	grep -q "cannot read segment '$T/rj/[^']*\.mfsj': encrypted with key id" "$T/rj.log" ||
		fail "rejoin without the key does not name the segment: $(cat "$T/rj.log")"
	! grep -q "refusing to rejoin" "$T/rj.log" || fail "unreadable segments taken for a divergence"
done
[ ! -e "$T/rj/s1/applied" ] || fail "a refused rejoin wrote a mirror state"
"$CTL" rejoin --data "$T/rj/old" --state "$T/rj/s2" --incoming "$T/rj/in" --auth-key "$T/ka" \
	--encrypt-key "$T/ke2" --encrypt-key "$T/ke" >"$T/rj.log" 2>&1 ||
	fail "rejoin with the keys refused: $(cat "$T/rj.log")"
last=$(ls "$J" | sort | tail -1 | sed 's/^[0-9]*-0*\([0-9]*\)\.mfsj$/\1/')
[ "$(sed -n 's/^applied_lsn //p' "$T/rj/s2/applied")" -ge "$last" ] ||
	fail "rejoin set applied LSN $(sed -n 's/^applied_lsn //p' "$T/rj/s2/applied") < $last"
echo "PASS"
