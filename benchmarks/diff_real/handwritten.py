"""Models written the way real code bases write them (the benchmark's "user's own file").

Each pattern is one that real model code uses and tracing gets wrong; the truth for each is in pairs.py,
established by running the traced and the scripted archives on input variants.
"""

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn


class ChunkPad(nn.Module):
    """Streaming encoders pad the time axis to a multiple of the chunk size, then pool per chunk."""

    def __init__(self, d: int = 8, chunk: int = 4):
        super().__init__()
        self.chunk = chunk
        self.proj = nn.Linear(d, d)

    def forward(self, x):
        t = x.size(1)
        pad = math.ceil(t / self.chunk) * self.chunk - t
        if pad > 0:
            x = F.pad(x, (0, 0, 0, pad))
        y = self.proj(x)
        return y.reshape(x.size(0), -1, self.chunk, x.size(2)).mean(2)


def match_length(x, n: int):
    """Resamples a sequence to n steps; most calls already match and return at once."""
    if x.size(1) == n:
        return x
    return F.interpolate(x.transpose(1, 2), size=n, mode="linear", align_corners=False).transpose(1, 2)


class EarlyExit(nn.Module):
    """Short inputs skip the summary branch; long ones are truncated to the window."""

    def __init__(self, d: int = 8, window: int = 6):
        super().__init__()
        self.window = window
        self.enc = nn.Linear(d, d)

    def forward(self, x):
        h = self.enc(x)
        if h.size(1) <= self.window:
            return match_length(h, self.window)
        h = h[:, -self.window:]
        return torch.tanh(h)


class Unbatched(nn.Module):
    """Accepts (T, D) and (B, T, D), as torch.nn layers do."""

    def __init__(self, d: int = 8):
        super().__init__()
        self.norm = nn.LayerNorm(d)
        self.proj = nn.Linear(d, d)

    def forward(self, x):
        if x.dim() == 3:
            batched = True
        else:
            batched = False
            x = x.unsqueeze(0)
        y = self.proj(self.norm(x)).cumsum(1)
        if not batched:
            y = y.squeeze(0)
        return y


class TopK(nn.Module):
    """Keeps the k best scores, fewer when the input has fewer."""

    def __init__(self, d: int = 8, k: int = 4):
        super().__init__()
        self.k = k
        self.score = nn.Linear(d, 1)

    def forward(self, x):
        s = self.score(x).squeeze(-1)
        k = min(self.k, s.size(-1))
        values, index = s.topk(k, dim=-1)
        picked = x.gather(1, index.unsqueeze(-1).expand(-1, -1, x.size(-1)))
        return picked * torch.sigmoid(values).unsqueeze(-1)


def drop_path(x, p: float = 0.0, training: bool = False):
    """Stochastic depth as timm writes it: nothing to do in eval mode."""
    if p == 0.0 or not training:
        return x
    keep = 1 - p
    mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
    return x * mask / keep


class NoisyResidual(nn.Module):
    """A training-only path (noise injection) and a stochastic-depth residual."""

    def __init__(self, d: int = 8, sigma: float = 0.1, p: float = 0.2):
        super().__init__()
        self.sigma = sigma
        self.p = p
        self.body = nn.Linear(d, d)

    def forward(self, x):
        if self.training:
            x = x + torch.randn_like(x) * self.sigma
        return x + drop_path(self.body(x), self.p, self.training)


class HeadAttention(nn.Module):
    """Multi-head self-attention written out, with configuration constants everywhere and an optional mask."""

    def __init__(self, d: int = 16, heads: int = 2):
        super().__init__()
        self.heads = heads
        self.head_dim = d // heads
        self.qkv = nn.Linear(d, 3 * d)
        self.out = nn.Linear(d, d)

    def forward(self, x, mask: Optional[torch.Tensor] = None):
        b, t, d = x.shape
        qkv = self.qkv(x).view(b, t, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        att = q @ k.transpose(-2, -1) / math.sqrt(self.head_dim)
        if mask is not None:
            att = att.masked_fill(mask[:, None, None, :], float("-inf"))
        att = att.softmax(-1)
        y = (att @ v).transpose(1, 2).reshape(b, t, d)
        return self.out(y)


class MinLength(nn.Module):
    """Short clips are zero-padded to the model's minimum length, then framed."""

    def __init__(self, d: int = 8, min_len: int = 8):
        super().__init__()
        self.min_len = min_len
        self.frame = nn.Conv1d(d, d, kernel_size=4, stride=4)

    def forward(self, x):
        t = x.size(-1)
        if t < self.min_len:
            x = F.pad(x, (0, self.min_len - t))
        return self.frame(x)
