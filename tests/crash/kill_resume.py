#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Kills a ddpm training run with SIGKILL at random moments and resumes it each time.

Runs `PROGRAM train` once uninterrupted (the reference), then again in another folder, killed
--kills times at seeded random delays after its start and resumed with --resume after each kill.
Short checkpoint intervals make many kills land inside a checkpoint write; a kill is counted as
"during a write" when it leaves a <file>.tmp written by the killed process. After every kill:
  - every file in the folder is one of the run's final names or a stale "<final name>.tmp", and
    the killed process left at most one .tmp (the file it was writing);
  - model.ckpt, if any, loads (`PROGRAM info`), its step never goes back, and it is at most one
    checkpoint interval behind the last step the program reported (its progress bar, read through
    a pseudo-terminal so it redraws often).
At the end the resumed run's model.ckpt and samples must equal the reference's byte for byte.
Exits 0 on success, 1 on a failed check, 77 (skip) if the platform lacks what it needs.

  kill_resume.py --program build/examples/toy2d/ddpm-toy2d --kills 50 --out /tmp/kills
  kill_resume.py --program build/examples/images/ddpm-images --kind images --kills 50 --out ...
"""

import argparse
import os
import random
import re
import select
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

# What each kind of run writes, the files compared with the reference, and its train options
# (small and fast, checkpoints every few steps).
KINDS = {
    "toy2d": {
        "final": ["model.ckpt", "loss.csv", "loss.png", "forward.png", "reverse.png",
                  "samples.csv", "samples.npy", "samples.png", "compare.png"],
        "compare": ["model.ckpt", "samples.csv", "samples.npy", "samples.png", "reverse.png"],
        "label": "train swissroll",
        "args": lambda a: ["train", "--steps", str(a.steps), "--checkpoint-every",
                           str(a.every), "--batch", "64", "--width", "64", "--T", "100",
                           "--n", "500", "--threads", "1", "--seed", "7"],
    },
    "images": {
        "final": ["model.ckpt", "loss.csv", "loss.png", "samples.png", "trajectory.png"],
        "compare": ["model.ckpt", "samples.png", "trajectory.png"],
        "label": "train",
        "args": lambda a: ["train", "--data",
                           str(HERE.parent / "examples" / "fixtures" / "tiny_images"),
                           "--base", "8", "--mult", "1,2", "--T", "50", "--batch", "4",
                           "--steps", str(a.steps), "--checkpoint-every", str(a.every),
                           "--preview", "4", "--threads", "1", "--seed", "7"],
    },
}
PROBE = ".ddpm-write-probe.tmp"  # the --out check's probe file (examples/common_train.hpp)


def fail(message):
    print("FAIL: " + message, flush=True)
    sys.exit(1)


def spawn(command):
    """Starts `command` with stdout and stderr on a pseudo-terminal (so the progress bar redraws
    every 0.1 s); returns (process, fd to read its output)."""
    try:
        master, slave = os.openpty()
    except OSError:  # no pty: plain pipes (the bar then reports every 10 %)
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        return process, process.stdout.fileno()
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=slave, stderr=slave)
    os.close(slave)
    return process, master


def read_until(process, fd, deadline, on_chunk=None):
    """Reads the output until the process ends or `deadline` passes; returns (text, ended).
    `on_chunk(text so far)` follows each read."""
    chunks = []
    while True:
        timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
        ready, _, _ = select.select([fd], [], [], timeout)
        if not ready:
            return b"".join(chunks).decode(errors="replace"), False
        try:
            data = os.read(fd, 65536)
        except OSError:  # EIO: the pty's other side is closed
            data = b""
        if not data:
            process.wait()
            return b"".join(chunks).decode(errors="replace"), True
        chunks.append(data)
        if on_chunk:
            on_chunk(b"".join(chunks).decode(errors="replace"))


def drain(fd):
    """The output left after a kill."""
    chunks = []
    while True:
        try:
            ready, _, _ = select.select([fd], [], [], 1.0)
            data = os.read(fd, 65536) if ready else b""
        except OSError:
            data = b""
        if not data:
            break
        chunks.append(data)
    return b"".join(chunks).decode(errors="replace")


def last_reported_step(text, label):
    """The highest step the run's progress reports show (the bar counts from the resume step)."""
    resumed = re.search(r"resumed from .* at step (\d+)", text)
    first = int(resumed.group(1)) if resumed else 0
    # "LABEL [####....]  420/1000 ..." on a terminal, "LABEL: 420/1000 (42%) ..." otherwise.
    bar = re.escape(label) + r"(?: \[|:)[^\n\r]*?\s(\d+)/\d+\s"
    done = [int(m.group(1)) for m in re.finditer(bar, text)]
    finished = re.search(re.escape(label) + r": finished (\d+)/", text)
    if finished:
        done.append(int(finished.group(1)))
    return first + max(done) if done else None


def checkpoint_step(program, path):
    result = subprocess.run([program, "info", str(path)], capture_output=True, text=True)
    if result.returncode != 0:
        fail(f"{path} does not load after a kill:\n{result.stdout}{result.stderr}")
    match = re.search(r"^\s*step\s*[:=]?\s*(\d+)\s*$", result.stdout, re.MULTILINE)
    if not match:
        fail(f"no step in `info {path}`:\n{result.stdout}")
    return int(match.group(1))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--program", required=True, help="ddpm-toy2d or ddpm-images")
    parser.add_argument("--kind", choices=sorted(KINDS), default="toy2d")
    parser.add_argument("--kills", type=int, default=50)
    parser.add_argument("--steps", type=int, default=0, help="default: 100 per kill")
    parser.add_argument("--every", type=int, default=20, help="--checkpoint-every")
    parser.add_argument("--seed", type=int, default=1, help="seed of the kill moments")
    parser.add_argument("--out", required=True, help="scratch folder (emptied first)")
    args = parser.parse_args()
    if not hasattr(signal, "SIGKILL"):
        print("SKIP: no SIGKILL on this platform")
        sys.exit(77)
    kind = KINDS[args.kind]
    if args.steps == 0:
        args.steps = 100 * args.kills
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    reference, killed = out / "reference", out / "killed"
    base = [args.program] + kind["args"](args)

    # The reference run, timed: its start-up (until the first step is reported) and training.
    start = time.monotonic()
    moments = {}

    def timing(text):
        step = last_reported_step(text, kind["label"])
        if step is not None:
            moments.setdefault("first", time.monotonic() - start)
            if step >= args.steps:
                moments.setdefault("trained", time.monotonic() - start)
    process, fd = spawn(base + ["--out", str(reference)])
    text, _ = read_until(process, fd, None, timing)
    os.close(fd)
    if process.returncode != 0:
        fail("the uninterrupted run failed:\n" + text)
    duration = time.monotonic() - start
    startup = moments.get("first", 0.0)
    training = moments.get("trained", duration) - startup
    print(f"uninterrupted run: {duration:.2f} s, of which start-up {startup:.2f} s and "
          f"{args.steps} steps {training:.2f} s", flush=True)

    # Each kill comes at a uniform delay in (0, S + 2.5 D / kills) after the start, S the start-up
    # and D the training time: kills land in the start-up, between steps and in checkpoint
    # writes; once the steps are done (about when the kills are), in the final writes.
    rng = random.Random(args.seed)
    allowed = set(kind["final"])
    killed_during = {}  # file name -> kills that left its .tmp
    last_step = 0
    max_behind = 0
    completed_early = 0
    for k in range(args.kills):
        checkpoint = killed / "model.ckpt"
        command = base + ["--out", str(killed)]
        if checkpoint.exists():
            command += ["--resume", str(checkpoint)]
        before = {p.name: p.stat().st_mtime_ns for p in killed.glob("*")} if killed.exists() else {}
        delay = rng.uniform(0.0, startup + 2.5 * training / args.kills)
        process, fd = spawn(command)
        text, ended = read_until(process, fd, time.monotonic() + delay)
        if not ended:
            process.send_signal(signal.SIGKILL)
            process.wait()
            text += drain(fd)
        os.close(fd)
        if ended:
            if process.returncode != 0:
                fail(f"run {k} failed on its own (exit {process.returncode}):\n{text}")
            completed_early += 1
        files = {p.name: p.stat().st_mtime_ns for p in killed.glob("*")} if killed.exists() else {}
        for name in files:
            if name not in allowed and not (name.endswith(".tmp") and
                                            (name[:-4] in allowed or name == PROBE or
                                             name[:-4] == PROBE)):
                fail(f"kill {k}: unexpected file {name} in {killed}")
        fresh_tmp = [n for n in files if n.endswith(".tmp") and files[n] != before.get(n)]
        if len(fresh_tmp) > 1:
            fail(f"kill {k}: the killed process left {len(fresh_tmp)} .tmp files: {fresh_tmp}")
        for name in fresh_tmp:
            killed_during.setdefault(name[:-4], []).append(k)
        reported = last_reported_step(text, kind["label"])
        if checkpoint.exists():
            step = checkpoint_step(args.program, checkpoint)
            if step < last_step:
                fail(f"kill {k}: model.ckpt went back from step {last_step} to {step}")
            last_step = step
            if reported is not None:
                if step < reported - args.every:
                    fail(f"kill {k}: model.ckpt is at step {step}, more than one interval "
                         f"({args.every}) behind the reported step {reported}")
                max_behind = max(max_behind, reported - step)
        elif reported is not None and reported > args.every:
            fail(f"kill {k}: no model.ckpt although step {reported} was reported")
        where = ", during the write of " + fresh_tmp[0][:-4] if fresh_tmp else ""
        state = "finished" if ended else f"killed at {delay * 1000:.0f} ms{where}"
        print(f"run {k:2d}: {state}; reported step {reported}, model.ckpt step {last_step}",
              flush=True)

    # The last run, uninterrupted, must end exactly where the reference did.
    command = base + ["--out", str(killed)]
    if (killed / "model.ckpt").exists():
        command += ["--resume", str(killed / "model.ckpt")]
    process, fd = spawn(command)
    text, _ = read_until(process, fd, None)
    os.close(fd)
    if process.returncode != 0:
        fail("the final resumed run failed:\n" + text)
    for name in kind["compare"]:
        a, b = (reference / name).read_bytes(), (killed / name).read_bytes()
        if a != b:
            fail(f"{name} differs from the uninterrupted run's ({len(a)} vs {len(b)} bytes)")
    leftovers = sorted(p.name for p in killed.glob("*.tmp"))
    during = sum(len(v) for v in killed_during.values())
    print(f"{args.kills} kills ({completed_early} runs finished before their kill), "
          f"{during} during a write: " +
          (", ".join(f"{n} {len(v)}" for n, v in sorted(killed_during.items())) or "none") +
          f"; at most {max_behind} steps behind the reported step (interval {args.every}); "
          f"stale .tmp at the end: {leftovers or 'none'}", flush=True)
    print("PASS: " + ", ".join(kind["compare"]) + " equal the uninterrupted run's byte for byte")


if __name__ == "__main__":
    main()
