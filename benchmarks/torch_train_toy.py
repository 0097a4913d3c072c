#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Trains the reference ToyMLP (torch_models.ToyMlp with TOY_MLP_CONFIG) in PyTorch with L_simple
on a 2D toy distribution (eps prediction, linear schedule, T = 1000: the settings `ddpm-toy2d
sample --weights` assumes for a file without __metadata__) and saves its state_dict as
safetensors, so the README's round trip "train in PyTorch, sample with ddpm" runs end to end.

  torch_train_toy.py --out toy_torch.safetensors [--dataset moons] [--steps 3000]

The data are BENCHMARKS.md's definitions; moons is standardized by its population mean and
standard deviations as ddpm-toy2d's moons is, so samples land in the same units as ddpm's.
Run with an interpreter that has torch (Debian's python3-torch: /usr/bin/python3).
"""

import argparse
import math
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import safetensors_io  # noqa: E402
import torch_ddim  # noqa: E402  (the schedule, as ddpm computes it)
import torch_models  # noqa: E402


def eight_gaussians(n, g):
    k = torch.randint(0, 8, (n,), generator=g)
    angle = k.double() * (math.pi / 4)
    centers = 4.0 * torch.stack([torch.cos(angle), torch.sin(angle)], 1)
    return ((centers + 0.5 * torch.randn(n, 2, generator=g, dtype=torch.float64)) / 1.414).float()


def moons(n, g):
    theta = torch.rand(n, generator=g, dtype=torch.float64) * math.pi
    outer = torch.rand(n, generator=g) < 0.5
    x = torch.where(outer, torch.cos(theta), 1.0 - torch.cos(theta))
    y = torch.where(outer, torch.sin(theta), 0.5 - torch.sin(theta))
    points = torch.stack([x, y], 1) + 0.05 * torch.randn(n, 2, generator=g, dtype=torch.float64)
    # The exact population moments (as include/ddpm/data/toy2d.hpp): mean (0.5, 0.25),
    # Var x = 3/4 + 0.05^2, Var y = 9/16 - 1/pi + 0.05^2.
    mean = torch.tensor([0.5, 0.25], dtype=torch.float64)
    std = torch.tensor([math.sqrt(0.75 + 0.05**2), math.sqrt(9 / 16 - 1 / math.pi + 0.05**2)],
                       dtype=torch.float64)
    return ((points - mean) / std).float()


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="the safetensors file to write")
    p.add_argument("--dataset", choices=["moons", "8gaussians"], default="moons")
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--batch", type=int, default=512)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    torch.manual_seed(args.seed)
    g = torch.Generator().manual_seed(args.seed)
    data = moons if args.dataset == "moons" else eight_gaussians
    model = torch_models.ToyMlp(torch_models.TOY_MLP_CONFIG)
    alpha_bar = torch.cumprod(
        1.0 - torch.tensor(torch_ddim.linear_betas(1000), dtype=torch.float64), 0)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    for step in range(1, args.steps + 1):
        x0 = data(args.batch, g)
        t = torch.randint(0, 1000, (args.batch,), generator=g)
        eps = torch.randn(args.batch, 2, generator=g)
        a = alpha_bar[t][:, None]
        x_t = (a.sqrt() * x0 + (1.0 - a).sqrt() * eps).float()
        loss = torch.mean((model(x_t, t) - eps) ** 2)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 500 == 0 or step == args.steps:
            print(f"step {step}/{args.steps}  loss {loss.item():.4f}", flush=True)
    safetensors_io.save(args.out, model.state_dict())
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
