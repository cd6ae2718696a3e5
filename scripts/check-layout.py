#!/usr/bin/env python3
"""Checks the layout rules of the source tree (docs/architecture.md):

- no source file over 600 lines, not counting its inline `#[cfg(test)]`
  module (test files, fixtures and testkit excepted);
- no two modules of one crate import each other, directly or round a cycle
  (the module graph is read from `use crate::…`, `super::…` and `self::…`
  paths; comments and inline test modules are left out);
- every source file starts with a `//!` line saying what it is.

Prints each violation with its file and exits 1 if there is any; exits 0
quietly otherwise. Run from anywhere: `scripts/check-layout.py`.
"""
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CRATES = ["src", "client/src", "jobs/src", "cache/src", "coordinator/src",
          "worker/src", "engine/src", "testkit/src"]
# Size limits do not apply to test support and test files.
SIZE_EXEMPT_CRATES = {"testkit/src"}
MAX_LINES = 600
INLINE_TESTS = re.compile(r"\n#\[cfg\(test\)\]\s*mod\s+\w+\s*\{")
PATH = re.compile(r"\b(crate|super|self)((?:::\w+)+)")


def source_files(base):
    for dirpath, dirnames, files in os.walk(base):
        dirnames.sort()
        for name in sorted(files):
            if name.endswith(".rs"):
                yield os.path.join(dirpath, name)


def module_of(base, path):
    parts = os.path.relpath(path, base)[:-3].split(os.sep)
    if parts[-1] in ("mod", "lib", "main"):
        parts = parts[:-1]
    return tuple(parts)


def without_tests(text):
    match = INLINE_TESTS.search(text)
    return text[: match.start()] if match else text


def is_test_file(path):
    name = os.path.basename(path)
    return name == "tests.rs" or name.endswith("_tests.rs") or f"{os.sep}tests{os.sep}" in path


def imports(module, text, modules):
    """The modules of the same crate that `text` names in paths."""
    code = "\n".join(l for l in without_tests(text).split("\n") if not l.lstrip().startswith("//"))
    found = set()
    for m in PATH.finditer(code):
        kind, rest = m.group(1), [s for s in m.group(2).split("::") if s]
        if kind == "crate":
            target = rest
        elif kind == "self":
            target = list(module) + rest
        else:
            parent = list(module[:-1])
            while rest and rest[0] == "super":
                rest, parent = rest[1:], parent[:-1]
            target = parent + rest
        for n in range(len(target), 0, -1):
            candidate = tuple(target[:n])
            if candidate in modules:
                if candidate != module:
                    found.add(candidate)
                break
    return found


def cycles(edges):
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []
    counter = [0]
    sys.setrecursionlimit(10000)

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in edges:
        if v not in index:
            visit(v)
    return out


def main():
    problems = []
    for crate in CRATES:
        base = os.path.join(ROOT, crate)
        if not os.path.isdir(base):
            continue
        files = {module_of(base, p): p for p in source_files(base)}
        edges = {}
        for module, path in files.items():
            text = open(path, encoding="utf-8").read()
            rel = os.path.relpath(path, ROOT)
            if not text.lstrip().startswith("//!"):
                problems.append(f"{rel}: does not start with a `//!` line saying what it is")
            lines = without_tests(text).count("\n")
            if crate not in SIZE_EXEMPT_CRATES and not is_test_file(path) and lines > MAX_LINES:
                problems.append(f"{rel}: {lines} lines without its inline tests (at most {MAX_LINES}); split it by concept")
            edges[module] = imports(module, text, set(files))
        for component in cycles(edges):
            names = ", ".join("::".join(m) or "(crate root)" for m in component)
            problems.append(f"{crate}: these modules import each other in a loop: {names}")
    for problem in problems:
        print(f"layout: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
