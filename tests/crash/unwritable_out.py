#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Every command that writes refuses an output it cannot write, before it reads data, trains or
samples.

For every command of ddpm-toy2d, ddpm-images, ddpm-pointcloud, ddpm-samplers and
ddpm-exact-mixture that writes files (train, train-classifier, sample, eval, reconstruct, export,
compare and ddpm-exact-mixture's three): --out below a regular file (no one can create it, root
included), --out naming a file, and a read-only folder (chmod 0555; as root the command runs as
`nobody`, since root passes permission bits). Export's --out names the file it writes: it gets
a file in each of those. Each must exit non-zero within seconds with a message naming --out, the
path and the reason, print no training or sampling progress, and leave the file or folder as it
was. The sample and eval commands get /dev/null as their checkpoint: it passes the check that the
input files exist and are readable, which comes first, and is never read.

  unwritable_out.py --program ddpm-toy2d=build/examples/toy2d/ddpm-toy2d --out /tmp/unwritable
"""

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
IMAGES = str(HERE.parent / "examples" / "fixtures" / "tiny_images")

# The commands and their (small) options; a run that got past the check would train or sample
# (or fail to read /dev/null as a checkpoint).
CKPT = ["--checkpoint", "/dev/null"]
COMMANDS = {
    "ddpm-toy2d": [["train", "--steps", "5"], ["train-classifier", "--steps", "5"],
                   ["sample"] + CKPT, ["eval"] + CKPT, ["export"] + CKPT],
    "ddpm-images": [["train", "--data", IMAGES, "--base", "8", "--mult", "1,2", "--steps", "2"],
                    ["train-classifier", "--data", IMAGES, "--steps", "2"],
                    ["sample"] + CKPT, ["eval"] + CKPT, ["export"] + CKPT],
    "ddpm-pointcloud": [["train", "--steps", "2"],
                        ["sample"] + CKPT + ["--prior", "/dev/null"], ["reconstruct"] + CKPT,
                        ["eval"] + CKPT + ["--prior", "/dev/null"]],
    "ddpm-samplers": [["compare", "--n", "100", "--nfe", "5"]],
    "ddpm-exact-mixture": [["--n", "100"], ["likelihood", "--n", "10"], ["inpaint", "--n", "10"]],
}
WRITES_A_FILE = {"export"}  # its --out is the file it writes, not a folder


def fail(message):
    print("FAIL: " + message, flush=True)
    sys.exit(1)


def as_nobody():
    os.setgroups([])
    os.setgid(65534)
    os.setuid(65534)


def expect_refusal(command, out, reasons, preexec=None):
    start = time.monotonic()
    result = subprocess.run(command + ["--out", str(out)], capture_output=True, text=True,
                            preexec_fn=preexec, timeout=60)
    seconds = time.monotonic() - start
    text = result.stdout + result.stderr
    if result.returncode == 0:
        fail(f"{' '.join(command)} --out {out} succeeded:\n{text}")
    if f"invalid --out = '{out}'" not in text or not any(r in text for r in reasons):
        fail(f"{' '.join(command)} --out {out}: the message does not name --out, the path and "
             f"one of {reasons}:\n{text}")
    if "loss" in text or "step" in text.replace("--steps", "") or "sampling" in text:
        fail(f"{' '.join(command)} --out {out} trained or sampled before refusing:\n{text}")
    print(f"  {seconds:.2f} s, exit {result.returncode}: {result.stderr.strip().splitlines()[-1]}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--program", action="append", required=True,
                        help="NAME=PATH, e.g. ddpm-toy2d=build/examples/toy2d/ddpm-toy2d")
    parser.add_argument("--out", required=True, help="scratch folder (emptied first)")
    args = parser.parse_args()
    out = Path(args.out).resolve()
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    file = out / "a_file"
    file.write_text("not a folder")
    read_only = out / "read_only"
    read_only.mkdir()
    read_only.chmod(0o555)
    out.chmod(0o755)
    root = os.geteuid() == 0
    for spec in args.program:
        name, path = spec.split("=", 1)
        for options in COMMANDS[name]:
            command = [path] + options
            # export: a file in each unwritable place.
            at = (lambda p: p / "model.safetensors") if options[0] in WRITES_A_FILE else \
                (lambda p: p)
            print(f"{name} {'(no subcommand)' if options[0].startswith('-') else options[0]}:")
            expect_refusal(command, at(file / "sub"), ["Not a directory"])
            expect_refusal(command, at(file),
                           ["is not a folder", "File exists", "Not a directory"])
            if file.read_text() != "not a folder":
                fail("the file in place of the folder was changed")
            # As root, run as nobody (the program must be readable and the scratch folder
            # traversable by others), since root may write anywhere.
            for target in [read_only, read_only / "run"]:
                expect_refusal(command, at(target), ["Permission denied"],
                               as_nobody if root else None)
            if any(read_only.iterdir()):
                fail("something was created in the read-only folder")
    read_only.chmod(0o755)
    print("PASS: every command refused each unwritable --out before training or sampling")


if __name__ == "__main__":
    main()
