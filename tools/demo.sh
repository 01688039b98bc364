#!/bin/bash
# demo.sh - the main job, end to end on this machine.
# Today: build, write a sample segment and dump it, show that a damaged copy
# is refused. (The full primary -> rsync -> mirror demo replaces this as the
# filesystem and the mirror land.)
set -eu
cd "$(dirname "$0")/.."
bash tools/setup.sh build

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
ctl=build/tools/mirrorctl
seg="$work/00000000000000000001-00000000000000000018.mfsj"
$ctl sample "$seg"
echo "== a sample segment, as mirrorctl dump shows it"
$ctl dump "$seg"
echo "== the same segment with one byte flipped"
cp "$seg" "$work/damaged.mfsj"
printf '\x55' | dd of="$work/damaged.mfsj" bs=1 seek=300 conv=notrunc status=none
if $ctl dump "$work/damaged.mfsj" >/dev/null; then
	echo "demo: the damaged segment was accepted" >&2
	exit 1
fi
echo "== replayed into an empty folder"
mkdir "$work/data"
$ctl replay --to "$work/data" "$seg"
ls -lR "$work/data"
