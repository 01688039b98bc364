#!/bin/bash
# test.sh - the whole test suite: install, build with warnings as errors,
# run every suite, then the unit suite again under ASan+UBSan.
set -eu
cd "$(dirname "$0")/.."

bash tools/setup.sh build -Dwerror=true
bash tools/setup.sh build-asan -Dwerror=true -Db_sanitize=address,undefined -Db_lundef=false

status=0
logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT
run() { # run BUILDDIR NAME meson-test-args...
	local dir=$1 name=$2
	shift 2
	meson test -C "$dir" --print-errorlogs "$@" || status=1
	cp "$dir/meson-logs/testlog.json" "$logs/$name.json" 2>/dev/null || true
}
# CUnit's own summary, printed in full
run build unit --suite unit --verbose
run build other --no-suite unit
UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
	LSAN_OPTIONS=suppressions="$PWD/tests/fixtures/lsan.supp" \
	run build-asan asan --suite unit

# one closing line over both runs: "N passed, N failed, N skipped"
python3 - "$logs"/*.json <<'PY'
import json, sys
ok = fail = skip = 0
for path in sys.argv[1:]:
    for line in open(path):
        r = json.loads(line)["result"]
        if r in ("OK", "EXPECTEDFAIL"): ok += 1
        elif r == "SKIP": skip += 1
        else: fail += 1
print(f"{ok} passed, {fail} failed, {skip} skipped")
PY
exit $status
