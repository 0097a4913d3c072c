#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""The thread-scaling table of issue 15 from sweep.sh's raw runs (python3 standard library only).

  scaling_table.py DIR [--small]

DIR holds ddpm_T.jsonl and torch_T.jsonl (one JSON object of timings per line, as ddpm-bench and
torch_reference.py print them) for each thread count T. Prints a Markdown table: ddpm's median
time at each T, PyTorch's at the largest T, ddpm's speed-up from 1 thread to the largest, its ratio
to PyTorch there, and, when the largest T is at least 16, issue 15's goals marked met or missed
(>= 10x over 1 thread for ToyMLP b4096, DDIM, ancestral and UNet training; >= 1.5x PyTorch on
every workload; b256 at the largest T no slower than at the next smaller T).
"""
import glob
import json
import os
import re
import statistics
import sys

NAMES = {
    "toy_train_b256_ms": "ToyMLP train b256",
    "toy_train_b4096_ms": "ToyMLP train b4096",
    "toy_ddim50_n10000_s": "DDIM-50, 10k points",
    "toy_ddpm1000_n10000_s": "ancestral-1000, 10k",
    "unet_train_b64_ms": "UNetSmall train b64",
    "unet_forward_b64_ms": "UNetSmall forward b64",
}
GOAL_THREADS = 16
SCALING_GOAL = {"toy_train_b4096_ms", "toy_ddim50_n10000_s", "toy_ddpm1000_n10000_s",
                "unet_train_b64_ms"}


def load(directory, prefix):
    """{threads: {key: [values]}} of the prefix_T.jsonl files."""
    runs = {}
    for path in glob.glob(os.path.join(directory, f"{prefix}_*.jsonl")):
        match = re.search(rf"{prefix}_(\d+)\.jsonl$", path)
        if not match:
            continue
        per_key = runs.setdefault(int(match.group(1)), {})
        with open(path, encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    for key, value in json.loads(line).items():
                        if isinstance(value, (int, float)) and not isinstance(value, bool):
                            per_key.setdefault(key, []).append(float(value))
    return runs


def median(runs, threads, key):
    values = runs.get(threads, {}).get(key)
    return statistics.median(values) if values else None


def table(directory, small=False):
    ddpm, torch = load(directory, "ddpm"), load(directory, "torch")
    if not ddpm:
        raise SystemExit(f"scaling_table.py: no ddpm_T.jsonl files in {directory}")
    counts = sorted(ddpm)
    top, half = counts[-1], (counts[-2] if len(counts) > 1 else None)
    lines = []
    if small:
        lines += ["SMOKE RUN (--small): tiny sizes under the usual names; these figures mean nothing.", ""]
    head = " | ".join(f"ddpm {t}" for t in counts)
    lines += [f"| workload | {head} | PyTorch {top} | ddpm {top} / 1 | vs PyTorch {top} | goals |",
              "|---" * (len(counts) + 5) + "|"]
    for key, name in NAMES.items():
        times = [median(ddpm, t, key) for t in counts]
        if all(v is None for v in times):
            continue
        reference = median(torch, top, key)
        fastest = times[-1]
        speedup = times[0] / fastest if times[0] and fastest and counts[0] == 1 else None
        ratio = reference / fastest if reference and fastest else None
        goals = []
        if top < GOAL_THREADS:
            pass  # the goals are set for 16 threads
        elif key in SCALING_GOAL and speedup is not None:
            goals.append(f"≥ 10x over 1 {'met' if speedup >= 10 else 'missed'}")
        if ratio is not None and top >= GOAL_THREADS:
            goals.append(f"≥ 1.5x PyTorch {'met' if ratio >= 1.5 else 'missed'}")
        if key == "toy_train_b256_ms" and top >= GOAL_THREADS and half is not None and fastest:
            at_half = median(ddpm, half, key)
            if at_half is not None:
                goals.append(f"{top} no slower than {half} {'met' if fastest <= at_half else 'missed'}")
        unit = key.rsplit("_", 1)[1]
        cells = " | ".join(f"{v:.3g} {unit}" if v is not None else "-" for v in times)
        lines.append(f"| {name} | {cells} | "
                     f"{f'{reference:.3g} {unit}' if reference is not None else '-'} | "
                     f"{f'{speedup:.1f}x' if speedup is not None else '-'} | "
                     f"{f'{ratio:.2f}x' if ratio is not None else '-'} | {'; '.join(goals) or '-'} |")
    return "\n".join(lines)


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--small"]
    if len(args) != 1:
        raise SystemExit(__doc__)
    print(table(args[0], small="--small" in sys.argv[1:]))
