#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""The ToyMLP reference workloads of BENCHMARKS.md in PyTorch, printed as one JSON object with the
same keys as ddpm-bench (medians, and the GFLOP/s they imply with the same FLOP model).

Run with the system interpreter and Debian's python3-torch; see compare.sh for the tuned
environment (OpenBLAS from libopenblas0-openmp with AVX-512 kernels, malloc settings).
"""

import argparse
import json
import math
import statistics
import sys
import time

import torch
import torch.nn.functional as F

# 2 FLOP per multiply-add; forward 66*256 + 2*256*256 + 256*2 multiply-adds per sample; a train
# step counts the backward as 2x the forward; a sampling step is one forward per point.
TOY_MLP_MACS = 66 * 256 + 2 * 256 * 256 + 256 * 2
TRAIN_STEPS_PER_REPEAT = 20
KEYS = ["toy_train_b256_ms", "toy_train_b4096_ms", "toy_ddpm1000_n10000_s", "toy_ddim50_n10000_s"]


def sinusoidal_embedding(t, dim=64, max_period=10000.0):
    """emb = [cos(t * freqs), sin(t * freqs)], freqs = exp(-ln(max_period) * i / half)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32) / half)
    args = t.to(torch.float32)[:, None] * freqs[None, :]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=1)


class ToyMlp(torch.nn.Module):
    """concat(x, emb64) -> Linear(66,256) -> SiLU -> Linear(256,256) -> SiLU -> Linear(256,256)
    -> SiLU -> Linear(256,2)."""

    def __init__(self):
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Linear(66, 256), torch.nn.SiLU(),
            torch.nn.Linear(256, 256), torch.nn.SiLU(),
            torch.nn.Linear(256, 256), torch.nn.SiLU(),
            torch.nn.Linear(256, 2))

    def forward(self, x, t):
        return self.net(torch.cat([x, sinusoidal_embedding(t)], dim=1))


class Schedule:
    """Ho et al. linear betas 1e-4..0.02 (float64 like ddpm, used as float32 tensors)."""

    def __init__(self, T=1000, kept=None):
        betas = torch.linspace(1e-4, 0.02, T, dtype=torch.float64)
        ab = torch.cumprod(1.0 - betas, dim=0)
        self.timesteps = list(range(T)) if kept is None else kept
        ab = ab[self.timesteps]  # respacing keeps alpha-bar at the kept steps
        ab_prev = torch.cat([torch.ones(1, dtype=torch.float64), ab[:-1]])
        betas = 1.0 - ab / ab_prev
        post_var = betas * (1.0 - ab_prev) / (1.0 - ab)
        f = lambda v: v.to(torch.float32)  # noqa: E731
        self.alphas_cumprod = ab
        self.alphas_cumprod_prev = ab_prev
        self.sqrt_ab = f(ab.sqrt())
        self.sqrt_one_minus_ab = f((1.0 - ab).sqrt())
        self.sqrt_recip_ab = f((1.0 / ab).sqrt())
        self.sqrt_recipm1_ab = f((1.0 / ab - 1.0).sqrt())
        self.coef1 = f(betas * ab_prev.sqrt() / (1.0 - ab))
        self.coef2 = f((1.0 - ab_prev) * (1.0 - betas).sqrt() / (1.0 - ab))
        self.log_var_clipped = f(torch.log(torch.cat([post_var[1:2], post_var[1:]])))


def evenly(T, n):
    """round(linspace(0, T-1, n)), half away from zero, as ddpm's "evenly N"."""
    stride = (T - 1) / (n - 1)
    return [int(math.floor(i * stride + 0.5)) for i in range(n)]


def bench_train(batch, repeats):
    torch.manual_seed(1)
    model = ToyMlp()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.9, 0.999))
    sched = Schedule()
    x0 = torch.randn(batch, 2)

    def step():
        t = torch.randint(0, 1000, (batch,))
        noise = torch.randn_like(x0)
        x_t = sched.sqrt_ab[t, None] * x0 + sched.sqrt_one_minus_ab[t, None] * noise
        loss = F.mse_loss(model(x_t, t), noise)  # L_simple
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(5):
        step()
    times = []
    for _ in range(repeats * TRAIN_STEPS_PER_REPEAT):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    s = statistics.median(times)
    return 1e3 * s, 6.0 * TOY_MLP_MACS * batch / s * 1e-9


@torch.inference_mode()
def ancestral(model, sched, n):
    x = torch.randn(n, 2)
    for s in reversed(range(len(sched.timesteps))):
        t = torch.full((n,), sched.timesteps[s], dtype=torch.long)
        eps = model(x, t)
        x0 = sched.sqrt_recip_ab[s] * x - sched.sqrt_recipm1_ab[s] * eps
        mean = sched.coef1[s] * x0 + sched.coef2[s] * x
        if s > 0:
            x = mean + torch.exp(0.5 * sched.log_var_clipped[s]) * torch.randn_like(x)
        else:
            x = mean
    return x


@torch.inference_mode()
def ddim(model, sched, n, eta=0.0):
    x = torch.randn(n, 2)
    for s in reversed(range(len(sched.timesteps))):
        t = torch.full((n,), sched.timesteps[s], dtype=torch.long)
        eps = model(x, t)
        ab = float(sched.alphas_cumprod[s])
        ab_prev = float(sched.alphas_cumprod_prev[s])
        x0 = sched.sqrt_recip_ab[s] * x - sched.sqrt_recipm1_ab[s] * eps
        sigma = eta * math.sqrt((1 - ab_prev) / (1 - ab)) * math.sqrt(1 - ab / ab_prev)
        x = math.sqrt(ab_prev) * x0 + math.sqrt(max(0.0, 1 - ab_prev - sigma * sigma)) * eps
        if s > 0 and sigma > 0:
            x = x + sigma * torch.randn_like(x)
    return x


def bench_sampler(sampler, sched, n, repeats):
    torch.manual_seed(1)
    model = ToyMlp().eval()
    with torch.inference_mode():  # warm-up at this batch size
        model(torch.randn(n, 2), torch.zeros(n, dtype=torch.long))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        sampler(model, sched, n)
        times.append(time.perf_counter() - start)
    s = statistics.median(times)
    return s, 2.0 * TOY_MLP_MACS * n * len(sched.timesteps) / s * 1e-9


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: default)")
    parser.add_argument("--repeats", type=int, default=5,
                        help="timed runs per sampling workload; train times 20 steps per run")
    parser.add_argument("--only", default="", help="comma-separated keys; default all")
    parser.add_argument("--small", action="store_true", help="tiny sizes (batches 32/128, 64 points)")
    args = parser.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    wanted = args.only.split(",") if args.only else KEYS
    for key in wanted:
        if key not in KEYS:
            sys.exit(f"torch_reference.py: unknown key {key!r}; known keys: {' '.join(KEYS)}")
    b_small, b_large, points = (32, 128, 64) if args.small else (256, 4096, 10000)

    out = {"implementation": "pytorch " + torch.__version__, "threads": torch.get_num_threads(),
           "repeats": args.repeats, "small": args.small,
           "train_steps_per_repeat": TRAIN_STEPS_PER_REPEAT}
    jobs = {
        "toy_train_b256_ms": lambda: bench_train(b_small, args.repeats),
        "toy_train_b4096_ms": lambda: bench_train(b_large, args.repeats),
        "toy_ddpm1000_n10000_s": lambda: bench_sampler(ancestral, Schedule(), points, args.repeats),
        "toy_ddim50_n10000_s": lambda: bench_sampler(
            ddim, Schedule(kept=evenly(1000, 50)), points, args.repeats),
    }
    for key in KEYS:
        if key in wanted:
            value, gflops = jobs[key]()
            out[key] = value
            out[key.rsplit("_", 1)[0] + "_gflops"] = gflops
    print(json.dumps(out))


if __name__ == "__main__":
    main()
