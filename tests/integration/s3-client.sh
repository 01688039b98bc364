#!/bin/bash
# SPDX-License-Identifier: MIT
# s3-client.sh - mirrorctl s3 against a real RADOS Gateway (rgw.sh): PUT
# verified and written once (the same bytes again: "present", other bytes:
# refused, the object unchanged), GET verified (same bytes), HEAD, LIST with
# a prefix and start-after, multipart (5 MiB parts) up and down, DELETE, a
# wrong secret refused, --bwlimit slows an upload, a missing key is exit 4,
# and an upload started while the gateway is down succeeds once it is back
# (retries with backoff), or fails in bounded time when it stays down.
# The test server itself (rgw.sh): private ports of 127.0.0.1, curl's own
# SigV4 signer agrees with the gateway, rgw_stop leaves no daemon and no
# folder behind. Prints the start time to the first PUT, the daemons'
# memory and the stop time.
set -eu
MFS_NO_FUSE=1 # no mount here
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/rgw.sh"

s3() { "$CTL" s3 "$@"; }

t0=$(date +%s%N)
rgw_start
case $AWS_ENDPOINT_URL in http://127.0.0.1:*) ;; *) fail "endpoint $AWS_ENDPOINT_URL" ;; esac
B=s3://mfs-client

step "bucket, PUT, PUT again, PUT other bytes under the same key"
s3 mb "$B" || fail "mb"
head -c 100000 /dev/urandom >"$T/a"
head -c 100000 /dev/urandom >"$T/b"
[ "$(s3 put "$T/a" "$B/dir/a")" = "dir/a uploaded" ] || fail "first put"
echo "   cluster start to first PUT: $((($(date +%s%N) - t0) / 1000000)) ms"
for n in "${!RGW_PID[@]}"; do
	echo "   $n: $(awk '/VmRSS/ {print $2 " " $3}' "/proc/${RGW_PID[$n]}/status") resident"
done
# curl's own signer (another SigV4 implementation) reads the same object
curl -sS -f --max-time 30 --aws-sigv4 "aws:amz:$AWS_REGION:s3" \
	--user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" \
	-o "$T/a.curl" "$AWS_ENDPOINT_URL/mfs-client/dir/a" || fail "curl GET"
cmp "$T/a" "$T/a.curl" || fail "curl GET returned other bytes"
[ "$(s3 put "$T/a" "$B/dir/a")" = "dir/a present" ] || fail "second put of the same bytes"
if s3 put "$T/b" "$B/dir/a" 2>"$T/err"; then fail "other bytes overwrote dir/a"; fi
grep -q "never overwritten" "$T/err" || fail "refusal: $(cat "$T/err")"
s3 get "$B/dir/a" "$T/a.back" || fail "get"
cmp "$T/a" "$T/a.back" || fail "dir/a changed or GET returned other bytes"
[ "$(s3 head "$B/dir/a")" = "100000 $(md5sum <"$T/a" | cut -d' ' -f1)" ] || fail "head: $(s3 head "$B/dir/a")"

step "several files under a prefix, LIST with prefix and start-after"
for n in 1 2 3 4; do echo "seg $n" >"$T/0000$n.seg"; done
s3 put "$T"/0000{1,2,3,4}.seg "$B/p/segments/" >"$T/put.out" || fail "put many"
[ "$(wc -l <"$T/put.out")" = 4 ] || fail "put many: $(cat "$T/put.out")"
s3 ls "$B/p/segments/" | cut -d' ' -f1 >"$T/ls" || fail "ls"
printf 'p/segments/0000%s.seg\n' 1 2 3 4 | cmp - "$T/ls" || fail "ls: $(cat "$T/ls")"
s3 ls --start-after p/segments/00002.seg "$B/p/segments/" | cut -d' ' -f1 >"$T/ls2"
printf 'p/segments/0000%s.seg\n' 3 4 | cmp - "$T/ls2" || fail "ls --start-after: $(cat "$T/ls2")"
[ "$(s3 ls "$B/p/" | wc -l)" = 4 ] || fail "ls p/"
[ "$(s3 ls "$B/dir/" | cut -d' ' -f1)" = dir/a ] || fail "ls dir/"

step "multipart: 12 MiB in 5 MiB parts, up and down"
head -c $((12 << 20)) /dev/urandom >"$T/big"
s3 --part-size 5 put "$T/big" "$B/big" >/dev/null || fail "multipart put"
etag=$(s3 head "$B/big" | cut -d' ' -f2)
[[ "$etag" == *-3 ]] || fail "not a 3-part object: $etag"
s3 --part-size 5 put "$T/big" "$B/big" | grep -q present || fail "multipart put again"
s3 --part-size 5 get "$B/big" "$T/big.back" || fail "multipart get"
cmp "$T/big" "$T/big.back" || fail "multipart round trip changed bytes"

step "DELETE, a missing key, a wrong secret"
s3 rm "$B/dir/a" || fail "rm"
set +e
s3 head "$B/dir/a" 2>/dev/null
rc=$?
set -e
[ $rc = 4 ] || fail "head of a deleted key: exit $rc"
if AWS_SECRET_ACCESS_KEY=wrong s3 ls "$B/" 2>"$T/err"; then fail "a wrong secret was accepted"; fi
grep -q "403" "$T/err" || fail "wrong secret: $(cat "$T/err")"

step "--bwlimit: 1 MiB at 256 KiB/s takes about 4 s"
head -c $((1 << 20)) /dev/urandom >"$T/slow"
t0=$(date +%s%N)
s3 --bwlimit 256 put "$T/slow" "$B/slow" >/dev/null || fail "bwlimit put"
ms=$((($(date +%s%N) - t0) / 1000000))
echo "   1 MiB at --bwlimit 256: $ms ms"
[ "$ms" -ge 3000 ] || fail "--bwlimit 256 did not slow the upload ($ms ms)"

step "the gateway down: bounded failure, then retries that succeed once it is back"
rgw_gw_stop
t0=$(date +%s)
if s3 --attempts 3 put "$T/b" "$B/down" 2>"$T/err"; then fail "put succeeded with the gateway down"; fi
[ $(($(date +%s) - t0)) -lt 30 ] || fail "3 attempts took more than 30 s"
grep -q "Couldn't connect\|connect" "$T/err" || fail "down: $(cat "$T/err")"
s3 --attempts 8 put "$T/b" "$B/down" >"$T/put.out" 2>"$T/err" &
put=$!
sleep 1
rgw_gw_start
wait $put || fail "no retry succeeded: $(cat "$T/err")"
grep -q "down uploaded" "$T/put.out" || fail "retry: $(cat "$T/put.out")"
s3 get "$B/down" "$T/down.back" && cmp "$T/b" "$T/down.back" || fail "down: other bytes"

step "stop everything: no daemon, no folder left"
pids="${RGW_PID[*]}"
t0=$(date +%s%N)
rgw_stop
echo "   stop: $((($(date +%s%N) - t0) / 1000000)) ms"
for p in $pids; do
	if kill -0 "$p" 2>/dev/null; then fail "daemon $p still running"; fi
done
[ ! -e "$CEPH_DIR" ] || fail "$CEPH_DIR left behind"
echo OK
