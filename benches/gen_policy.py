#!/usr/bin/env python3
"""Writes a `hosts` policy of N hosts in N/10 opted-in groups (terminate: ["true"], probability 1).

Usage: gen_policy.py N OUT [--live] [--store PATH]
       gen_policy.py --nested BYTES OUT     a hostile policy: one deeply nested flow sequence
All addresses are loopback; `true` is the terminate command, so a live run touches nothing.
"""
import sys


def hosts_policy(n, live, store):
    out = [
        "version: 1",
        f"mode: {'live' if live else 'dry-run'}",
        "timezone: UTC",
        f"store: {store}",
        "kill_switch: simian.stop",
        "opt_in: { tag: simian:opt-in, value: \"true\" }",
        "exclude: { tags: { simian:exempt: \"true\" } }",
        "monkeys:",
        "  chaos:",
        "    schedule: \"* * * * *\"",
        "    probability: 1.0",
        "    max_kills_per_run: 100000",
        "targets:",
        "  - type: hosts",
        "    name: fleet",
        "    executor: local",
        "    terminate: [\"true\"]",
        "    timeout: 5s",
        "    hosts:",
    ]
    for i in range(n):
        g = i // 10
        a = f"127.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"
        out.append(
            f"      - {{ id: h{i}, address: {a}, group: g{g}, zone: {'abc'[i % 3]}, "
            f"tags: {{ simian:opt-in: \"true\" }} }}"
        )
    return "\n".join(out) + "\n"


def main():
    args = sys.argv[1:]
    if args and args[0] == "--nested":
        size, path = int(args[1]), args[2]
        depth = size // 2
        text = "version: 1\nx: " + "[" * depth + "]" * depth + "\n"
        open(path, "w").write(text)
        return
    n, path = int(args[0]), args[1]
    store = args[args.index("--store") + 1] if "--store" in args else "simian.db"
    open(path, "w").write(hosts_policy(n, "--live" in args, store))


if __name__ == "__main__":
    main()
