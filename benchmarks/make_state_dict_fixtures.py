#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Writes the state_dict fixtures of tests/io/state_dict_test.cpp: a tiny ToyMlp, UNet and
Classifier of torch_models.py with random weights (every tensor random, norms included), each as
<name>.safetensors (the state_dict, its configuration in __metadata__) and <name>_io.safetensors
(inputs and the float64 torch outputs).

  make_state_dict_fixtures.py [--out DIR] [--seed N]
      write the fixtures (default DIR: tests/io/data)
  make_state_dict_fixtures.py --check WEIGHTS IO [WEIGHTS IO ...] [--tol X] [--out DIR]
      the other way round: load weights that ddpm exported (configuration from __metadata__)
      into the torch module with load_state_dict(strict=True), run it on IO's inputs and compare
      with IO's outputs; exit status 1 when max |difference| > tol (default 1e-10) for any pair.
      With --out, also write fixtures there (one Python start for tests/io/state_dict_test.cpp).

Run with an interpreter that has torch (Debian's python3-torch: /usr/bin/python3). The
safetensors files are written by safetensors_io.py (no `safetensors` package needed).
"""

import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import safetensors_io  # noqa: E402  (benchmarks/safetensors_io.py)
import torch_models  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_OUT = os.path.join(HERE, "..", "tests", "io", "data")

# Every option away from its default somewhere: odd embedding (zero column), residual, labels,
# tanh-GELU; scale-shift, dropout (off in eval), two heads, attention at one level, learned-variance
# output channels, a non-square image with two channels; two ResBlocks per level.
MLP = {"input_dim": 3, "output_dim": 3, "width": 8, "depth": 3, "embedding_dim": 7,
       "residual": True, "num_classes": 2, "activation": "gelu"}
UNET = {"image_channels": 2, "height": 8, "width": 4, "output_channels": 4, "base_channels": 4,
        "channel_mult": [1, 2], "res_blocks": 1, "attention_resolutions": [4],
        "attention_heads": 2, "groups": 2, "dropout": 0.1, "num_classes": 3,
        "injection": "scale-shift"}
CLASSIFIER = {"image_channels": 1, "height": 8, "width": 8, "base_channels": 4,
              "channel_mult": [1, 2], "res_blocks": 2, "groups": 2, "num_classes": 3,
              "feature_dim": 5}

def load(path):
    """(tensors as float64 torch tensors, metadata) of a safetensors file."""
    tensors, metadata = safetensors_io.load(path, as_="torch")
    return {k: v.to(torch.float64) for k, v in tensors.items()}, metadata


def randomize(model, generator):
    """Every parameter random: weights and biases uniform(+-1/sqrt(fan_in)) as torch's default,
    norm scales 1 + N(0, 0.2^2), norm shifts N(0, 0.2^2), label tables N(0, 1)."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            module = model.get_submodule(name.rsplit(".", 1)[0])
            if isinstance(module, torch.nn.GroupNorm):
                base = 1.0 if name.endswith(".weight") else 0.0
                p.copy_(base + 0.2 * torch.randn(p.shape, generator=generator, dtype=p.dtype))
            elif isinstance(module, torch.nn.Embedding):
                p.copy_(torch.randn(p.shape, generator=generator, dtype=p.dtype))
            else:
                fan_in = module.weight[0].numel()
                bound = fan_in ** -0.5
                p.copy_((2 * torch.rand(p.shape, generator=generator, dtype=p.dtype) - 1) * bound)


def write_fixtures(out, seed):
    os.makedirs(out, exist_ok=True)
    g = torch.Generator().manual_seed(seed)
    kinds = [("mlp", MLP, torch.float64), ("unet", UNET, torch.float32),
             ("classifier", CLASSIFIER, torch.float64)]
    for kind, config, stored in kinds:
        model = torch_models.build(kind, config).double().eval()
        randomize(model, g)
        if stored == torch.float32:  # values a float32 file holds exactly: float64 stays exact
            with torch.no_grad():
                for p in model.parameters():
                    p.copy_(p.float().double())
        state = {k: v.to(stored) for k, v in model.state_dict().items()}
        safetensors_io.save(os.path.join(out, f"torch_{kind}.safetensors"), state,
             torch_models.config_to_metadata(kind, config))
        batch = 3
        t = torch.tensor([0, 17, 999], dtype=torch.long)
        t_real = torch.tensor([0.5, 17.25, 998.75], dtype=torch.float64)
        if kind == "mlp":
            x = torch.randn(batch, config["input_dim"], generator=g, dtype=torch.float64)
        else:
            x = torch.randn(batch, config["image_channels"], config["height"], config["width"],
                            generator=g, dtype=torch.float64)
        io = {"x": x, "t": t.double()}
        with torch.no_grad():
            if kind == "classifier":
                io["features"] = model.features(x, t)
                io["logits"] = model(x, t)
            else:
                labels = torch.tensor([1, -1, 0], dtype=torch.long)
                io["labels"] = labels.double()
                io["out"] = model(x, t, labels)
                io["t_real"] = t_real
                io["out_real"] = model(x, t_real, labels)
        safetensors_io.save(os.path.join(out, f"torch_{kind}_io.safetensors"), io)
        count = sum(p.numel() for p in model.parameters())
        print(f"torch_{kind}: {count} parameters ({'F32' if stored == torch.float32 else 'F64'})")


def check(weights, io_path, tol):
    state, metadata = load(weights)
    kind, config = torch_models.config_from_metadata(metadata)
    model = torch_models.build(kind, config).double().eval()
    model.load_state_dict(state, strict=True)
    io, _ = load(io_path)
    if kind != "mlp":  # ddpm's planar rows are [B, C * H * W]
        io["x"] = io["x"].reshape(-1, config["image_channels"], config["height"], config["width"])
    t = io["t"].long()
    with torch.no_grad():
        if kind == "classifier":
            outputs = {"logits": model(io["x"], t), "features": model.features(io["x"], t)}
        else:
            labels = io["labels"].long() if "labels" in io else None
            outputs = {"out": model(io["x"], t, labels)}
    worst = 0.0
    for name, value in outputs.items():
        diff = (value.reshape(-1) - io[name].reshape(-1)).abs().max().item()
        print(f"{kind} {name}: max |torch - ddpm| = {diff:.3g}")
        worst = max(worst, diff)
    return 0 if worst <= tol else 1


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", help="write the fixtures here (default: tests/io/data, unless "
                        "--check is given)")
    parser.add_argument("--seed", type=int, default=16)
    parser.add_argument("--check", nargs="+", metavar="FILE",
                        help="WEIGHTS IO pairs exported by ddpm to compare with torch")
    parser.add_argument("--tol", type=float, default=1e-10)
    args = parser.parse_args()
    status = 0
    if args.check:
        if len(args.check) % 2:
            parser.error("--check takes WEIGHTS IO pairs")
        pairs = list(zip(args.check[0::2], args.check[1::2]))
        status = max(check(weights, io, args.tol) for weights, io in pairs)
    if args.out or not args.check:
        write_fixtures(args.out or DEFAULT_OUT, args.seed)
    sys.exit(status)


if __name__ == "__main__":
    main()
