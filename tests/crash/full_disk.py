#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""A full disk during ddpm-toy2d train's checkpoint, PNG and samples writes.

The disk fills at a chosen file: RLIMIT_FSIZE (the portable way; SIGXFSZ ignored, so the write
fails with EFBIG instead of killing the process) set between the size of the files written before
it and its own size, measured from an unlimited run. For each target the program must exit
non-zero with a message naming the file and the reason, leave the previous checkpoint intact
(loads, old step, same bytes) and no file, whole or partial, under the failed file's name or its
.tmp. With --tmpfs (root, and mount allowed) a size-limited tmpfs also gives a real ENOSPC.
Exits 0 on success, 1 on a failed check, 77 (skip) without resource limits.

  full_disk.py --program build/examples/toy2d/ddpm-toy2d --out /tmp/full_disk
"""

import argparse
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

try:
    import resource
except ImportError:  # not POSIX
    print("SKIP: no resource module (RLIMIT_FSIZE)")
    sys.exit(77)

# ddpm-toy2d train's files in the order it writes them (model.ckpt also every interval).
ORDER = ["model.ckpt", "loss.csv", "loss.png", "forward.png", "reverse.png", "samples.csv",
         "samples.png", "samples.npy", "compare.png"]
TRAIN = ["train", "--batch", "64", "--width", "64", "--T", "100", "--threads", "1", "--seed", "3",
         "--checkpoint-every", "20", "--sampler", "ddim", "--sample-steps", "10"]


def fail(message):
    print("FAIL: " + message, flush=True)
    sys.exit(1)


def run(command, limit=None):
    def preexec():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of death
        if limit is not None:
            hard = resource.getrlimit(resource.RLIMIT_FSIZE)[1]
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    return subprocess.run(command, capture_output=True, text=True, preexec_fn=preexec)


def step_of(program, checkpoint):
    result = subprocess.run([program, "info", str(checkpoint)], capture_output=True, text=True)
    if result.returncode != 0:
        fail(f"{checkpoint} does not load:\n{result.stderr}")
    return int(re.search(r"^step: (\d+)$", result.stdout, re.MULTILINE).group(1))


def check_failure(result, folder, name, reason):
    """A failed run: non-zero exit, the message names the file and the reason, nothing left
    under the file's name or its .tmp."""
    path = folder / name
    message = result.stderr.strip().splitlines()[-1] if result.stderr.strip() else ""
    if result.returncode == 0:
        fail(f"the run succeeded although {name} could not be written:\n{result.stdout}")
    if f"cannot write file '{path}'" not in message or reason not in message:
        fail(f"the message does not name {path} and '{reason}':\n{result.stderr}")
    if (folder / (name + ".tmp")).exists():
        fail(f"{name}.tmp was left behind")
    print(f"  exit {result.returncode}: {message}", flush=True)
    return message


def parameters_of(program, checkpoint):
    result = subprocess.run([program, "info", str(checkpoint)], capture_output=True, text=True)
    return int(re.search(r"^parameters: (\d+)$", result.stdout, re.MULTILINE).group(1))


def tmpfs_cases(program, out, size):
    """A tmpfs too small for the first checkpoint refuses the run before training (the --out
    check); one with just that room runs out of space (ENOSPC) at a later, larger file."""
    # The --out check's estimate (examples/common_train.hpp): 4 arrays of 8 bytes + 1 MiB.
    estimate = parameters_of(program, out / "sizes" / "model.ckpt") * 32 + (1 << 20)
    for case, kib, n in [("small", size["model.ckpt"] * 3 // 2 // 1024 + 1, 200),
                         ("room", estimate // 1024 + 128, 40000)]:
        mount = out / ("tmpfs_" + case)
        mount.mkdir()
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={kib}k", "tmpfs",
                                  str(mount)], capture_output=True, text=True)
        if mounted.returncode != 0:
            print("  no tmpfs (" + mounted.stderr.strip() + "): skipped the real full disk")
            return
        try:
            folder = mount / "run"
            result = run([program] + TRAIN + ["--steps", "40", "--n", str(n), "--out",
                                              str(folder)])
            last = result.stderr.strip().splitlines()[-1] if result.stderr.strip() else ""
            if case == "small":
                print(f"a {kib} KiB tmpfs, less than the first checkpoint's estimate "
                      f"{estimate} bytes: refused before training")
                if (result.returncode == 0 or f"invalid --out = '{folder}'" not in last or
                        "bytes available; the first checkpoint needs about" not in last or
                        "loss" in result.stderr):
                    fail("a folder without room was not refused up front:\n" + result.stderr)
                print(f"  exit {result.returncode}: {last}")
            else:
                print(f"a {kib} KiB tmpfs with room for the checkpoint, not for --n {n} samples:")
                match = re.search(r"cannot write file '([^']*)'", last)
                if not match:
                    fail("no message naming the file:\n" + result.stderr)
                name = Path(match.group(1)).name
                check_failure(result, folder, name, "No space left on device (disk full)")
                if (folder / name).exists() or step_of(program, folder / "model.ckpt") != 40:
                    fail(f"{name} exists or model.ckpt is not the trained one")
        finally:
            subprocess.run(["umount", str(mount)])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--program", required=True, help="ddpm-toy2d")
    parser.add_argument("--out", required=True, help="scratch folder (emptied first)")
    parser.add_argument("--tmpfs", action="store_true",
                        help="also fill a size-limited tmpfs (needs root and mount)")
    args = parser.parse_args()
    program, out = args.program, Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)

    # The sizes of an unlimited run (--n 10000 makes samples.csv the largest file).
    sizes_run = out / "sizes"
    result = run([program] + TRAIN + ["--steps", "40", "--n", "10000", "--out", str(sizes_run)])
    if result.returncode != 0:
        fail("the unlimited run failed:\n" + result.stderr)
    size = {name: (sizes_run / name).stat().st_size for name in ORDER}
    print("file sizes of an unlimited run: " + ", ".join(f"{n} {size[n]}" for n in ORDER))

    # 1. The checkpoint write fails mid-training: the previous checkpoint (step 40) stays.
    print("a full disk at a checkpoint write (resuming at step 40, next checkpoint at 60):")
    folder = out / "checkpoint"
    shutil.copytree(sizes_run, folder)
    old = (folder / "model.ckpt").read_bytes()
    result = run([program] + TRAIN + ["--steps", "80", "--n", "10000", "--out", str(folder),
                                      "--resume", str(folder / "model.ckpt")],
                 limit=size["model.ckpt"] // 2)
    message = check_failure(result, folder, "model.ckpt", "File too large")
    if "training stopped at step 60" not in message:
        fail("the message does not say where training stopped")
    if (folder / "model.ckpt").read_bytes() != old or step_of(program, folder / "model.ckpt") != 40:
        fail("the previous checkpoint changed")

    # 2. and 3. A PNG and the samples: the limit lies between every file written before the
    # target and the target, in a fresh folder; the finished model.ckpt is kept.
    for target in ["forward.png", "samples.csv"]:
        before = max(size[n] for n in ORDER[:ORDER.index(target)])
        if before >= size[target]:
            fail(f"cannot isolate {target}: an earlier file is as large ({before} bytes)")
        print(f"a full disk at {target} (limit {(before + size[target]) // 2} bytes):")
        folder = out / target.replace(".", "_")
        result = run([program] + TRAIN + ["--steps", "40", "--n", "10000", "--out", str(folder)],
                     limit=(before + size[target]) // 2)
        check_failure(result, folder, target, "File too large")
        if (folder / target).exists():
            fail(f"{target} exists although its write failed")
        if step_of(program, folder / "model.ckpt") != 40:
            fail("the trained model.ckpt was not kept")

    # 4. Optional: a real full disk, a size-limited tmpfs (root, where mount is allowed).
    if args.tmpfs:
        tmpfs_cases(program, out, size)
    print("PASS: every full-disk write failed cleanly")


if __name__ == "__main__":
    main()
