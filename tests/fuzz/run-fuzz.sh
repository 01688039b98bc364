#!/bin/bash
# SPDX-License-Identifier: MIT
#
# run-fuzz.sh - build one libFuzzer target with clang and run it, bounded.
#
# Usage: run-fuzz.sh TARGET [SECONDS]     (TARGET: segment, replay)
#
# The lib sources are compiled here, by clang, with
# -fsanitize=fuzzer,address,undefined: the main build may use gcc, whose
# objects cannot link with libFuzzer. Seeds come from gen_corpus (real
# segments written by the segment writer). New corpus entries go to a
# temporary directory; crash artifacts are kept in $MFS_FUZZ_OUT
# (default: $MESON_BUILD_ROOT/tests/fuzz, else the current directory).
#
# Exit status: 0 no finding, 1 a finding or a build error, 77 skipped (no
# clang, or clang without libFuzzer).
#
# Environment: MFS_SRC (source root; default: two levels above this
# script), CC_FUZZ (default clang), MFS_FUZZ_ARGS (extra libFuzzer args).
set -eu

target=${1:?usage: run-fuzz.sh TARGET [SECONDS]}
seconds=${2:-45}
here=$(cd "${0%/*}" && pwd)
src=${MFS_SRC:-$(cd "$here/../.." && pwd)}
cc=${CC_FUZZ:-clang}
out=${MFS_FUZZ_OUT:-${MESON_BUILD_ROOT:+$MESON_BUILD_ROOT/tests/fuzz}}
out=${out:-$PWD}

# ---- per-target libraries. Add a target here and a test() line in
# ---- tests/fuzz/meson.build. The lib sources are every lib/*.c (but
# ---- notify.c, which needs libsystemd: notify_stub.c stands in), put in a
# ---- static archive, so the linker takes only the objects a target uses
# ---- and lib/ can be split or grow without this list going stale.
case $target in
segment)
	libs=(-lsodium -lzstd)
	;;
replay) # tests/fuzz/fuzz_replay.c: the replay engine on hostile records
	libs=(-luring -lsodium -lzstd)
	;;
*)
	echo "run-fuzz.sh: unknown target '$target'" >&2
	exit 1
	;;
esac

if ! command -v "$cc" >/dev/null 2>&1; then
	echo "run-fuzz.sh: '$cc' not found, skipping"
	exit 77
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/mfs-fuzz-$target.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$out" "$work/corpus" "$work/seeds"

# libFuzzer present at all?
echo 'int LLVMFuzzerTestOneInput(const unsigned char *d, unsigned long n) { return 0; }' \
	>"$work/probe.c"
if ! "$cc" -fsanitize=fuzzer,address,undefined "$work/probe.c" -o "$work/probe" 2>/dev/null; then
	echo "run-fuzz.sh: '$cc' cannot link -fsanitize=fuzzer, skipping"
	exit 77
fi

cflags=(-g -O1 -std=gnu17 -D_GNU_SOURCE -D_FILE_OFFSET_BITS=64 -pthread
	-fno-omit-frame-pointer -fno-sanitize-recover=all
	-I"$src/lib/include" -I"$work")
# the include paths of the libraries some lib sources use (lib/s3*.c)
read -ra pkgflags <<<"$(pkg-config --cflags libcurl libxml-2.0 2>/dev/null || true)"
cflags+=("${pkgflags[@]}")
: >"$work/config.h" # the lib sources do not need it today; targets may
# every lib source, compiled once (two at a time) into $work/lib.a; the
# coverage instrumentation of fuzzer-no-link is harmless in gen_corpus
mkdir -p "$work/lib"
echo "run-fuzz.sh: building fuzz_$target with $cc"
jobs=0 failed=0
for f in "$src"/lib/*.c; do
	[ "${f##*/}" = notify.c ] && continue
	"$cc" "${cflags[@]}" -fsanitize=fuzzer-no-link,address,undefined -c "$f" \
		-o "$work/lib/$(basename "$f" .c).o" &
	jobs=$((jobs + 1))
	if [ $jobs -ge 2 ]; then
		wait -n || failed=1
		jobs=$((jobs - 1))
	fi
done
while [ $jobs -gt 0 ]; do
	wait -n || failed=1
	jobs=$((jobs - 1))
done
if [ $failed -ne 0 ]; then
	echo "run-fuzz.sh: a lib source did not compile" >&2
	exit 1
fi
ar rcs "$work/lib.a" "$work"/lib/*.o
"$cc" "${cflags[@]}" -fsanitize=fuzzer,address,undefined \
	"$here/fuzz_$target.c" "$work/lib.a" -o "$work/fuzz_$target" "${libs[@]}"
"$cc" "${cflags[@]}" -fsanitize=fuzzer-no-link,address,undefined \
	"$here/gen_corpus.c" "$work/lib.a" -o "$work/gen_corpus" "${libs[@]}"
"$work/gen_corpus" "$work/seeds"
echo "run-fuzz.sh: $(find "$work/seeds" -type f | wc -l) seeds, running for ${seconds}s"

export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
# shellcheck disable=SC2086
"$work/fuzz_$target" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
	-max_len=131072 -print_final_stats=1 -artifact_prefix="$out/fuzz_$target-" \
	${MFS_FUZZ_ARGS:-} "$work/corpus" "$work/seeds"
