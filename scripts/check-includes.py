#!/usr/bin/env python3
"""Fails on an #include that breaks the folder table (docs/include-layers.txt, the "may
include" column of ARCHITECTURE.md): a folder including one above it or beside it that its
rule does not list, or a cycle among the rules themselves.

  scripts/check-includes.py [--root DIR]   (default: the repository holding this script)

Exit 0 when every include obeys; 1 with one line per offending include otherwise.
"""
import argparse
import pathlib
import re
import sys

RULES = "docs/include-layers.txt"
SOURCES = (".cpp", ".hpp", ".h")
INCLUDE = re.compile(r'^\s*#\s*include\s*([<"])([^>"]+)[>"]')


def load_rules(path):
    rules = {}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        folder, sep, entries = line.partition(":")
        if not sep or not folder.strip():
            raise SystemExit(f"{path}:{n}: expected '<folder>: <entry> ...'")
        rules[folder.strip()] = entries.split()
    return rules


def within(path, folder):
    return path == folder or path.startswith(folder + "/")


def rule_of(rel, rules):
    """The deepest folder with a rule that holds `rel`, or None."""
    best = None
    for folder in rules:
        if within(rel, folder) and (best is None or len(folder) > len(best)):
            best = folder
    return best


def cycles(rules):
    """Folder-level cycles among the rules' entries (headers count as their folder)."""
    graph = {}
    for folder, entries in rules.items():
        targets = set()
        for e in entries:
            if e.startswith("!"):
                continue
            t = rule_of(e, rules)
            if t and t != folder:
                targets.add(t)
        graph[folder] = targets
    found, state = [], {}

    def visit(node, stack):
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                found.append(stack[stack.index(nxt):] + [nxt] if nxt in stack else [node, nxt])
            elif not state.get(nxt):
                visit(nxt, stack + [nxt])
        state[node] = 2

    for node in sorted(graph):
        if not state.get(node):
            visit(node, [node])
    return found


def check(root):
    rules = load_rules(root / RULES)
    problems = [f"{RULES}: the rules have a cycle: {' -> '.join(c)}" for c in cycles(rules)]
    roots = {f.split("/", 1)[0] for f in rules}
    for top in sorted(roots):
        base = root / top
        if not base.is_dir():
            continue
        for path in sorted(base.rglob("*")):
            if path.suffix not in SOURCES or not path.is_file():
                continue
            rel = path.relative_to(root).as_posix()
            folder = rule_of(rel, rules)
            if folder is None:
                continue
            entries = rules[folder]
            for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
                m = INCLUDE.match(line)
                if not m:
                    continue
                kind, target = m.groups()
                if kind == "<":
                    for e in entries:
                        if e.startswith("!") and target.startswith(e[1:]):
                            problems.append(f"{rel}:{n}: includes <{target}>, which {folder}/ must not ({RULES})")
                    continue
                if rule_of(target, rules) is None or within(target, folder):
                    continue
                if not any(within(target, e) for e in entries if not e.startswith("!")):
                    problems.append(f'{rel}:{n}: includes "{target}", which {folder}/ may not include '
                                    f"(allowed: {', '.join(e for e in entries if not e.startswith('!')) or 'its own folder only'}; {RULES})")
    return problems


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=pathlib.Path, default=pathlib.Path(__file__).resolve().parent.parent)
    args = ap.parse_args()
    problems = check(args.root)
    for p in problems:
        print(p)
    if problems:
        print(f"check-includes: {len(problems)} include(s) break the folder table", file=sys.stderr)
        return 1
    print("check-includes: every include follows the folder table")
    return 0


if __name__ == "__main__":
    sys.exit(main())
