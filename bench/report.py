#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Aggregate bench/run.sh's raw records: medians, ratios, a table, JSON, plot data.

report.py --raw RAW.jsonl --json OUT.json [--gnuplot-data DIR]
report.py --table OUT.json          (print the table of an earlier run)
"""
import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys

KINDS = ("floor", "mountinfo", "dump", "dump_mountinfo", "dump_content", "restore")
CONTENT_KINDS = ("content_dump", "content_tar_c", "content_restore", "content_tar_x", "content_dump_zstd")


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def machine():
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem_kb = 0
    try:
        with open("/proc/meminfo") as f:
            mem_kb = int(f.readline().split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return {
        "nproc": os.cpu_count(),
        "kernel": platform.release(),
        "cpu": cpu,
        "mem_gib": round(mem_kb / 2**20, 1),
        "mount_max": open("/proc/sys/fs/mount-max").read().strip()
        if os.path.exists("/proc/sys/fs/mount-max") else None,
    }


def git_rev(src):
    try:
        rev = subprocess.run(["git", "-C", src, "describe", "--always", "--dirty"],
                             capture_output=True, text=True, timeout=10).stdout.strip()
        return rev or None
    except (OSError, subprocess.SubprocessError):
        return None


def aggregate(raw_path):
    runs = {}
    order = []
    with open(raw_path) as f:
        for line in f:
            r = json.loads(line)
            key = (r["topo"], r["n"])
            if key not in runs:
                runs[key] = {"topo": r["topo"], "n": r["n"], "raw": {k: [] for k in KINDS + CONTENT_KINDS}}
                order.append(key)
            e = runs[key]
            if r["kind"] in KINDS + CONTENT_KINDS:
                e["raw"][r["kind"]].append(r)
            elif r["kind"] == "content_data":
                e["content_bytes"], e["content_files"] = r["bytes"], r["files"]
            elif r["kind"] == "content_zstd_image":
                e["content_zstd_bytes"] = r["bytes"]
            elif r["kind"] == "namespace":
                e["mounts_in_ns"] = r["mounts_in_ns"]
            elif r["kind"] == "image":
                e["image_bytes"] = r["image_bytes"]
            elif r["kind"] == "verify":
                e["verified"] = r["equal"]
    results = []
    for key in order:
        e = runs[key]
        res = {"topo": e["topo"], "n": e["n"], "mounts_in_ns": e.get("mounts_in_ns"),
               "image_bytes": e.get("image_bytes"), "verified": e.get("verified")}
        for k in ("content_bytes", "content_files", "content_zstd_bytes"):
            if k in e:
                res[k] = e[k]
        for kind in KINDS + CONTENT_KINDS:
            rs = e["raw"][kind]
            failed = [r for r in rs if r.get("rc")]
            rs = [r for r in rs if not r.get("rc")]
            if failed:
                res.setdefault("failures", {})[kind] = {
                    "runs": len(failed), "stderr": failed[0].get("stderr", "")[-400:]}
            if not rs:
                continue
            k = {"runs": len(rs), "wall_ms": median(r.get("wall_ms") for r in rs),
                 "wall_ms_all": [r.get("wall_ms") for r in rs],
                 "maxrss_kb": max(r.get("maxrss_kb", 0) for r in rs)}
            for extra in ("build_ms", "read_ms", "built_ms", "bytes", "mounts", "depth"):
                vals = [r.get(extra) for r in rs if r.get(extra) is not None]
                if vals:
                    k[extra] = median(vals)
            phases = {}
            for r in rs:
                for p in r.get("phases", {}):
                    phases.setdefault(p, [])
            for p in phases:
                k.setdefault("phases_ms", {})[p] = median(r.get("phases", {}).get(p) for r in rs)
            res[kind] = k
        if res["topo"] == "content":
            cb = res.get("content_bytes") or 0

            def cw(kind):
                return res.get(kind, {}).get("wall_ms")
            res["mib_per_s"] = {k: round(cb / 2**20 / (cw(k) / 1000), 1) for k in CONTENT_KINDS if cw(k)}
            res["ratio_dump_tar"] = round(cw("content_dump") / cw("content_tar_c"), 3) \
                if cw("content_dump") and cw("content_tar_c") else None
            res["ratio_restore_tar"] = round(cw("content_restore") / cw("content_tar_x"), 3) \
                if cw("content_restore") and cw("content_tar_x") else None
            results.append(res)
            continue
        m = res.get("mounts_in_ns") or res["n"]

        def wall(kind):
            return res.get(kind, {}).get("wall_ms")

        def ratio(a, b):
            return round(a / b, 3) if a and b else None

        res["ratio_restore_floor"] = ratio(wall("restore"), wall("floor"))
        res["ratio_dump_mountinfo"] = ratio(wall("dump"), wall("mountinfo"))
        res["ratio_dump_mountinfo_source"] = ratio(wall("dump_mountinfo"), wall("mountinfo"))
        res["ratio_dump_content_mountinfo"] = ratio(wall("dump_content"), wall("mountinfo"))
        res["us_per_mount"] = {kind: round(wall(kind) * 1000 / m, 3) for kind in KINDS if wall(kind)}
        res["rss_bytes_per_mount"] = {
            kind: round(res[kind]["maxrss_kb"] * 1024 / m)
            for kind in ("dump", "dump_mountinfo", "dump_content", "restore")
            if kind in res}
        results.append(res)
    # Marginal RSS per mount between the smallest and largest N of each topology.
    by_topo = {}
    for res in results:
        if res["topo"] != "content":
            by_topo.setdefault(res["topo"], []).append(res)
    for topo, rs in by_topo.items():
        rs.sort(key=lambda x: x["n"])
        lo, hi = rs[0], rs[-1]
        if hi["n"] > lo["n"]:
            dm = (hi["mounts_in_ns"] or hi["n"]) - (lo["mounts_in_ns"] or lo["n"])
            for res in rs:
                res.setdefault("rss_marginal_bytes_per_mount", {})
            for kind in ("dump", "restore"):
                if kind in hi and kind in lo:
                    v = round((hi[kind]["maxrss_kb"] - lo[kind]["maxrss_kb"]) * 1024 / dm)
                    hi["rss_marginal_bytes_per_mount"][kind] = v
    return results


def fmt(v, spec="{:.1f}"):
    return "-" if v is None else spec.format(v)


def table(doc, f=sys.stdout):
    mach = doc["machine"]
    reps = doc.get("reps", "?")
    if doc.get("reps_min") and doc["reps_min"] != reps:
        reps = f"{doc['reps_min']}-{reps}"
    print(f"machine: {mach['nproc']} CPUs, {mach['cpu']}, kernel {mach['kernel']}, "
          f"{mach['mem_gib']} GiB; mntcr {doc.get('git') or '?'}; medians of {reps} runs",
          file=f)
    hdr = ("topology", "N", "mounts", "restore ms", "floor ms", "ratio", "built ms",
           "dump ms", "mntinfo ms", "ratio", "dump -M ms", "ratio", "dump(defaults) ms",
           "rst B/mnt", "dump B/mnt", "ok")
    rows = []
    for r in (x for x in doc["results"] if x["topo"] != "content"):
        g = lambda k, f2="wall_ms": r.get(k, {}).get(f2)
        rows.append((r["topo"], str(r["n"]), str(r.get("mounts_in_ns") or "-"),
                     fmt(g("restore")), fmt(g("floor")), fmt(r["ratio_restore_floor"], "{:.2f}"),
                     fmt(g("restore", "built_ms")),
                     fmt(g("dump")), fmt(g("mountinfo")), fmt(r["ratio_dump_mountinfo"], "{:.2f}"),
                     fmt(g("dump_mountinfo")), fmt(r["ratio_dump_mountinfo_source"], "{:.2f}"),
                     "failed" if "dump_content" in r.get("failures", {}) and "dump_content" not in r
                     else fmt(g("dump_content")),
                     str(r["rss_bytes_per_mount"].get("restore", "-")),
                     str(r["rss_bytes_per_mount"].get("dump", "-")),
                     {True: "yes", False: "NO", None: "-"}[r.get("verified")]))
    widths = [max([len(h)] + [len(row[i]) for row in rows]) for i, h in enumerate(hdr)]
    if rows:
        print("  ".join(h.rjust(w) for h, w in zip(hdr, widths)), file=f)
    for row in rows:
        print("  ".join(c.rjust(w) for c, w in zip(row, widths)), file=f)
    for r in (x for x in doc["results"] if x["topo"] == "content"):
        g = lambda k: r.get(k, {}).get("wall_ms")
        mb = r.get("mib_per_s", {})
        print(f"\ncontent: one tmpfs, {r.get('content_bytes', 0) / 2**20:.0f} MiB in "
              f"{r.get('content_files', '?')} files; medians; restored files equal: "
              f"{ {True: 'yes', False: 'NO', None: '-'}[r.get('verified')] }", file=f)
        print(f"  dump --compress=none {fmt(g('content_dump'))} ms ({mb.get('content_dump', '-')} MiB/s)"
              f"   tar -c {fmt(g('content_tar_c'))} ms ({mb.get('content_tar_c', '-')} MiB/s)"
              f"   ratio {fmt(r.get('ratio_dump_tar'), '{:.2f}')}", file=f)
        print(f"  restore              {fmt(g('content_restore'))} ms ({mb.get('content_restore', '-')} MiB/s)"
              f"   tar -x {fmt(g('content_tar_x'))} ms ({mb.get('content_tar_x', '-')} MiB/s)"
              f"   ratio {fmt(r.get('ratio_restore_tar'), '{:.2f}')}", file=f)
        print(f"  dump (zstd, default) {fmt(g('content_dump_zstd'))} ms, image "
              f"{(r.get('content_zstd_bytes') or 0) / 2**20:.0f} MiB; peak RSS dump "
              f"{r.get('content_dump', {}).get('maxrss_kb', '-')} KiB, restore "
              f"{r.get('content_restore', {}).get('maxrss_kb', '-')} KiB", file=f)
    for r in doc["results"]:
        for kind, fl in r.get("failures", {}).items():
            msg = fl["stderr"].strip().splitlines()
            msg = [x for x in msg if not x.startswith(("mntcr timing", "timeit"))]
            print(f"  {r['topo']} N={r['n']}: {kind} failed {fl['runs']} time(s): "
                  f"{msg[-1] if msg else '?'}", file=f)
    print("\nper-phase medians (ms):", file=f)
    for r in doc["results"]:
        for kind in ("dump", "dump_mountinfo", "dump_content", "restore", "content_dump",
                     "content_restore"):
            ph = r.get(kind, {}).get("phases_ms")
            if ph:
                print(f"  {r['topo']:>6} {r['n']:>6} {kind:<14} " +
                      " ".join(f"{p}={v:.1f}" for p, v in ph.items()), file=f)


def gnuplot_data(doc, d):
    os.makedirs(d, exist_ok=True)
    topos = []
    for r in doc["results"]:
        if r["topo"] not in topos and r["topo"] != "content":
            topos.append(r["topo"])
    for t in topos:
        with open(os.path.join(d, f"{t}.dat"), "w") as f:
            f.write("# n restore floor dump mountinfo (us per mount)\n")
            for r in sorted((x for x in doc["results"] if x["topo"] == t), key=lambda x: x["n"]):
                u = r["us_per_mount"]
                f.write(f"{r['n']} {u.get('restore', 'NaN')} {u.get('floor', 'NaN')} "
                        f"{u.get('dump', 'NaN')} {u.get('mountinfo', 'NaN')}\n")
    with open(os.path.join(d, "topos"), "w") as f:
        f.write(" ".join(topos) + "\n")
    with open(os.path.join(d, "title"), "w") as f:
        m = doc["machine"]
        f.write(f"mntcr {doc.get('git') or ''} - {m['nproc']} CPUs, {m['cpu']}, Linux {m['kernel']}\n")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--raw")
    ap.add_argument("--json")
    ap.add_argument("--gnuplot-data")
    ap.add_argument("--table")
    a = ap.parse_args()
    if a.table:
        table(json.load(open(a.table)))
        return
    results = aggregate(a.raw)
    runs = [r[k]["runs"] for r in results for k in ("floor", "mountinfo", "dump", "restore") if r.get(k, {}).get("runs")]
    reps, reps_min = max(runs, default=0), min(runs, default=0)
    doc = {
        "generator": "bench/run.sh",
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "git": git_rev(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
        "machine": machine(),
        "reps": reps,
        "reps_min": reps_min,
        "results": results,
    }
    with open(a.json, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    table(doc)
    if a.gnuplot_data:
        gnuplot_data(doc, a.gnuplot_data)


if __name__ == "__main__":
    main()
