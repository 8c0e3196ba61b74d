"""Thin models around torch.nn layers, written as users write them (the benchmark's user's own file)."""

from typing import Optional

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence


class PaddedEncoder(nn.Module):
    """A TransformerEncoder fed a key padding mask (True = padding)."""

    def __init__(self, d: int = 16, heads: int = 2, layers: int = 2):
        super().__init__()
        layer = nn.TransformerEncoderLayer(d, heads, dim_feedforward=32, dropout=0.1, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=True)

    def forward(self, src, pad_mask: Optional[torch.Tensor] = None):
        return self.encoder(src, src_key_padding_mask=pad_mask)


def causal_mask(n: int, device: torch.device):
    """-inf above the diagonal: position i attends to positions <= i."""
    return torch.triu(torch.full((n, n), float("-inf"), device=device), diagonal=1)


class CausalEncoder(nn.Module):
    """A decoder-only stack: TransformerEncoder with a causal mask built for the input's length."""

    def __init__(self, d: int = 16, heads: int = 2, layers: int = 2):
        super().__init__()
        layer = nn.TransformerEncoderLayer(d, heads, dim_feedforward=32, dropout=0.1, batch_first=True,
                                           norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)

    def forward(self, src):
        mask = causal_mask(src.size(1), src.device)
        return self.encoder(src, mask=mask, is_causal=True)


class PackedLSTM(nn.Module):
    """Variable-length batches through an LSTM via packing, as speech and NLP models do."""

    def __init__(self, d: int = 8, hidden: int = 16):
        super().__init__()
        self.lstm = nn.LSTM(d, hidden, num_layers=2, dropout=0.2, batch_first=True)

    def forward(self, x, lengths):
        packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        out, _ = self.lstm(packed)
        padded, _ = pad_packed_sequence(out, batch_first=True)
        return padded


class Tagger(nn.Module):
    """A sequence tagger: an RNN (LSTM or GRU) and a linear head."""

    def __init__(self, cell: str = "lstm", d: int = 8, hidden: int = 16, batch_first: bool = True):
        super().__init__()
        rnn = nn.LSTM if cell == "lstm" else nn.GRU
        self.rnn = rnn(d, hidden, num_layers=2, dropout=0.2, batch_first=batch_first)
        self.head = nn.Linear(hidden, 4)

    def forward(self, x):
        out, _ = self.rnn(x)
        return self.head(out)
