#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""The ToyMLP and UNetSmall reference workloads of BENCHMARKS.md and the point-cloud train step
(Luo & Hu's model) in PyTorch, printed as one JSON object with the same keys as ddpm-bench
(medians, and the GFLOP/s they imply with the same FLOP model).

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

import torch_models

# 2 FLOP per multiply-add; forward 66*256 + 2*256*256 + 256*2 multiply-adds per sample; a train
# step counts the backward as 2x the forward; a sampling step is one forward per point.
TOY_MLP_MACS = 66 * 256 + 2 * 256 * 256 + 256 * 2
# UNetSmall forward per image: 138,318,976 multiply-adds in its convolutions, linear layers and
# the two attention products (BENCHMARKS.md's ~276.6 MFLOP); a train step again counts as 3x.
UNET_SMALL_FORWARD_FLOP = 2.0 * 138_318_976
UNET_SMALL_PARAMETERS = 793_697
# The default ddpm::nn::PointCloudModel per point: decoder 328,448 and encoder 180,608
# multiply-adds (per-shape context and head products left out); a train step counts as 3x.
POINT_CLOUD_MACS = 328_448 + 180_608
TRAIN_STEPS_PER_REPEAT = 20
KEYS = ["toy_train_b256_ms", "toy_train_b4096_ms", "toy_ddpm1000_n10000_s", "toy_ddim50_n10000_s",
        "unet_train_b64_ms", "unet_forward_b64_ms", "point_train_s16_n2048_ms"]


class ToyMlp(torch_models.ToyMlp):
    """concat(x, emb64) -> Linear(66,256) -> SiLU -> Linear(256,256) -> SiLU -> Linear(256,256)
    -> SiLU -> Linear(256,2): torch_models.ToyMlp with nn::toy_mlp_config()'s settings."""

    def __init__(self):
        super().__init__(torch_models.TOY_MLP_CONFIG)


class UNetSmall(torch_models.UNet):
    """UNetSmall of BENCHMARKS.md, as ddpm::nn::unet_small_config(): channels 32, 64, 64 at 28, 14,
    7, one ResBlock per level, attention in the middle only, time embedding 32 -> 128 -> 128
    (torch_models.UNet with those settings; its state_dict names are ddpm's)."""

    def __init__(self):
        super().__init__(torch_models.UNET_SMALL_CONFIG)


class ConcatSquashLinear(torch.nn.Module):
    """Luo & Hu's layer: (x W + b) * sigmoid(c W_g + b_g) + c W_h, c one context row per shape."""

    def __init__(self, dim_in, dim_out, dim_ctx):
        super().__init__()
        self.layer = torch.nn.Linear(dim_in, dim_out)
        self.hyper_bias = torch.nn.Linear(dim_ctx, dim_out, bias=False)
        self.hyper_gate = torch.nn.Linear(dim_ctx, dim_out)

    def forward(self, ctx, x):  # ctx (B, 1, C), x (B, N, in)
        return self.layer(x) * torch.sigmoid(self.hyper_gate(ctx)) + self.hyper_bias(ctx)


class PointwiseNet(torch.nn.Module):
    """eps_theta(x_t, beta, z): context [beta, sin beta, cos beta, z], ConcatSquashLinear layers
    3 -> 128 -> 256 -> 512 -> 256 -> 128 -> 3 with leaky ReLU between, residual output."""

    def __init__(self, latent=128, widths=(128, 256, 512, 256, 128)):
        super().__init__()
        dims = (3,) + tuple(widths) + (3,)
        self.layers = torch.nn.ModuleList(
            [ConcatSquashLinear(a, b, latent + 3) for a, b in zip(dims[:-1], dims[1:])])

    def forward(self, x, beta, z):
        beta = beta.view(-1, 1, 1)
        ctx = torch.cat([beta, torch.sin(beta), torch.cos(beta), z.unsqueeze(1)], dim=-1)
        out = x
        for i, layer in enumerate(self.layers):
            out = layer(ctx, out)
            if i < len(self.layers) - 1:
                out = F.leaky_relu(out, 0.01)
        return x + out


class PointNetEncoder(torch.nn.Module):
    """Per-point 3 -> 128 -> 128 -> 256 -> 512 (ReLU between, no batch norm, as ddpm's), max over
    the points, head 512 -> 256 -> 128 -> 2 * latent giving (mu, log sigma^2)."""

    def __init__(self, latent=128):
        super().__init__()
        self.point = torch.nn.ModuleList([torch.nn.Linear(a, b) for a, b in
                                          [(3, 128), (128, 128), (128, 256), (256, 512)]])
        self.head = torch.nn.Sequential(
            torch.nn.Linear(512, 256), torch.nn.ReLU(), torch.nn.Linear(256, 128), torch.nn.ReLU(),
            torch.nn.Linear(128, 2 * latent))
        self.latent = latent

    def forward(self, x):  # x (B, N, 3)
        h = x
        for i, layer in enumerate(self.point):
            h = layer(h)
            if i < len(self.point) - 1:
                h = F.relu(h)
        out = self.head(torch.max(h, dim=1)[0])
        return out[:, :self.latent], out[:, self.latent:]


class PointCloudModel(torch.nn.Module):
    """ddpm::nn::PointCloudModel's default network (Luo & Hu's GaussianVAE with a 128 code and
    the KL in closed form)."""

    def __init__(self, latent=128):
        super().__init__()
        self.encoder = PointNetEncoder(latent)
        self.decoder = PointwiseNet(latent)


def bench_point_train(shapes, points, repeats, kl_weight=1e-3):
    """One step as ddpm-bench's point_train times it: one t per shape, q_sample, encode, z = mu +
    sigma eps, eps_theta, L_simple + kl_weight * KL, backward, Adam."""
    model = PointCloudModel()
    opt = torch.optim.Adam(model.parameters(), lr=2e-3, betas=(0.9, 0.999))
    betas = torch.linspace(1e-4, 0.02, 100)
    ab = torch.cumprod(1.0 - betas, dim=0)
    x0 = F.normalize(torch.randn(shapes, points, 3), dim=-1)  # points on a sphere

    def step():
        t = torch.randint(0, 100, (shapes,))
        noise = torch.randn_like(x0)
        x_t = ab[t].sqrt().view(-1, 1, 1) * x0 + (1.0 - ab[t]).sqrt().view(-1, 1, 1) * noise
        mu, log_var = model.encoder(x0)
        z = mu + torch.exp(0.5 * log_var) * torch.randn_like(mu)
        kl = 0.5 * (mu * mu + log_var.exp() - 1.0 - log_var).sum(dim=1).mean()
        loss = F.mse_loss(model.decoder(x_t, betas[t], z), noise) + kl_weight * kl
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(3):
        step()
    s = timed_median(step, repeats * TRAIN_STEPS_PER_REPEAT)
    return 1e3 * s, 3.0 * 2.0 * POINT_CLOUD_MACS * shapes * points / s * 1e-9


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


def unet_small():
    model = UNetSmall()
    count = sum(p.numel() for p in model.parameters())
    assert count == UNET_SMALL_PARAMETERS, f"UNetSmall has {count} parameters"
    return model


def timed_median(work, runs):
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench_train(model, lr, x0_shape, forward_flop, repeats):
    """One step as ddpm-bench times it: uniform t, q_sample, forward, L_simple, backward, Adam."""
    opt = torch.optim.Adam(model.parameters(), lr=lr, betas=(0.9, 0.999))
    sched = Schedule()
    x0 = torch.randn(*x0_shape)
    batch = x0_shape[0]
    scale = (batch,) + (1,) * (len(x0_shape) - 1)

    def step():
        t = torch.randint(0, 1000, (batch,))
        noise = torch.randn_like(x0)
        x_t = (sched.sqrt_ab[t].view(scale) * x0 +
               sched.sqrt_one_minus_ab[t].view(scale) * noise)
        loss = F.mse_loss(model(x_t, t), noise)  # L_simple
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(5):
        step()
    s = timed_median(step, repeats * TRAIN_STEPS_PER_REPEAT)
    return 1e3 * s, 3.0 * forward_flop * batch / s * 1e-9


def bench_forward(model, x_shape, forward_flop, repeats):
    """model(x_t, t) in inference (one sampling step's network cost), timed as the train steps."""
    model.eval()
    batch = x_shape[0]
    x = torch.randn(*x_shape)
    t = torch.randint(0, 1000, (batch,))
    with torch.no_grad():
        for _ in range(3):
            model(x, t)
        s = timed_median(lambda: model(x, t), repeats * TRAIN_STEPS_PER_REPEAT)
    return 1e3 * s, forward_flop * batch / s * 1e-9


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
                        help="timed runs per sampling workload; train and UNet forward workloads "
                             "time 20 steps per run")
    parser.add_argument("--only", default="", help="comma-separated keys; default all")
    parser.add_argument("--small", action="store_true",
                        help="tiny sizes (ToyMLP batches 32/128, 64 points; UNet batch 2; 2 point "
                             "clouds of 64 points)")
    args = parser.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    wanted = args.only.split(",") if args.only else KEYS
    for key in wanted:
        if key not in KEYS:
            sys.exit(f"torch_reference.py: unknown key {key!r}; known keys: {' '.join(KEYS)}")
    b_small, b_large, points, b_unet = (32, 128, 64, 2) if args.small else (256, 4096, 10000, 64)
    clouds, cloud_points = (2, 64) if args.small else (16, 2048)

    out = {"implementation": "pytorch " + torch.__version__, "threads": torch.get_num_threads(),
           "repeats": args.repeats, "small": args.small,
           "train_steps_per_repeat": TRAIN_STEPS_PER_REPEAT}
    toy_flop = 2.0 * TOY_MLP_MACS
    image = (b_unet, 1, 28, 28)
    jobs = {
        "toy_train_b256_ms": lambda: bench_train(ToyMlp(), 1e-3, (b_small, 2), toy_flop,
                                                 args.repeats),
        "toy_train_b4096_ms": lambda: bench_train(ToyMlp(), 1e-3, (b_large, 2), toy_flop,
                                                  args.repeats),
        "toy_ddpm1000_n10000_s": lambda: bench_sampler(ancestral, Schedule(), points, args.repeats),
        "toy_ddim50_n10000_s": lambda: bench_sampler(
            ddim, Schedule(kept=evenly(1000, 50)), points, args.repeats),
        "unet_train_b64_ms": lambda: bench_train(unet_small(), 2e-4, image,
                                                 UNET_SMALL_FORWARD_FLOP, args.repeats),
        "unet_forward_b64_ms": lambda: bench_forward(unet_small(), image, UNET_SMALL_FORWARD_FLOP,
                                                     args.repeats),
        "point_train_s16_n2048_ms": lambda: bench_point_train(clouds, cloud_points, args.repeats),
    }
    for key in KEYS:
        if key in wanted:
            torch.manual_seed(1)
            value, gflops = jobs[key]()
            out[key] = value
            out[key.rsplit("_", 1)[0] + "_gflops"] = gflops
    print(json.dumps(out))


if __name__ == "__main__":
    main()
