#!/usr/bin/python3
"""check_includes.py: the layering rule of docs/ARCHITECTURE.md, checked on the source tree. The
pure layers (storage/, config/, codecs/) must not reach, through any chain of quoted includes, the
session/runtime parts (gateway's session, runtime, command table, dispatch, datagram and listener
headers) or protocols/; config/ and codecs/ must not reach storage/; and none of them may name a
gw_session_* or gw_runtime_* function (a hand-written prototype is an upcall too). And the folder
include graph (folder A -> folder B when a file of A includes one of B) has no cycle, except the
folder edges listed in KNOWN_CYCLE_EDGES, a ratchet: an edge that no longer closes a cycle must be
removed from the list (the check says so), and any other edge that closes one fails.
Usage: check_includes.py [source root]; exits 1 listing each violation with its include chain."""
import os
import re
import sys

ROOT = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else
                       os.path.join(os.path.dirname(__file__), "..", ".."))
PURE = ("storage", "config", "codecs")
FORBIDDEN = {  # header (relative to ROOT) -> why
    "gateway/core/session.h": "sessions",
    "gateway/core/session_index.h": "sessions",
    "gateway/core/runtime.h": "the runtime",
    "gateway/command/command.h": "the command table (codecs want gateway/command/command_types.h)",
    "gateway/command/command_internal.h": "the command table",
    "gateway/core/dispatch.h": "dispatch",
    "gateway/core/dgram.h": "the datagram layer",
    "gateway/core/listen.h": "listeners",
    "gateway/admin/admin.h": "the admin endpoint",
}
NO_STORAGE = ("config", "codecs")
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)
UPCALL = re.compile(r"\bgw_(?:session|runtime)_[a-z_]+\s*\(")

# Folders whose .c/.h files make the graph (tests, docs and build output are not part of it).
SOURCE_TOPS = ("codecs", "config", "gateway", "protocols", "storage")
# Folder edges that still close a cycle, each with why; shrink this list, never grow it.
KNOWN_CYCLE_EDGES = {
}

_cache = {}


def includes(path):
    """Quoted includes of path, as normalised paths relative to ROOT (existing files only)."""
    if path not in _cache:
        with open(os.path.join(ROOT, path), encoding="utf-8", errors="replace") as f:
            text = f.read()
        out = []
        for inc in INCLUDE.findall(text):
            p = os.path.normpath(os.path.join(os.path.dirname(path), inc))
            if os.path.isfile(os.path.join(ROOT, p)):
                out.append(p)
        _cache[path] = out
    return _cache[path]


def reach(start):
    """Every header reachable from start, each with the chain that first reached it."""
    seen = {start: [start]}
    todo = [start]
    while todo:
        cur = todo.pop()
        for nxt in includes(cur):
            if nxt not in seen:
                seen[nxt] = seen[cur] + [nxt]
                todo.append(nxt)
    return seen


def folder_edges():
    """(folder, folder) -> (file, included file) of the first include making that edge."""
    edges = {}
    for top in SOURCE_TOPS:
        for dirpath, _, files in os.walk(os.path.join(ROOT, top)):
            for name in sorted(files):
                if not name.endswith((".c", ".h")):
                    continue
                rel = os.path.relpath(os.path.join(dirpath, name), ROOT)
                for inc in includes(rel):
                    a, b = os.path.dirname(rel), os.path.dirname(inc)
                    if a != b and b.startswith(SOURCE_TOPS):
                        edges.setdefault((a, b), (rel, inc))
    return edges


def cycle_violations(edges):
    """An edge a -> b closes a cycle when a is reachable from b; each such edge not in
    KNOWN_CYCLE_EDGES is a violation, and so is each known edge that closes none any more."""
    succ = {}
    for a, b in edges:
        succ.setdefault(a, set()).add(b)

    def path(src, dst):
        prev, todo = {src: None}, [src]
        while todo:
            cur = todo.pop(0)
            if cur == dst:
                out = []
                while cur is not None:
                    out.append(cur)
                    cur = prev[cur]
                return out[::-1]
            for nxt in sorted(succ.get(cur, ())):
                if nxt not in prev:
                    prev[nxt] = cur
                    todo.append(nxt)
        return None

    bad, closing = [], set()
    for (a, b), (src, dst) in sorted(edges.items()):
        back = path(b, a)
        if back is None:
            continue
        closing.add((a, b))
        if (a, b) not in KNOWN_CYCLE_EDGES:
            bad.append("folder cycle: %s -> %s (%s includes %s), and back: %s" %
                       (a, b, src, dst, " -> ".join(back)))
    for edge in sorted(set(KNOWN_CYCLE_EDGES) - closing):
        bad.append("KNOWN_CYCLE_EDGES lists %s -> %s, which closes no cycle now: remove it" % edge)
    return bad


def main():
    bad = cycle_violations(folder_edges())
    for top in PURE:
        for dirpath, _, files in os.walk(os.path.join(ROOT, top)):
            for name in sorted(files):
                if not name.endswith((".c", ".h")):
                    continue
                rel = os.path.relpath(os.path.join(dirpath, name), ROOT)
                for hdr, chain in sorted(reach(rel).items()):
                    why = FORBIDDEN.get(hdr)
                    if why is None and hdr.startswith("protocols/"):
                        why = "a protocol"
                    if why is None and top in NO_STORAGE and hdr.startswith("storage/"):
                        why = "storage"
                    if why:
                        bad.append("%s reaches %s (%s): %s" % (rel, hdr, why, " -> ".join(chain)))
                with open(os.path.join(ROOT, rel), encoding="utf-8", errors="replace") as f:
                    for n, line in enumerate(f, 1):
                        m = UPCALL.search(line)
                        if m:
                            bad.append("%s:%d names %s (an upcall)" % (rel, n, m.group(0).rstrip("( ")))
    for b in bad:
        print(b)
    print("%d layering violation(s)" % len(bad))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
