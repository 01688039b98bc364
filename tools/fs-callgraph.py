#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
#
# fs-callgraph.py - the call graph between the files of fs/ (issue 19):
# file A -> file B when A names a non-static function B defines (a call, or
# a function put in a table). Prints the number of edges, the pairs of
# files that call each other, and with --layers the edges that go up the
# layer list of fs/fs.h (a file calling one listed above it).
#
# Usage: tools/fs-callgraph.py [FSDIR] [-v] [--layers]   (needs ctags)
import re, subprocess, sys, os, glob
args = [a for a in sys.argv[1:] if not a.startswith('-')]
d = args[0] if args else 'fs'
files = sorted(glob.glob(os.path.join(d, '*.c')))
out = subprocess.run(['ctags', '-x', '--c-kinds=f', '--language-force=C'] + files,
                     capture_output=True, text=True).stdout
defs = {}
for line in out.splitlines():
    parts = line.split(None, 4)
    name, kind, ln, path, src = parts[0], parts[1], parts[2], parts[3], parts[4] if len(parts) > 4 else ''
    if src.lstrip().startswith('static'):
        continue
    defs[name] = os.path.basename(path)
def strip(t):
    t = re.sub(r'/\*.*?\*/', ' ', t, flags=re.S)
    t = re.sub(r'"(\\.|[^"\\])*"', '""', t)
    t = re.sub(r'\b(struct|enum|union)\s+[a-z_][a-z0-9_]*', ' ', t)
    return t
edges = {}
for f in files:
    b = os.path.basename(f)
    text = strip(open(f).read())
    for m in set(re.findall(r'\b([a-z_][a-z0-9_]*)\s*\(', text)) | set(re.findall(r'\b(fs_[a-z0-9_]+)\b', text)):
        t = defs.get(m)
        if t and t != b:
            edges.setdefault((b, t), set()).add(m)
mods = lambda s: s[:-2]
two = sorted({tuple(sorted((a, b))) for (a, b) in edges if (b, a) in edges})
if '-v' in sys.argv:
    for (a, b), fn in sorted(edges.items()):
        print(f'{mods(a)} -> {mods(b)}: {" ".join(sorted(fn))}')
print(f'edges: {len(edges)}  two-way pairs: {len(two)}')
for a, b in two:
    print(f'  {mods(a)} <-> {mods(b)}: {" ".join(sorted(edges[(a,b)]))} | {" ".join(sorted(edges[(b,a)]))}')
if '--layers' in sys.argv:
    head = open(os.path.join(d, 'fs.h')).read().split('Lock order')[0]
    head = '\n'.join(l for l in head.split('\n') if l.startswith(' *   '))
    order = []  # top layer first
    for m in re.finditer(r'\b([a-z_]+)\.c\b', head):
        if m.group(1) not in order:
            order.append(m.group(1))
    up = sorted((a, b) for (a, b) in edges if mods(a) in order and mods(b) in order
                and order.index(mods(b)) < order.index(mods(a)))  # b listed above a
    print(f'upward edges: {len(up)}')
    for a, b in up:
        print(f'  {mods(a)} -> {mods(b)}: {" ".join(sorted(edges[(a, b)]))}')
