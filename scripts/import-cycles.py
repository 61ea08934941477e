#!/usr/bin/env python3
"""Import circles among the top-level modules of a crate's src/ (default dfs-server/src).

A file belongs to its top-level module (`src/tx/http.rs` -> `tx`; `lib.rs`, `main.rs` and
`bin/` are left out). Every `crate::NAME` in its code (comments dropped), including the
names of `use crate::{a, b::c}` groups, is an edge to module NAME. Prints each strongly
connected group of modules with one shortest circle through every edge inside it, and
exits 1 if a circle runs through a module named with --forbid (repeatable).

Usage: scripts/import-cycles.py [SRC_DIR] [--skip-tests] [--forbid services]
"""

import re
import sys
from collections import defaultdict, deque
from pathlib import Path

args = sys.argv[1:]
skip_tests = "--skip-tests" in args
forbid = [args[i + 1] for i, a in enumerate(args) if a == "--forbid"]
plain = [a for i, a in enumerate(args) if not a.startswith("--") and (i == 0 or args[i - 1] != "--forbid")]
src = Path(plain[0] if plain else "dfs-server/src")

def is_test(p):
    return p.name in ("tests.rs", "testkit.rs") or p.stem.endswith("_tests")

edges = defaultdict(set)   # module -> modules it names
where = defaultdict(set)   # (from, to) -> files
for path in sorted(src.rglob("*.rs")):
    rel = path.relative_to(src)
    if rel.parts[0] == "bin" or str(rel) in ("lib.rs", "main.rs") or (skip_tests and is_test(path)):
        continue
    me = rel.parts[0].removesuffix(".rs")
    code = re.sub(r"//[^\n]*", "", path.read_text())
    names = set(re.findall(r"\bcrate::(\w+)", code))
    for group in re.findall(r"\bcrate::\{([^}]*)\}", code):
        names |= set(re.findall(r"(?:^|,)\s*(\w+)", group))
    for n in names - {me, "self"}:
        edges[me].add(n)
        where[(me, n)].add(str(rel))

def shortest(a, b):
    """Shortest path a -> b as a list of modules, or None."""
    prev, todo = {a: None}, deque([a])
    while todo:
        m = todo.popleft()
        if m == b:
            path = [b]
            while prev[path[-1]] is not None:
                path.append(prev[path[-1]])
            return path[::-1]
        for n in sorted(edges[m]):
            if n not in prev:
                prev[n] = m
                todo.append(n)
    return None

mods = sorted(set(edges) | {n for v in edges.values() for n in v})
groups, seen = [], set()
for m in mods:
    if m in seen:
        continue
    group = {n for n in mods if shortest(m, n) and shortest(n, m)} | {m}
    seen |= group
    if len(group) > 1:
        groups.append(sorted(group))

bad = False
print(f"{len(mods)} modules, {sum(len(v) for v in edges.values())} edges; "
      f"{len(groups)} circular groups")
for g in groups:
    print(f"\ngroup: {' '.join(g)}")
    circles = set()
    for a in g:
        for b in sorted(edges[a] & set(g)):
            back = shortest(b, a)
            circles.add(" -> ".join([a] + back))
    for c in sorted(circles, key=lambda c: (c.count("->"), c)):
        hit = any(f in c.split(" -> ") for f in forbid)
        bad |= hit
        files = ", ".join(sorted(where[tuple(c.split(" -> ")[:2])]))
        print(f"  {'!! ' if hit else ''}{c}    ({files})")
sys.exit(1 if bad else 0)
