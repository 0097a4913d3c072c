# SPDX-License-Identifier: MIT
"""PyTorch twins of ddpm's bundled networks (nn::Mlp, nn::UNet, nn::Classifier) for any
configuration, whose state_dict names and shapes are the ones ddpm/io/state_dict.hpp reads and
writes.

A configuration is a dict whose keys are the C++ config fields (MlpConfig, UNetConfig,
ClassifierConfig; `seed` and `zero_init*` are ignored: weights come from a state_dict or torch's
own initialization). Missing keys take the C++ defaults. `config_to_metadata` and
`config_from_metadata` turn one into the safetensors `__metadata__` strings and back, with the
`model.*` keys of ddpm's checkpoints (train/model_fields.hpp) plus `model.kind`.

Every parameter name is ddpm's parameters() name: "layer0.weight", "time.0.weight",
"down1.block0.attention.qkv.weight", ... Torch holds Linear weights as [out, in] (ddpm: in x out)
and Conv2d weights as [out, in, kh, kw] (ddpm: (kh * k + kw) * in + ci rows x out); the attention's
qkv and proj are 1x1 convolutions, as in torch_reference.py.

Inputs and outputs are those of the C++ models: x_t of shape [B, input_dim] for the Mlp and
[B, C, H, W] for the image models (ddpm's planar rows, reshaped), integer or real timesteps t of
shape [B], labels [B] with -1 (kNoLabel) or None for "no label". The sinusoidal embedding is
computed in float64 and rounded to the parameters' dtype, as ddpm does.
"""

import math

import torch
import torch.nn.functional as F

MLP_DEFAULTS = {
    "input_dim": 2, "output_dim": 2, "width": 256, "depth": 3, "embedding_dim": 64,
    "residual": False, "num_classes": 0, "activation": "silu", "zero_init_output": False,
    "max_period": 10000.0,
}
UNET_DEFAULTS = {
    "image_channels": 1, "height": 28, "width": 28, "output_channels": 1, "base_channels": 32,
    "channel_mult": [1, 2, 2], "res_blocks": 1, "attention_resolutions": [],
    "attention_heads": 1, "groups": 8, "dropout": 0.0, "num_classes": 0, "injection": "add",
    "zero_init": False, "max_period": 10000.0,
}
CLASSIFIER_DEFAULTS = {
    "image_channels": 1, "height": 28, "width": 28, "base_channels": 32,
    "channel_mult": [1, 2, 2], "res_blocks": 1, "groups": 8, "dropout": 0.0, "num_classes": 10,
    "feature_dim": 128, "max_period": 10000.0,
}
DEFAULTS = {"mlp": MLP_DEFAULTS, "unet": UNET_DEFAULTS, "classifier": CLASSIFIER_DEFAULTS}

# The reference settings of BENCHMARKS.md (nn::toy_mlp_config(), nn::unet_small_config()).
TOY_MLP_CONFIG = dict(MLP_DEFAULTS)
UNET_SMALL_CONFIG = dict(UNET_DEFAULTS)

# config field -> (metadata key, kind); the keys of ddpm's checkpoints (train/model_fields.hpp).
METADATA_KEYS = {
    "mlp": {
        "input_dim": ("model.input_dim", int), "output_dim": ("model.output_dim", int),
        "width": ("model.width", int), "depth": ("model.depth", int),
        "embedding_dim": ("model.embedding", int), "residual": ("model.residual", bool),
        "num_classes": ("model.classes", int), "activation": ("model.activation", str),
        "zero_init_output": ("model.zero_init_output", bool),
        "max_period": ("model.max_period", float),
    },
    "unet": {
        "image_channels": ("model.channels", int), "height": ("model.height", int),
        "width": ("model.width", int), "output_channels": ("model.output_channels", int),
        "base_channels": ("model.base", int), "channel_mult": ("model.mult", list),
        "res_blocks": ("model.res_blocks", int),
        "attention_resolutions": ("model.attention", list),
        "attention_heads": ("model.heads", int), "groups": ("model.groups", int),
        "dropout": ("model.dropout", float), "num_classes": ("model.classes", int),
        "injection": ("model.injection", str), "zero_init": ("model.zero_init", bool),
        "max_period": ("model.max_period", float),
    },
    # No checkpoint writes these yet; the same spelling as the UNet's where the field is shared.
    "classifier": {
        "image_channels": ("model.channels", int), "height": ("model.height", int),
        "width": ("model.width", int), "base_channels": ("model.base", int),
        "channel_mult": ("model.mult", list), "res_blocks": ("model.res_blocks", int),
        "groups": ("model.groups", int), "dropout": ("model.dropout", float),
        "num_classes": ("model.classes", int), "feature_dim": ("model.features", int),
        "max_period": ("model.max_period", float),
    },
}


def full_config(kind, config):
    """The C++ defaults overridden by `config`; unknown keys are an error."""
    defaults = DEFAULTS[kind]
    unknown = set(config) - set(defaults) - {"seed"}
    if unknown:
        raise KeyError(f"unknown {kind} config fields: {sorted(unknown)}")
    out = dict(defaults)
    out.update({k: v for k, v in config.items() if k != "seed"})
    return out


def _real_text(v):
    text = repr(float(v))
    return text[:-2] if text.endswith(".0") else text


def config_to_metadata(kind, config):
    """{"model.kind": kind, "model.width": "256", ...}: every field as ddpm writes it."""
    config = full_config(kind, config)
    meta = {"model.kind": kind}
    for field, (key, type_) in METADATA_KEYS[kind].items():
        v = config[field]
        if type_ is bool:
            meta[key] = "true" if v else "false"
        elif type_ is list:
            meta[key] = ",".join(str(int(x)) for x in v) if len(v) else "none"
        elif type_ is float:
            meta[key] = _real_text(v)
        else:
            meta[key] = str(v)
    return meta


def config_from_metadata(metadata):
    """(kind, config) from __metadata__ written by config_to_metadata (or a ddpm export)."""
    kind = metadata.get("model.kind")
    if kind not in METADATA_KEYS:
        raise ValueError(f"__metadata__ model.kind = {kind!r}; expected one of "
                         f"{sorted(METADATA_KEYS)}")
    config = {}
    for field, (key, type_) in METADATA_KEYS[kind].items():
        if key not in metadata:
            continue  # the C++ default
        text = metadata[key]
        if type_ is bool:
            if text not in ("true", "false"):
                raise ValueError(f"__metadata__ {key} = {text!r} is not true or false")
            config[field] = text == "true"
        elif type_ is list:
            config[field] = [] if text == "none" else [int(x) for x in text.split(",")]
        else:
            config[field] = type_(text)
    return kind, full_config(kind, config)


def build(kind, config):
    """The module of `kind` ("mlp", "unet" or "classifier") for `config`."""
    return {"mlp": ToyMlp, "unet": UNet, "classifier": Classifier}[kind](config)


def sinusoidal_embedding(t, dim, max_period=10000.0, dtype=torch.float32):
    """emb = [cos(t freqs), sin(t freqs)] (+ a zero column when dim is odd), freqs_i =
    exp(-ln(max_period) i / half); computed in float64 and rounded to `dtype`, as ddpm does."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float64) / half)
    args = t.to(torch.float64)[:, None] * freqs[None, :]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros(t.shape[0], 1, dtype=torch.float64)], dim=1)
    return emb.to(dtype)


def activation(name):
    return {
        "identity": lambda z: z,
        "relu": F.relu,
        "silu": F.silu,
        "gelu": lambda z: F.gelu(z, approximate="tanh"),
    }[name]


def _label_rows(labels, batch, num_classes, device):
    """Rows of the label table: the label, or the last row ("no label") for -1 or None."""
    if labels is None:
        return torch.full((batch,), num_classes, dtype=torch.long, device=device)
    labels = torch.as_tensor(labels, dtype=torch.long, device=device)
    return torch.where(labels < 0, torch.full_like(labels, num_classes), labels)


class ToyMlp(torch.nn.Module):
    """nn::Mlp: h_0 = f(layer0([x, e])), h_k = f(layer_k(h_{k-1})) (+ h_{k-1} if residual),
    out = layer_depth(h_{depth-1}), e = sinusoidal(t) (+ label_embedding[y])."""

    def __init__(self, config=None):
        super().__init__()
        self.config = c = full_config("mlp", config or {})
        self.f = activation(c["activation"])
        for k in range(c["depth"]):
            fan_in = c["input_dim"] + c["embedding_dim"] if k == 0 else c["width"]
            self.add_module(f"layer{k}", torch.nn.Linear(fan_in, c["width"]))
        self.add_module(f"layer{c['depth']}", torch.nn.Linear(c["width"], c["output_dim"]))
        if c["num_classes"] > 0:
            self.label_embedding = torch.nn.Embedding(c["num_classes"] + 1, c["embedding_dim"])

    def forward(self, x, t, labels=None):
        c = self.config
        emb = sinusoidal_embedding(t, c["embedding_dim"], c["max_period"], x.dtype)
        if c["num_classes"] > 0:
            emb = emb + self.label_embedding(
                _label_rows(labels, x.shape[0], c["num_classes"], x.device))
        h = torch.cat([x, emb], dim=1)
        for k in range(c["depth"]):
            z = self.f(getattr(self, f"layer{k}")(h))
            h = z + h if (c["residual"] and k > 0) else z
        return getattr(self, f"layer{c['depth']}")(h)


class ResBlock(torch.nn.Module):
    """skip(x) + conv2(dropout(SiLU(norm2(conv1(SiLU(norm1(x))) + emb(e))))), or with
    scale-shift SiLU(norm2(h) (1 + scale) + shift), [scale, shift] = emb(e); then, at the
    attention resolutions, the block's own `attention`."""

    def __init__(self, cin, cout, emb, groups, dropout, injection, attention_heads=0):
        super().__init__()
        self.scale_shift = injection == "scale-shift"
        self.norm1 = torch.nn.GroupNorm(groups, cin)
        self.conv1 = torch.nn.Conv2d(cin, cout, 3, padding=1)
        self.emb = torch.nn.Linear(emb, 2 * cout if self.scale_shift else cout)
        self.norm2 = torch.nn.GroupNorm(groups, cout)
        self.conv2 = torch.nn.Conv2d(cout, cout, 3, padding=1)
        self.dropout = torch.nn.Dropout(dropout)
        if cin != cout:
            self.skip = torch.nn.Conv2d(cin, cout, 1)
        if attention_heads > 0:
            self.attention = Attention(cout, attention_heads, groups)

    def forward(self, x, e):  # e = the TimeEmbedding output (SiLU applied)
        h = self.conv1(F.silu(self.norm1(x)))
        m = self.emb(e)[:, :, None, None]
        if self.scale_shift:
            scale, shift = m.chunk(2, dim=1)
            h = F.silu(self.norm2(h) * (1 + scale) + shift)
        else:
            h = F.silu(self.norm2(h + m))
        h = self.conv2(self.dropout(h))
        out = (self.skip(x) if hasattr(self, "skip") else x) + h
        return self.attention(out) if hasattr(self, "attention") else out


class Attention(torch.nn.Module):
    """x + proj(o), o = concat over heads of softmax(q_j^T k_j / sqrt(d)) applied to v_j, with
    [q | k | v] = qkv(norm(x)) and head j the channels j*d..(j+1)*d-1 of each of q, k, v."""

    def __init__(self, c, heads, groups):
        super().__init__()
        self.heads = heads
        self.norm = torch.nn.GroupNorm(groups, c)
        self.qkv = torch.nn.Conv2d(c, 3 * c, 1)
        self.proj = torch.nn.Conv2d(c, c, 1)

    def forward(self, x):
        b, c, h, w = x.shape
        d = c // self.heads
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, self.heads, d, h * w).unbind(1)
        a = torch.softmax(torch.einsum("bjdp,bjdq->bjpq", q, k) / math.sqrt(d), dim=-1)
        o = torch.einsum("bjpq,bjdq->bjdp", a, v)  # b x heads x d x HW
        return x + self.proj(o.reshape(b, c, h, w))


class UNet(torch.nn.Module):
    """nn::UNet: conv_in; per level l "down<l>" with res_blocks ResBlocks "block<b>" (the skips)
    and, but at the last level, a stride-2 "downsample"; "middle" block0, attention, block1; per
    level from the last "up<l>" with res_blocks ResBlocks on [h, skip] and, but at level 0,
    nearest x2 upsampling and "upsample_conv"; "out" norm, SiLU, conv."""

    def __init__(self, config=None):
        super().__init__()
        self.config = c = full_config("unet", config or {})
        emb = 4 * c["base_channels"]
        self.time = torch.nn.ModuleList(
            [torch.nn.Linear(c["base_channels"], emb), torch.nn.Linear(emb, emb)])
        if c["num_classes"] > 0:
            self.label_embedding = torch.nn.Embedding(c["num_classes"] + 1, emb)

        def block(cin, cout, side):
            heads = c["attention_heads"] if side in c["attention_resolutions"] else 0
            return ResBlock(cin, cout, emb, c["groups"], c["dropout"], c["injection"], heads)

        self.conv_in = torch.nn.Conv2d(c["image_channels"], c["base_channels"], 3, padding=1)
        levels = len(c["channel_mult"])
        ch = c["base_channels"]
        skip_channels = []
        for l, mult in enumerate(c["channel_mult"]):
            level = torch.nn.Module()
            cout = c["base_channels"] * mult
            for b in range(c["res_blocks"]):
                level.add_module(f"block{b}", block(ch, cout, c["height"] >> l))
                ch = cout
                skip_channels.append(ch)
            if l + 1 < levels:
                level.downsample = torch.nn.Conv2d(ch, ch, 3, stride=2, padding=1)
            self.add_module(f"down{l}", level)
        self.middle = torch.nn.Module()
        self.middle.block0 = ResBlock(ch, ch, emb, c["groups"], c["dropout"], c["injection"])
        self.middle.attention = Attention(ch, c["attention_heads"], c["groups"])
        self.middle.block1 = ResBlock(ch, ch, emb, c["groups"], c["dropout"], c["injection"])
        for l in reversed(range(levels)):
            level = torch.nn.Module()
            cout = c["base_channels"] * c["channel_mult"][l]
            for b in range(c["res_blocks"]):
                level.add_module(f"block{b}",
                                 block(ch + skip_channels.pop(), cout, c["height"] >> l))
                ch = cout
            if l > 0:
                level.upsample_conv = torch.nn.Conv2d(ch, ch, 3, padding=1)
            self.add_module(f"up{l}", level)
        self.out = torch.nn.Module()
        self.out.norm = torch.nn.GroupNorm(c["groups"], ch)
        self.out.conv = torch.nn.Conv2d(ch, c["output_channels"], 3, padding=1)

    def embedding(self, t, dtype, labels, batch):
        """e = SiLU(time.1(SiLU(time.0(sinusoidal(t)))) + label_embedding[y])."""
        c = self.config
        s = sinusoidal_embedding(t, c["base_channels"], c["max_period"], dtype)
        pre = self.time[1](F.silu(self.time[0](s)))
        if c["num_classes"] > 0:
            pre = pre + self.label_embedding(
                _label_rows(labels, batch, c["num_classes"], pre.device))
        return F.silu(pre)

    def forward(self, x, t, labels=None):
        c = self.config
        e = self.embedding(t, x.dtype, labels, x.shape[0])
        h = self.conv_in(x)
        skips = []
        levels = len(c["channel_mult"])
        for l in range(levels):
            level = getattr(self, f"down{l}")
            for b in range(c["res_blocks"]):
                h = getattr(level, f"block{b}")(h, e)
                skips.append(h)
            if l + 1 < levels:
                h = level.downsample(h)
        h = self.middle.block1(self.middle.attention(self.middle.block0(h, e)), e)
        for l in reversed(range(levels)):
            level = getattr(self, f"up{l}")
            for b in range(c["res_blocks"]):
                h = getattr(level, f"block{b}")(torch.cat([h, skips.pop()], dim=1), e)
            if l > 0:
                h = level.upsample_conv(F.interpolate(h, scale_factor=2, mode="nearest"))
        return self.out.conv(F.silu(self.out.norm(h)))


class Classifier(torch.nn.Module):
    """nn::Classifier: the UNet's down path (conv_in, "down<l>" ResBlocks and downsamples, no
    attention, no labels), "out" norm + SiLU, the mean over pixels, then head.0 (SiLU: the
    features) and head.1 (the logits)."""

    def __init__(self, config=None):
        super().__init__()
        self.config = c = full_config("classifier", config or {})
        emb = 4 * c["base_channels"]
        self.time = torch.nn.ModuleList(
            [torch.nn.Linear(c["base_channels"], emb), torch.nn.Linear(emb, emb)])
        self.conv_in = torch.nn.Conv2d(c["image_channels"], c["base_channels"], 3, padding=1)
        levels = len(c["channel_mult"])
        ch = c["base_channels"]
        for l, mult in enumerate(c["channel_mult"]):
            level = torch.nn.Module()
            cout = c["base_channels"] * mult
            for b in range(c["res_blocks"]):
                level.add_module(f"block{b}",
                                 ResBlock(ch, cout, emb, c["groups"], c["dropout"], "add"))
                ch = cout
            if l + 1 < levels:
                level.downsample = torch.nn.Conv2d(ch, ch, 3, stride=2, padding=1)
            self.add_module(f"down{l}", level)
        self.out = torch.nn.Module()
        self.out.norm = torch.nn.GroupNorm(c["groups"], ch)
        self.head = torch.nn.ModuleList(
            [torch.nn.Linear(ch, c["feature_dim"]), torch.nn.Linear(c["feature_dim"],
                                                                   c["num_classes"])])

    def features(self, x, t):
        c = self.config
        s = sinusoidal_embedding(t, c["base_channels"], c["max_period"], x.dtype)
        e = F.silu(self.time[1](F.silu(self.time[0](s))))
        h = self.conv_in(x)
        levels = len(c["channel_mult"])
        for l in range(levels):
            level = getattr(self, f"down{l}")
            for b in range(c["res_blocks"]):
                h = getattr(level, f"block{b}")(h, e)
            if l + 1 < levels:
                h = level.downsample(h)
        pooled = F.silu(self.out.norm(h)).mean(dim=(2, 3))
        return F.silu(self.head[0](pooled))

    def forward(self, x, t):
        return self.head[1](self.features(x, t))
