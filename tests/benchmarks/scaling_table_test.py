#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""benchmarks/scaling_table.py on made-up runs whose goals are known: medians per thread count,
speed-ups, ratios to PyTorch and the met/missed marks of issue 15 (python3 standard library)."""
import json
import os
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks"))
import scaling_table  # noqa: E402


def write(directory, name, rows):
    with open(os.path.join(directory, name), "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")


def row_of(text, name):
    return next(line for line in text.splitlines() if line.startswith(f"| {name} |"))


with tempfile.TemporaryDirectory() as d:
    # b4096: 100 ms on 1 thread, 8 ms on 16 (12.5x, met); PyTorch 16 at 10 ms (1.25x, missed).
    # UNet train: 600 -> 100 ms (6x, missed); PyTorch 200 ms (2x, met). b256: 8 threads 1.0 ms,
    # 16 threads 1.2 ms (slower: missed). Medians of three rounds, one outlier each.
    write(d, "ddpm_1.jsonl", [{"toy_train_b4096_ms": v, "unet_train_b64_ms": u, "threads": 1}
                              for v, u in ((100, 600), (101, 590), (500, 610))])
    write(d, "ddpm_8.jsonl", [{"toy_train_b256_ms": v} for v in (1.0, 0.9, 5.0)])
    write(d, "ddpm_16.jsonl", [{"toy_train_b4096_ms": 8, "unet_train_b64_ms": 100,
                                "toy_train_b256_ms": 1.2}] * 3)
    write(d, "torch_16.jsonl", [{"toy_train_b4096_ms": 10, "unet_train_b64_ms": 200,
                                 "toy_train_b256_ms": 3.0}] * 3)
    text = scaling_table.table(d)
    print(text)
    b4096 = row_of(text, "ToyMLP train b4096")
    assert "| 101 ms | - | 8 ms | 10 ms | 12.6x | 1.25x |" in b4096, b4096
    assert "≥ 10x over 1 met" in b4096 and "≥ 1.5x PyTorch missed" in b4096, b4096
    unet = row_of(text, "UNetSmall train b64")
    assert "6.0x" in unet and "≥ 10x over 1 missed" in unet and "≥ 1.5x PyTorch met" in unet, unet
    b256 = row_of(text, "ToyMLP train b256")
    assert "| - | 1 ms | 1.2 ms |" in b256 and "16 no slower than 8 missed" in b256, b256
    assert "ancestral" not in text  # a workload without runs has no row

    # Below 16 threads the goals are not judged.
    for name in ("ddpm_16.jsonl", "torch_16.jsonl"):
        os.remove(os.path.join(d, name))
    write(d, "torch_8.jsonl", [{"toy_train_b256_ms": 2.0}])
    text = scaling_table.table(d)
    assert "met" not in text and "missed" not in text, text
print("scaling_table: ok")
