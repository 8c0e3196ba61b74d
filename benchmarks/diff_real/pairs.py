"""The benchmark's traced/scripted pairs: how each model is built and traced, the input variants its two
archives are run on, and the truth: which variants make them differ and the source line responsible.

Truth entries are written from behaviour (``python -m benchmarks.diff_real truth`` runs every variant on
both archives and checks that exactly the variants named here differ), then mapped by hand to the line of
the ``if``/``for``/value responsible (``lines``: the lines a finding may name to count as pointing at it).
Library line numbers are for torch 2.13.0, timm 1.0.31 and transformers 5.25.0.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch


@dataclass
class Variant:
    name: str
    inputs: Callable[[], tuple]  # the arguments, in the traced forward's order
    train: bool = False
    grad: bool = True


@dataclass
class Truth:
    tag: str
    file: str  # the source file's path, its last components ("torch/nn/functional.py", "handwritten.py")
    lines: tuple[int, ...]  # lines a finding may name (the if/for/value, and the op that received the value)
    variants: tuple[str, ...]  # the variants this divergence shows in
    note: str = ""


@dataclass
class Pair:
    name: str
    source: str  # where the model code comes from
    build: Callable[[], torch.nn.Module]
    example: Callable[[], tuple]
    variants: list[Variant]
    truth: list[Truth] = field(default_factory=list)
    user_files: tuple[str, ...] = ()  # the user's own files (as Truth.file)


def rand(*shape, dtype=torch.float32, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)).to(dtype)


def pad_mask(batch, length, lengths):
    return torch.arange(length)[None, :] >= torch.tensor(lengths)[:, None]


def common(make, base, *, unbatched=None, dtype=True):
    """Variants every sequence model gets: ``make(batch, length, dtype)`` builds the inputs."""
    b, t = base
    out = [Variant("same", lambda: make(b, t, torch.float32)),
           Variant("batch1", lambda: make(1, t, torch.float32)),
           Variant("longer", lambda: make(b, t + 3, torch.float32)),
           Variant("shorter", lambda: make(b, max(1, t - 2), torch.float32)),
           Variant("train", lambda: make(b, t, torch.float32), train=True),
           Variant("no_grad", lambda: make(b, t, torch.float32), grad=False)]
    if dtype:
        out.append(Variant("float64", lambda: make(b, t, torch.float64)))
    if unbatched:
        out.append(Variant("unbatched", unbatched))
    return out


PAIRS: list[Pair] = []

FN, ACT, TR = "torch/nn/functional.py", "torch/nn/modules/activation.py", "torch/nn/modules/transformer.py"
RNN, DROP = "torch/nn/modules/rnn.py", "torch/nn/modules/dropout.py"
HW, WR = "handwritten.py", "wrappers.py"

# nn.Dropout in train mode: F.dropout's training argument (self.training) is False in an eval trace
DROPOUT = Truth("dropout", FN, (1491,), ("train",), "aten::dropout's train flag, from nn.Dropout's self.training")
DROPOUT_MODULE = Truth("dropout", DROP, (73,), ("train",), "the same divergence, at the call that passes it")
# attention dropout in MultiheadAttention: training=self.training -> `if not training: dropout_p = 0.0`
MHA_DROPOUT = [Truth("mha-dropout", FN, (7016, 7017, 7039, 7040, 7077), ("train",),
                     "dropout_p is 0.0 in an eval trace: the weights' dropout (need_weights) or SDPA's dropout_p"),
               Truth("mha-dropout", ACT, (1482, 1508), ("train",), "training=self.training passed to F.mha")]
# unbatched (2-D) input: is_batched = query.dim() == 3 and the branches on it
MHA_UNBATCHED = [Truth("unbatched", FN, (6529, 6549, 6790, 7055, 7090), ("unbatched",),
                       "_mha_shape_check's dim tests and `if not is_batched` (unsqueeze/squeeze)"),
                 Truth("unbatched", ACT, (1334, 1456, 1515), ("unbatched",),
                       "is_batched = query.dim() == 3; the batch_first transposes")]


def pair(name, source, build, example, variants, truth=(), user=()):
    PAIRS.append(Pair(name, source, build, example, variants, list(truth), tuple(user)))


# -- torch.nn --------------------------------------------------------------------------------------------
def _transformer():
    return torch.nn.Transformer(d_model=16, nhead=2, num_encoder_layers=2, num_decoder_layers=2,
                                dim_feedforward=32, dropout=0.1, batch_first=True)


pair("nn.Transformer", "torch.nn.Transformer (torch 2.13.0), d_model 16, 2+2 layers, traced with (src, tgt)",
     _transformer, lambda: (rand(2, 5, 16), rand(2, 4, 16, seed=1)),
     common(lambda b, t, dt: (rand(b, t, 16, dtype=dt), rand(b, t - 1, 16, dtype=dt, seed=1)), (2, 5),
            unbatched=lambda: (rand(5, 16), rand(4, 16, seed=1))),
     truth=[DROPOUT, DROPOUT_MODULE, *MHA_DROPOUT, *MHA_UNBATCHED, Truth("unbatched", TR, (270, 49), ("unbatched",), "is_batched = src.dim() == 3; _get_seq_len")])


def _padded():
    from benchmarks.diff_real.wrappers import PaddedEncoder
    return PaddedEncoder()


def _pad_inputs(b, t, dt, lengths=None):
    lengths = lengths or [t - i % 3 for i in range(b)]
    return rand(b, t, 16, dtype=dt), pad_mask(b, t, lengths)


pair("TransformerEncoder+padding", "torch.nn.TransformerEncoder(enable_nested_tensor=True) with "
     "src_key_padding_mask, in wrappers.PaddedEncoder", _padded, lambda: _pad_inputs(3, 6, torch.float32),
     common(_pad_inputs, (3, 6)) + [
         Variant("no_padding", lambda: _pad_inputs(3, 6, torch.float32, [6, 6, 6])),
         Variant("no_padding_no_grad", lambda: _pad_inputs(3, 6, torch.float32, [6, 6, 6]), grad=False),
         Variant("mask_none", lambda: (rand(3, 6, 16), None)),
         Variant("unbatched", lambda: tuple(x[0] for x in _pad_inputs(1, 6, torch.float32)))],
     user=("wrappers.py",),
     truth=[DROPOUT, DROPOUT_MODULE, *MHA_DROPOUT,
            Truth("nested", TR, (493, 521, 527, 528, 529, 545), ("no_grad",), "with grad disabled the scripted encoder takes the nested-tensor fast path: padded positions come out as 0"),
            Truth("mask-none", FN, (6593, 6795, 6832, 6934, 6993, 7001), ("mask_none",), "the padding mask was given while tracing; None fails in the trace"),
            Truth("mask-none", TR, (472,), ("mask_none",), "elif src_key_padding_mask is None"),
            Truth("mask-none", ACT, (1329, 1388, 1547, 1565), ("mask_none",), "key_padding_mask is not None"),
            *MHA_UNBATCHED, Truth("unbatched", TR, (49,), ("unbatched",), "_get_seq_len")])


def _causal():
    from benchmarks.diff_real.wrappers import CausalEncoder
    return CausalEncoder()


pair("TransformerEncoder+causal", "torch.nn.TransformerEncoder (norm_first) with a causal mask built from "
     "the input length, in wrappers.CausalEncoder", _causal, lambda: (rand(2, 6, 16),),
     common(lambda b, t, dt: (rand(b, t, 16, dtype=dt),), (2, 6), unbatched=lambda: (rand(6, 16),)),
     user=("wrappers.py",),
     truth=[DROPOUT, DROPOUT_MODULE, *MHA_DROPOUT, *MHA_UNBATCHED,
                                  Truth("unbatched", TR, (49,), ("unbatched",), "_get_seq_len")])


def _mha():
    return torch.nn.MultiheadAttention(16, 2, dropout=0.1, batch_first=True)


def _mha_inputs(b, t, dt):
    return rand(b, t, 16, dtype=dt), rand(b, t + 1, 16, dtype=dt, seed=1), rand(b, t + 1, 16, dtype=dt, seed=2)


pair("MultiheadAttention", "torch.nn.MultiheadAttention(16, 2, batch_first=True), traced with (q, k, v)",
     _mha, lambda: _mha_inputs(2, 4, torch.float32),
     common(_mha_inputs, (2, 4), unbatched=lambda: tuple(x[0] for x in _mha_inputs(1, 4, torch.float32))) + [
         Variant("self_attention", lambda: (rand(2, 4, 16),) * 3),
         Variant("self_attention_no_grad", lambda: (rand(2, 4, 16),) * 3, grad=False)],
     truth=[*MHA_DROPOUT, *MHA_UNBATCHED])


def _lstm():
    from benchmarks.diff_real.wrappers import Tagger
    return Tagger("lstm")


pair("LSTM", "torch.nn.LSTM(8, 16, num_layers=2, dropout=0.2, batch_first=True) + a linear head, in "
     "wrappers.Tagger (a scripted nn.LSTM alone has no forward to call)", _lstm,
     lambda: (rand(2, 5, 8),), common(lambda b, t, dt: (rand(b, t, 8, dtype=dt),), (2, 5),
                                      unbatched=lambda: (rand(5, 8),)), user=("wrappers.py",),
     truth=[Truth("rnn-train", RNN, (1164, 1171), ("train",), "_VF.lstm(..., self.dropout, self.training, ...): dropout between layers"),
            Truth("unbatched", RNN, (1117, 1119, 1200), ("unbatched",), "is_batched = input.dim() == 3")])


def _packed():
    from benchmarks.diff_real.wrappers import PackedLSTM
    return PackedLSTM()


def _packed_inputs(b, t, dt, lengths=None):
    return rand(b, t, 8, dtype=dt), torch.tensor(lengths or [t - i % 3 for i in range(b)])


pair("LSTM+packed", "torch.nn.LSTM through pack_padded_sequence/pad_packed_sequence, in wrappers.PackedLSTM",
     _packed, lambda: _packed_inputs(3, 6, torch.float32),
     common(_packed_inputs, (3, 6)) + [
         Variant("other_lengths", lambda: _packed_inputs(3, 6, torch.float32, [4, 6, 2])),
         Variant("shorter_max", lambda: _packed_inputs(3, 6, torch.float32, [5, 4, 3]))],
     user=("wrappers.py",),
     truth=[Truth("rnn-train", RNN, (1177, 1185), ("train",), "the packed _VF.lstm call's training flag")])


def _gru():
    from benchmarks.diff_real.wrappers import Tagger
    return Tagger("gru", batch_first=False)


pair("GRU", "torch.nn.GRU(8, 16, num_layers=2, dropout=0.2), sequence-first, + a linear head, in "
     "wrappers.Tagger", _gru,
     lambda: (rand(5, 2, 8),), common(lambda b, t, dt: (rand(t, b, 8, dtype=dt),), (2, 5),
                                      unbatched=lambda: (rand(5, 8),)), user=("wrappers.py",),
     truth=[Truth("rnn-train", RNN, (1440, 1447), ("train",), "_VF.gru(..., self.training, ...)"),
            Truth("unbatched", RNN, (1405, 1407, 1477), ("unbatched",), "is_batched = input.dim() == 3")])


# -- timm, transformers ----------------------------------------------------------------------------------
def _vit():
    from benchmarks.diff_real import tvshim  # noqa: F401  (timm imports torchvision)
    import timm
    return timm.models.vision_transformer.VisionTransformer(
        img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=4, num_classes=5, drop_rate=0.1,
        drop_path_rate=0.1)


def _img(b, size, dt):
    return (rand(b, 3, size, size, dtype=dt),)


pair("timm ViT", "timm 1.0.31 VisionTransformer(img 32, patch 8, dim 32, depth 2, 4 heads, drop_path 0.1)",
     _vit, lambda: _img(2, 32, torch.float32),
     [Variant("same", lambda: _img(2, 32, torch.float32)), Variant("batch1", lambda: _img(1, 32, torch.float32)),
      Variant("bigger_image", lambda: _img(2, 48, torch.float32)),
      Variant("train", lambda: _img(2, 32, torch.float32), train=True),
      Variant("no_grad", lambda: _img(2, 32, torch.float32), grad=False),
      Variant("float64", lambda: _img(2, 32, torch.float64))],
     truth=[DROPOUT, DROPOUT_MODULE,
            Truth("drop-path", "timm/layers/drop.py", (168, 187), ("train",), "drop_path returns x at once unless training")])


def _t5ff():
    from transformers import T5Config
    from transformers.models.t5.modeling_t5 import T5LayerFF
    return T5LayerFF(T5Config(d_model=16, d_kv=8, num_heads=2, d_ff=32, dropout_rate=0.1))


pair("T5LayerFF", "transformers 5.25.0 T5LayerFF (T5LayerNorm + T5DenseActDense), d_model 16", _t5ff,
     lambda: (rand(2, 5, 16),),
     common(lambda b, t, dt: (rand(b, t, 16, dtype=dt),), (2, 5), unbatched=lambda: (rand(5, 16),)) + [
         Variant("bfloat16", lambda: (rand(2, 5, 16, dtype=torch.bfloat16),))],
     truth=[DROPOUT, DROPOUT_MODULE,
            Truth("to-float32", "transformers/models/t5/modeling_t5.py", (66,), ("float64",), "hidden_states.to(torch.float32) is a no-op on the float32 example, so the trace uses its result for every later use of hidden_states: float64 input is cast to float32 (the script keeps float64 and fails in the linear layer)")])


# -- hand-written ----------------------------------------------------------------------------------------
def _hw(name, **kw):
    def build():
        from benchmarks.diff_real import handwritten
        return getattr(handwritten, name)(**kw)
    return build


def _seq(d):
    return lambda b, t, dt: (rand(b, t, d, dtype=dt),)


pair("ChunkPad", "handwritten.ChunkPad: pad the time axis to a multiple of the chunk", _hw("ChunkPad"),
     lambda: (rand(2, 6, 8),), common(_seq(8), (2, 6)) + [Variant("multiple", lambda: (rand(2, 8, 8),)),
                                                          Variant("len7", lambda: (rand(2, 7, 8),))],
     user=("handwritten.py",),
     truth=[Truth("pad-ceil", HW, (25, 27), ("longer", "shorter"), "math.ceil(t / chunk) became a Python int: the pad amount is 8 - t")])
pair("EarlyExit", "handwritten.EarlyExit: early return on sequence length, a helper that returns early",
     _hw("EarlyExit"), lambda: (rand(2, 6, 8),), common(_seq(8), (2, 6)) + [
         Variant("len9", lambda: (rand(2, 9, 8),))], user=("handwritten.py",),
     truth=[Truth("window", HW, (49,), ("longer", "len9"), "the early return for short inputs is always taken"),
            Truth("match-length", HW, (34,), ("shorter",), "match_length returned at once while tracing (no op recorded): never resamples")])
pair("Unbatched", "handwritten.Unbatched: if x.dim() == 3", _hw("Unbatched"), lambda: (rand(2, 5, 8),),
     common(_seq(8), (2, 5), unbatched=lambda: (rand(5, 8),)), user=("handwritten.py",),
     truth=[Truth("dim-3", HW, (64,), ("unbatched",), "if x.dim() == 3: no unsqueeze for 2-D input"),
            Truth("not-batched", HW, (70,), ("unbatched",), "if not batched: no squeeze")])
pair("TopK", "handwritten.TopK: k = min(self.k, n)", _hw("TopK"), lambda: (rand(2, 6, 8),),
     common(_seq(8), (2, 6)) + [Variant("n3", lambda: (rand(2, 3, 8),))], user=("handwritten.py",),
     truth=[Truth("min-k", HW, (85, 86), ("n3",), "k = min(self.k, n) became 4")])
pair("NoisyResidual", "handwritten.NoisyResidual: a training-only path and timm-style drop_path",
     _hw("NoisyResidual"), lambda: (rand(2, 5, 8),), common(_seq(8), (2, 5)), user=("handwritten.py",),
     truth=[Truth("noise", HW, (110,), ("train",), "if self.training: noise"),
            Truth("drop-path", HW, (93, 112), ("train",), "drop_path(..., self.training)")])
pair("HeadAttention", "handwritten.HeadAttention: attention with configuration constants, mask not traced",
     _hw("HeadAttention"), lambda: (rand(2, 5, 16),), common(_seq(16), (2, 5)), user=("handwritten.py",))
pair("MinLength", "handwritten.MinLength: zero-pad short inputs to a minimum length", _hw("MinLength"),
     lambda: (rand(2, 8, 6),), [Variant("same", lambda: (rand(2, 8, 6),)), Variant("batch1", lambda: (rand(1, 8, 6),)),
                                Variant("long", lambda: (rand(2, 8, 12),)), Variant("shorter", lambda: (rand(2, 8, 4),)),
                                Variant("exact", lambda: (rand(2, 8, 8),))], user=("handwritten.py",),
     truth=[Truth("min-len", HW, (147, 148), ("long",), "padding to min_len is always applied: long inputs are cut to min_len")])