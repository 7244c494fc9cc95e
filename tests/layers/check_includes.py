#!/usr/bin/python3
"""check_includes.py: the layering rule of docs/ARCHITECTURE.md, checked on the source tree. The
pure layers (storage/, config/, codecs/) must not reach, through any chain of quoted includes, the
session/runtime parts (gateway's session, runtime, command table, dispatch, datagram and listener
headers) or protocols/; config/ and codecs/ must not reach storage/; and none of them may name a
gw_session_* or gw_runtime_* function (a hand-written prototype is an upcall too).
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
    "gateway/util/listen.h": "listeners",
    "gateway/admin/admin.h": "the admin endpoint",
}
NO_STORAGE = ("config", "codecs")
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)
UPCALL = re.compile(r"\bgw_(?:session|runtime)_[a-z_]+\s*\(")

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


def main():
    bad = []
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
