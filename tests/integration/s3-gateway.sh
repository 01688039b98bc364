#!/bin/bash
# SPDX-License-Identifier: MIT
# s3-gateway.sh - the test S3 server itself (rgw.sh): a single-node Ceph
# cluster and its RADOS Gateway start in a scratch folder on private ports of
# 127.0.0.1; curl's own SigV4 signer creates a bucket, PUTs, GETs (same bytes)
# and LISTs; the gateway alone stops (requests refused) and restarts on the
# same port with the object still there; rgw_stop leaves no daemon behind.
# Prints the start time to the first PUT, the daemons' memory and the stop time.
set -eu
MFS_NO_FUSE=1 # no mount here
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/rgw.sh"

s3curl() {
	curl -sS -f --max-time 30 --aws-sigv4 "aws:amz:$AWS_REGION:s3" \
		--user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" \
		-H "x-amz-content-sha256: UNSIGNED-PAYLOAD" "$@"
}

step "start the cluster and the gateway"
t0=$(date +%s%N)
rgw_start
case $AWS_ENDPOINT_URL in http://127.0.0.1:*) ;; *) fail "endpoint $AWS_ENDPOINT_URL" ;; esac
s3curl -X PUT "$AWS_ENDPOINT_URL/bkt" || fail "create bucket"
head -c 3000000 /dev/urandom >"$T/obj"
s3curl -T "$T/obj" "$AWS_ENDPOINT_URL/bkt/dir/obj" || fail "PUT"
t1=$(date +%s%N)
echo "   start to first PUT: $(((t1 - t0) / 1000000)) ms"
for n in "${!RGW_PID[@]}"; do
	echo "   $n: $(awk '/VmRSS/ {print $2 " " $3}' "/proc/${RGW_PID[$n]}/status") resident"
done

step "GET returns the same bytes, LIST names the key"
s3curl -o "$T/back" "$AWS_ENDPOINT_URL/bkt/dir/obj" || fail "GET"
cmp "$T/obj" "$T/back" || fail "GET returned other bytes"
s3curl "$AWS_ENDPOINT_URL/bkt?list-type=2&prefix=dir%2F" >"$T/list" || fail "LIST"
grep -q "<Key>dir/obj</Key>" "$T/list" || fail "LIST: $(cat "$T/list")"
grep -q "<Size>3000000</Size>" "$T/list" || fail "LIST size: $(cat "$T/list")"
if s3curl -o /dev/null "$AWS_ENDPOINT_URL/bkt/dir/none" 2>/dev/null; then fail "GET of a missing key"; fi
# a wrong secret is refused: the gateway really checks signatures
if curl -sf --max-time 30 --aws-sigv4 "aws:amz:$AWS_REGION:s3" --user "$AWS_ACCESS_KEY_ID:wrong" \
	-H "x-amz-content-sha256: UNSIGNED-PAYLOAD" -o /dev/null "$AWS_ENDPOINT_URL/bkt/dir/obj"; then
	fail "a wrong secret key was accepted"
fi

step "the gateway alone stops and restarts on the same port"
rgw_gw_stop
if curl -s --max-time 5 -o /dev/null "$AWS_ENDPOINT_URL/"; then fail "gateway still answering"; fi
rgw_gw_start
s3curl -o "$T/back2" "$AWS_ENDPOINT_URL/bkt/dir/obj" || fail "GET after restart"
cmp "$T/obj" "$T/back2" || fail "object changed across a gateway restart"

step "stop everything"
pids="${RGW_PID[*]}"
t2=$(date +%s%N)
rgw_stop
t3=$(date +%s%N)
echo "   stop: $(((t3 - t2) / 1000000)) ms"
for p in $pids; do
	if kill -0 "$p" 2>/dev/null; then fail "daemon $p still running"; fi
done
[ ! -e "$CEPH_DIR" ] || fail "$CEPH_DIR left behind"
echo "OK"
