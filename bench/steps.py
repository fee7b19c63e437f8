#!/usr/bin/env python3
"""Merges two bench/profile.sh reports (before, after) into the step-by-step tables of bench/results.md:
CPU per request by step, Redis cost per script call, and allocations per request by site."""
import re
import sys


def read(path):
    text = open(path, encoding="utf-8").read()
    out = {"steps": {}, "sites": {}, "cpu": {}, "evalsha": {}}
    head = re.search(r"^Written by .*? at (\S+?)[ .(]", text, re.M)
    out["rev"] = head.group(1) if head else "?"
    for row in re.finditer(r"^\| (S1|S2) \| (\d+) \| (\d+) \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \| (\d+) \|$", text, re.M):
        out["cpu"][row.group(1)] = {"gateway": row.group(6), "redis": row.group(7), "pg": row.group(8), "alloc": row.group(9)}
    steps = text.split("Steps of a request in S2", 1)
    if len(steps) == 2:
        for row in re.finditer(r"^\| (.+?) \| ([\d.]+) % \| ([\d.]+) µs \|$", steps[1].split("\n\n", 2)[1] if "\n\n" in steps[1] else steps[1], re.M):
            out["steps"][row.group(1)] = float(row.group(3))
    for scenario in ("S1", "S2"):
        block = text.split(f"## {scenario}\n", 1)
        if len(block) == 2:
            calls = re.search(r"cmdstat_evalsha:calls=(\d+),usec=(\d+),usec_per_call=([\d.]+)", block[1])
            if calls:
                out["evalsha"][scenario] = calls.group(3)
    sites = text.split("| by site", 1)
    if len(sites) == 2:
        for row in re.finditer(r"^\| `(.+?)` \| (\d+) \| [\d.]+ % \|$", sites[1], re.M):
            out["sites"][row.group(1)] = int(row.group(2))
    total = re.search(r"^allocated: (\d+) bytes per request", text, re.M)
    out["sampled"] = int(total.group(1)) if total else None
    return out


def main():
    before, after = read(sys.argv[1]), read(sys.argv[2])
    print(f"From `bench/profile.sh` (one gateway under S1 and S2), the build before ({before['rev']}) and after ({after['rev']}), one run")
    print("each, one after the other: the totals here move by 10 to 20 % between runs, so the before and after of the CPU per")
    print("request above (the same rounds, alternating) are the ones to compare; these tables show where it goes. Redis time")
    print("per script call grows after because a busy device's admission now also applies its last settlement: one call")
    print("instead of two.")
    print()
    print("| per request, S2 | before | after |")
    print("|---|---|---|")
    for key, name in (("gateway", "gateway CPU"), ("redis", "Redis CPU"), ("pg", "PostgreSQL CPU")):
        print(f"| {name} | {before['cpu'].get('S2', {}).get(key, '?')} µs | {after['cpu'].get('S2', {}).get(key, '?')} µs |")
    print(f"| allocated by the gateway | {before['cpu'].get('S2', {}).get('alloc', '?')} B | {after['cpu'].get('S2', {}).get('alloc', '?')} B |")
    for scenario in ("S1", "S2"):
        print(f"| Redis time per script call, {scenario} (`commandstats`) | {before['evalsha'].get(scenario, '?')} µs | {after['evalsha'].get(scenario, '?')} µs |")
    print()
    print("Steps of a request in S2: each step's share of the gateway's CPU samples (`dotnet-trace collect-linux`, inclusive),")
    print("times its CPU per request. Steps overlap where one calls another; async resumptions make the shares approximate.")
    print()
    print("| step | before | after |")
    print("|---|---|---|")
    for step in after["steps"]:
        b = before["steps"].get(step)
        if not after["steps"][step] and not b:
            continue
        print(f"| {step} | {'?' if b is None else f'{b:.1f} µs'} | {after['steps'][step]:.1f} µs |")
    print()
    print("Allocations per request in S2 by site (`dotnet-trace --profile gc-verbose`, sampled every ~100 KB; the first")
    print("gateway frame on the stack, else the library's), the sites of either build's top 30:")
    print()
    print("| site | before | after |")
    print("|---|---|---|")
    names = list(dict.fromkeys(list(after["sites"]) + list(before["sites"])))
    names.sort(key=lambda n: -max(before["sites"].get(n, 0), after["sites"].get(n, 0)))
    for name in names[:30]:
        print(f"| `{name}` | {before['sites'].get(name, '–')} B | {after['sites'].get(name, '–')} B |")
    print(f"| all sites (sampled) | {before['sampled']} B | {after['sampled']} B |")


if __name__ == "__main__":
    main()
