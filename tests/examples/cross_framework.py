#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""The cross-framework DDIM test (issue 16): the same network and x_T sampled by ddpm's programs
and by PyTorch (benchmarks/torch_ddim.py), DDIM-50, eta = 0, float32, max |difference| <= 1e-4.

  1. PyTorch -> ddpm: torch_models.ToyMlp with the reference settings and a tiny UNet, random
     weights, saved as safetensors without __metadata__; `sample --weights` with the settings as
     options (the ToyMLP defaults; the tiny UNet's named). The random ToyMLP predicts x0 (and the
     UNet v, clipped) so that samples stay O(1): a random eps network's DDIM samples reach |x| ~
     400 (x0^ = sqrt(1/ab) x_t - ..., 157 at t = 999), where float32 itself rounds by 3e-5 and
     both frameworks land ~2e-4 from float64; that case is checked relative to max |x_0| (1e-5).
  2. ddpm -> PyTorch: a tiny eps ToyMLP trained on a user's CSV (so the standardization travels
     in __metadata__) and a tiny UNet trained on PNGs, `export`ed; PyTorch loads the state_dict
     strictly and samples with the run of __metadata__. `sample --weights` of the export also
     equals `sample --checkpoint` bitwise.

  cross_framework.py --toy2d BIN --images BIN --out DIR

Exits 77 (CTest: skipped) when torch or numpy cannot be imported.
"""

import argparse
import os
import subprocess
import sys
import time

try:
    import numpy
    import torch
except ImportError as e:
    print(f"skipped: the cross-framework test needs python3 with torch and numpy ({e})")
    sys.exit(77)

HERE = os.path.dirname(os.path.abspath(__file__))
BENCHMARKS = os.path.join(HERE, "..", "..", "benchmarks")
sys.path.insert(0, BENCHMARKS)
import safetensors_io  # noqa: E402
import torch_ddim  # noqa: E402
import torch_models  # noqa: E402

TOLERANCE = 1e-4  # float32 on both sides; measured differences are reported
RELATIVE = 1e-5   # of max |x_0|, for samples far from O(1) (float32's own rounding is 6e-8)
STEPS = 50
TINY_UNET = {"image_channels": 1, "height": 8, "width": 8, "output_channels": 1,
             "base_channels": 8, "channel_mult": [1, 2], "res_blocks": 1,
             "attention_resolutions": [4], "attention_heads": 2, "groups": 4}
TINY_UNET_OPTIONS = ["--base", "8", "--mult", "1,2", "--attention", "4", "--heads", "2",
                     "--groups", "4", "--channels", "1", "--height", "8", "--width", "8"]
failures = []


def run(*command):
    result = subprocess.run([str(c) for c in command], capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"FAILED: {' '.join(map(str, command))} (exit {result.returncode})\n"
                 f"{result.stdout}\n{result.stderr}")
    return result.stdout


def torch_samples(weights, x_init, out, **options):
    """torch_ddim.py's samples, in this process (one torch import for the whole test)."""
    tensors, meta = safetensors_io.load(weights, as_="torch")
    x_T = numpy.load(x_init)
    if "run.format" in meta:
        run_ = torch_ddim.Run.from_metadata(meta)
    else:
        args = argparse.Namespace(variance="fixed-small", config="{}", schedule="linear", T=1000,
                                  beta_start=1e-4, beta_end=0.02, output="eps", clip_x0=None)
        for k, v in options.items():
            setattr(args, k, v)
        run_ = torch_ddim.Run.from_options(args, x_T.shape)
    model = torch_models.build(run_.kind, run_.config)
    model.load_state_dict(tensors, strict=True)
    model.eval()
    x = torch.from_numpy(numpy.ascontiguousarray(x_T, dtype=numpy.float32))
    if run_.kind == "unet":
        c = run_.config
        x = x.reshape(x.shape[0], c["image_channels"], c["height"], c["width"])
    samples = torch_ddim.ddim(model, run_, x, STEPS, torch.float32).to(torch.float64).numpy()
    if run_.std:
        samples = samples * numpy.array(run_.std) + numpy.array(run_.mean)
    numpy.save(out, samples.astype(numpy.float32))
    return samples


def compare(what, ddpm_npy, torch_values, relative=False):
    a = numpy.load(ddpm_npy).astype(numpy.float64).reshape(torch_values.shape)
    diff = float(numpy.max(numpy.abs(a - torch_values)))
    scale = float(numpy.max(numpy.abs(torch_values)))
    bound = RELATIVE * scale if relative else TOLERANCE
    ok = diff <= bound and bool(numpy.all(numpy.isfinite(a)))
    print(f"{what}: max |ddpm - torch| = {diff:.3g} <= {bound:.3g} (max |x_0| {scale:.3g}, "
          f"{a.shape[0]} samples, DDIM-{STEPS}) {'ok' if ok else 'FAILED'}")
    if not ok:
        failures.append(what)


def randomize(model, generator):
    """Every parameter random, norms included (torch's init leaves GroupNorm at 1 and 0)."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 1 and ("norm" in name):
                base = 1.0 if name.endswith(".weight") else 0.0
                p.copy_(base + 0.2 * torch.randn(p.shape, generator=generator))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--toy2d", required=True)
    p.add_argument("--images", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--tiny-images", default=os.path.join(HERE, "fixtures", "tiny_images"))
    args = p.parse_args()
    os.makedirs(args.out, exist_ok=True)
    o = lambda name: os.path.join(args.out, name)  # noqa: E731
    start = time.time()
    torch.manual_seed(0)
    torch.set_num_threads(1)
    rng = numpy.random.default_rng(16)
    ddim = ["--sampler", "ddim", "--sample-steps", str(STEPS), "--threads", "1"]

    # 1. PyTorch -> ddpm: random weights, no __metadata__, the settings as options.
    numpy.save(o("x_toy.npy"), rng.standard_normal((64, 2)).astype(numpy.float32))
    toy = torch_models.ToyMlp(torch_models.TOY_MLP_CONFIG)
    with torch.no_grad():  # outputs O(1) (torch's init gives ~0.03), so x0 spans the data's scale
        toy.layer3.weight.mul_(30.0)
    safetensors_io.save(o("torch_toy.safetensors"), toy.state_dict())
    run(args.toy2d, "sample", "--weights", o("torch_toy.safetensors"), "--output", "x0",
        "--x-init", o("x_toy.npy"), *ddim, "--out", o("toy_from_torch"))
    compare("ToyMLP (x0), PyTorch -> ddpm", o("toy_from_torch/samples.npy"),
            torch_samples(o("torch_toy.safetensors"), o("x_toy.npy"), o("toy_torch.npy"),
                          output="x0"))
    run(args.toy2d, "sample", "--weights", o("torch_toy.safetensors"), "--x-init", o("x_toy.npy"),
        *ddim, "--out", o("toy_eps_from_torch"))
    compare("ToyMLP (eps), PyTorch -> ddpm", o("toy_eps_from_torch/samples.npy"),
            torch_samples(o("torch_toy.safetensors"), o("x_toy.npy"), o("toy_eps_torch.npy")),
            relative=True)

    numpy.save(o("x_unet.npy"), rng.standard_normal((6, 1, 8, 8)))  # float64: read as float32
    unet = torch_models.UNet(TINY_UNET)
    randomize(unet, torch.Generator().manual_seed(1))
    safetensors_io.save(o("torch_unet.safetensors"), unet.state_dict())
    run(args.images, "sample", "--weights", o("torch_unet.safetensors"), *TINY_UNET_OPTIONS,
        "--output", "v", "--x-init", o("x_unet.npy"), *ddim, "--npy-float", "--out",
        o("unet_from_torch"))
    compare("tiny UNet (v, clipped), PyTorch -> ddpm", o("unet_from_torch/samples.npy"),
            torch_samples(o("torch_unet.safetensors"), o("x_unet.npy"), o("unet_torch.npy"),
                          output="v", config='{"base_channels": 8, "channel_mult": [1, 2], '
                                 '"attention_resolutions": [4], "attention_heads": 2, '
                                 '"groups": 4}'))

    # 2. ddpm -> PyTorch: trained a few steps, exported with the run in __metadata__.
    points = rng.standard_normal((300, 2)) * [2.0, 0.5] + [3.0, -2.0]
    with open(o("points.csv"), "w") as f:
        f.write("x,y\n" + "".join(f"{a!r},{b!r}\n" for a, b in points))
    # 400 steps (0.1 s): samples O(1), where the absolute tolerance means something.
    run(args.toy2d, "train", "--data", o("points.csv"), "--steps", "400", "--width", "32",
        "--depth", "2", "--embedding", "16", "--batch", "64", "--n", "16", "--sample-steps", "5",
        "--threads", "1", "--out", o("toy_trained"))
    run(args.toy2d, "export", "--checkpoint", o("toy_trained/model.ckpt"), "--out",
        o("toy_export.safetensors"))
    run(args.toy2d, "sample", "--checkpoint", o("toy_trained/model.ckpt"), "--x-init",
        o("x_toy.npy"), *ddim, "--out", o("toy_ckpt"))
    run(args.toy2d, "sample", "--weights", o("toy_export.safetensors"), "--x-init", o("x_toy.npy"),
        *ddim, "--out", o("toy_weights"))
    compare("ToyMLP (eps) trained on a CSV, ddpm -> PyTorch", o("toy_ckpt/samples.npy"),
            torch_samples(o("toy_export.safetensors"), o("x_toy.npy"), o("toy_export_torch.npy")))
    with open(o("toy_ckpt/samples.npy"), "rb") as a, open(o("toy_weights/samples.npy"), "rb") as b:
        if a.read() != b.read():
            failures.append("toy2d sample --weights of the export != sample --checkpoint")
            print("toy2d: sample --weights of the export differs from sample --checkpoint FAILED")

    run(args.images, "train", "--data", args.tiny_images, "--base", "8", "--mult", "1,2",
        "--attention", "4", "--heads", "2", "--batch", "4", "--steps", "3",
        "--preview", "0", "--threads", "1", "--out", o("unet_trained"))
    run(args.images, "export", "--checkpoint", o("unet_trained/model.ckpt"), "--out",
        o("unet_export.safetensors"))
    run(args.images, "sample", "--checkpoint", o("unet_trained/model.ckpt"), "--x-init",
        o("x_unet.npy"), *ddim, "--npy-float", "--out", o("unet_ckpt"))
    run(args.images, "sample", "--weights", o("unet_export.safetensors"), "--x-init",
        o("x_unet.npy"), *ddim, "--npy-float", "--out", o("unet_weights"))
    compare("tiny UNet (eps, clipped) trained on PNGs, ddpm -> PyTorch", o("unet_ckpt/samples.npy"),
            torch_samples(o("unet_export.safetensors"), o("x_unet.npy"),
                          o("unet_export_torch.npy")))
    with open(o("unet_ckpt/samples.npy"), "rb") as a, \
            open(o("unet_weights/samples.npy"), "rb") as b:
        if a.read() != b.read():
            failures.append("images sample --weights of the export != sample --checkpoint")
            print("images: sample --weights of the export differs from sample --checkpoint FAILED")

    print(f"{5 - len([f for f in failures if 'PyTorch' in f])} of 5 comparisons within their "
          f"tolerance; {time.time() - start:.1f} s")
    if failures:
        sys.exit("FAILED: " + "; ".join(failures))


if __name__ == "__main__":
    main()
