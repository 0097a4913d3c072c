#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""DDIM (eta = 0) in PyTorch from a given x_T, as ddpm samples it: the network of a safetensors
file (torch_models.py's ToyMlp or UNet), ddpm's default DDIM grid ("evenly N": round(i (T-1)/(N-1)),
half away from zero, as include/ddpm/samplers/grid.hpp and schedule.hpp's space_timesteps), the
schedule's alpha-bar at the kept steps, x0^ clipped to [-1, 1] when the run clips, and the samples
written as .npy; so `ddpm-toy2d/ddpm-images sample --sampler ddim --x-init X.npy` compares with it
point for point.

  torch_ddim.py --weights F.safetensors --x-init X.npy --out S.npy [--sample-steps 50]

The run (network, schedule, prediction, clipping, data standardization) comes from the file's
__metadata__ when `export` wrote it (run.format, diffusion.betas, model.*, data.*); a file without
it is described by the options (defaults: ToyMLP for an N x 2 x_T, UNetSmall with the image shape
of an N x C x H x W x_T; linear T = 1000, eps; clipping for images), as `sample --weights` does.
Samples are in the data's units when the metadata carries a standardization (data.mean, data.std),
else in the model's.

Run with an interpreter that has torch and numpy (Debian's python3-torch: /usr/bin/python3).
"""

import argparse
import json
import math
import os
import sys

import numpy
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import safetensors_io  # noqa: E402  (benchmarks/safetensors_io.py)
import torch_models  # noqa: E402


def linear_betas(T, beta_start=1e-4, beta_end=0.02):
    """NoiseSchedule::linear: the endpoints are of T = 1000, scaled by 1000 / T."""
    scale = 1000.0 / T
    if T == 1:
        return [scale * beta_start]
    return [scale * beta_start + (i / (T - 1)) * (scale * beta_end - scale * beta_start)
            for i in range(T)]


def cosine_betas(T, s=0.008, max_beta=0.999):
    """NoiseSchedule::cosine (Nichol & Dhariwal)."""
    def f(u):
        c = math.cos((u + s) / (1.0 + s) * math.pi / 2.0)
        return c * c
    return [min(1.0 - f((i + 1) / T) / f(i / T), max_beta) for i in range(T)]


def evenly(T, n):
    """space_timesteps(T, "evenly n"): lround(i (T - 1) / (n - 1)), half away from zero."""
    if n == 1:
        return [0]
    stride = (T - 1) / (n - 1)
    kept = []
    for i in range(n):
        v = i * stride
        kept.append(int(math.floor(v)) + (1 if v - math.floor(v) >= 0.5 else 0))
    return kept


def parse_list(text, kind=float):
    return [] if text == "none" else [kind(x) for x in text.split(",")]


class Run:
    """What sampling needs of a run: the network, betas, prediction, clipping, standardization."""

    def __init__(self, kind, config, betas, output="eps", variance="fixed-small", clip_x0=False,
                 mean=(), std=()):
        self.kind, self.config, self.betas = kind, config, betas
        self.output, self.variance, self.clip_x0 = output, variance, clip_x0
        self.mean, self.std = list(mean), list(std)

    @staticmethod
    def from_metadata(meta):
        if meta.get("diffusion.respacing", "none") != "none":
            raise SystemExit("torch_ddim.py: a run trained on a respaced schedule is not supported")
        kind, config = torch_models.config_from_metadata(meta)
        return Run(kind, config, parse_list(meta["diffusion.betas"]),
                   meta["diffusion.output"], meta["diffusion.variance"],
                   meta["diffusion.clip_x0"] == "true",
                   parse_list(meta.get("data.mean", "none")),
                   parse_list(meta.get("data.std", "none")))

    @staticmethod
    def from_options(args, x_shape):
        learned = args.variance in ("learned", "learned-range")
        if len(x_shape) == 2:
            kind, config = "mlp", dict(torch_models.TOY_MLP_CONFIG)
            config["input_dim"] = x_shape[1]
            config["output_dim"] = (2 if learned else 1) * x_shape[1]
        else:
            kind, config = "unet", dict(torch_models.UNET_SMALL_CONFIG)
            c, h, w = x_shape[1:]
            config.update(image_channels=c, height=h, width=w,
                          output_channels=(2 if learned else 1) * c)
        config.update(json.loads(args.config))
        config = torch_models.full_config(kind, config)
        if args.schedule == "linear":
            betas = linear_betas(args.T, args.beta_start, args.beta_end)
        else:
            betas = cosine_betas(args.T)
        clip = args.clip_x0 if args.clip_x0 is not None else kind == "unet"
        return Run(kind, config, betas, args.output, args.variance, clip)


class Schedule:
    """Alpha-bar through sums of log1p and 1 - alpha-bar through expm1 (as schedule.hpp's
    derive()), in float64, at the kept steps."""

    def __init__(self, betas, kept):
        log_ab, total = [], 0.0
        for b in betas:
            total += math.log1p(-b) if b < 1.0 else -math.inf
            log_ab.append(total)
        self.kept = kept
        self.log_ab = [log_ab[k] for k in kept]

    def level(self, s):
        """(sqrt ab, sqrt(1 - ab), sqrt(1/ab), sqrt(1/ab - 1)) at kept step s, float64."""
        ab = math.exp(self.log_ab[s])
        one_minus = -math.expm1(self.log_ab[s])
        recip = math.inf if ab == 0.0 else math.sqrt(1.0 / ab)
        recipm1 = math.inf if ab == 0.0 else math.sqrt(one_minus / ab)
        return math.sqrt(ab), math.sqrt(one_minus), recip, recipm1

    def prev(self, s):
        """(sqrt(ab_prev), sqrt(1 - ab_prev)) of the previous kept step (1, 0 before the first)."""
        if s == 0:
            return 1.0, 0.0
        return math.sqrt(math.exp(self.log_ab[s - 1])), math.sqrt(-math.expm1(self.log_ab[s - 1]))


@torch.inference_mode()
def ddim(model, run, x, steps, dtype, labels=None):
    """x_T -> x_0 by DDIM eta = 0 over the evenly grid of `steps` steps; x: [N, D] or [N, C, H, W]
    (a tensor of `dtype`). Coefficients are float64 rounded to `dtype`, as ddpm's Real."""
    T = len(run.betas)
    sched = Schedule(run.betas, evenly(T, min(steps, T)))
    c = lambda v: torch.tensor(v, dtype=dtype)  # noqa: E731
    channels = x.shape[1]
    for s in reversed(range(len(sched.kept))):
        t = torch.full((x.shape[0],), sched.kept[s], dtype=torch.long)
        out = model(x, t, labels) if labels is not None else model(x, t)
        out = out[:, :channels]  # a learned variance's second half is not used by DDIM
        sqrt_ab, sqrt_1m_ab, sqrt_recip_ab, sqrt_recipm1_ab = (c(v) for v in sched.level(s))
        if run.output == "eps":
            x0 = sqrt_recip_ab * x - sqrt_recipm1_ab * out
        elif run.output == "x0":
            x0 = out
        else:  # v
            x0 = sqrt_ab * x - sqrt_1m_ab * out
        clipped = None
        if run.clip_x0:
            clipped = (x0 > 1) | (x0 < -1)
            x0 = x0.clamp(-1.0, 1.0)
        # eps^ from x0^ (diffusion.hpp's eps_from_x0), or the model's own eps where unclipped.
        if math.isinf(float(sqrt_recip_ab)):
            from_x0 = x
        elif float(sqrt_recipm1_ab) > 0:
            from_x0 = (sqrt_recip_ab * x - x0) / sqrt_recipm1_ab
        else:
            from_x0 = torch.zeros_like(x)
        if run.output == "eps":
            eps = torch.where(clipped, from_x0, out) if clipped is not None else out
        else:
            eps = from_x0
        x0_coef, eps_coef = sched.prev(s)
        x = c(x0_coef) * x0 + (c(eps_coef) * eps if eps_coef > 0 else 0.0)
    return x


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--weights", required=True, help="safetensors file (state_dict of "
                   "torch_models.ToyMlp or UNet)")
    p.add_argument("--x-init", required=True, help="x_T: .npy of N x D or N x C x H x W")
    p.add_argument("--out", required=True, help="the samples, .npy (float32, x_T's shape)")
    p.add_argument("--sample-steps", type=int, default=50, help="DDIM steps (evenly grid)")
    p.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    p.add_argument("--label", type=int, default=None,
                   help="class of every sample for a conditional network (-1: none)")
    p.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: default)")
    g = p.add_argument_group("the run of a file without __metadata__ (as `sample --weights`)")
    g.add_argument("--config", default="{}", help="torch_models config fields as JSON, e.g. "
                   "'{\"width\": 32, \"depth\": 2}' (defaults: ToyMLP or UNetSmall)")
    g.add_argument("--schedule", choices=["linear", "cosine"], default="linear")
    g.add_argument("--T", type=int, default=1000)
    g.add_argument("--beta-start", type=float, default=1e-4)
    g.add_argument("--beta-end", type=float, default=0.02)
    g.add_argument("--output", choices=["eps", "x0", "v"], default="eps")
    g.add_argument("--variance", default="fixed-small")
    g.add_argument("--clip-x0", type=lambda s: s == "true", default=None,
                   help="true or false (default: true for images, false for points)")
    args = p.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)

    x_T = numpy.load(args.x_init)
    tensors, meta = safetensors_io.load(args.weights, as_="torch")
    run = Run.from_metadata(meta) if "run.format" in meta else Run.from_options(args, x_T.shape)
    dtype = {"float32": torch.float32, "float64": torch.float64}[args.dtype]
    model = torch_models.build(run.kind, run.config).to(dtype)
    model.load_state_dict({k: v.to(dtype) for k, v in tensors.items()}, strict=True)
    model.eval()
    if run.kind == "unet":
        c = run.config
        shape = (x_T.shape[0], c["image_channels"], c["height"], c["width"])
    else:
        shape = (x_T.shape[0], run.config["input_dim"])
    x = torch.from_numpy(numpy.ascontiguousarray(x_T)).to(dtype).reshape(shape)
    labels = None
    if args.label is not None:
        labels = torch.full((x.shape[0],), args.label, dtype=torch.long)
    samples = ddim(model, run, x, args.sample_steps, dtype, labels).to(torch.float64).numpy()
    if run.std:  # the data's units (Standardization::to_data)
        samples = samples * numpy.array(run.std) + numpy.array(run.mean)
    numpy.save(args.out, samples.astype(numpy.float32))
    steps = min(args.sample_steps, len(run.betas))
    print(f"wrote {args.out}: {samples.shape[0]} samples, DDIM {steps} steps (eta 0), {run.kind}, "
          f"{run.output}, clip_x0 {run.clip_x0}")


if __name__ == "__main__":
    main()
