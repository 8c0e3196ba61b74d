"""Archives for the CLI and report tests of issue 15, built with torch (tiny, seconds).

- ``encoder``: a scripted nn.TransformerEncoder of 6 layers (d_model 8): repeated modules and tensors.
- ``one_tensor``: a scripted nn.Linear without bias: a module with exactly 1 tensor.
- ``extra_a``/``extra_b``: the same scripted model saved with different extra files.
- ``many_a``/``many_b``: scripted modules with 3,000 buffers whose shapes all differ between the two:
  a structural diff with 3,000 findings, far over a GitHub comment when rendered in full.
- ``mixed_traced``/``mixed_scripted``: a model of this file (a data-dependent ``if``) around
  nn.MultiheadAttention, traced and scripted: findings in the user's file and in torch's.
- ``quantized_traced``: a statically quantized Conv2d (eager mode) traced: its quantized module keeps the
  scripted ``__setstate__``/``set_weight_bias`` (with ``if``) in code/, as traced d2go models do.
"""

from __future__ import annotations

from pathlib import Path

from archives import _Quiet, _torch

torch = _torch()
nn = torch.nn


class Many(nn.Module):
    def __init__(self, n: int, extra: int) -> None:
        super().__init__()
        for i in range(n):
            self.register_buffer(f"b{i}", torch.zeros(i % 7 + 1 + extra))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class Mixed(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > 0:  # mixed-if: data-dependent branch in the user's file
            x = x * 2.0
        else:
            x = x - 1.0
        return self.attn(x, x, x)[0]


class QuantConv(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        import torch.ao.quantization as tq

        self.quant = tq.QuantStub()
        self.conv = nn.Conv2d(1, 2, 3)
        self.dequant = tq.DeQuantStub()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dequant(self.conv(self.quant(x)))


def _quantized() -> nn.Module:
    import warnings

    import torch.ao.quantization as tq

    warnings.simplefilter("ignore", UserWarning)
    model = QuantConv().eval()
    model.qconfig = tq.get_default_qconfig("fbgemm")
    prepared = tq.prepare(model)
    prepared(torch.rand(1, 1, 5, 5))
    return tq.convert(prepared)


def build_all(out: Path) -> dict[str, Path]:
    torch.manual_seed(0)
    paths = {}

    def save(name: str, module, **extra) -> None:
        paths[name] = out / f"{name}.pt"
        torch.jit.save(module, str(paths[name]), **extra)

    with _Quiet():
        layer = nn.TransformerEncoderLayer(8, 2, 16, batch_first=True)
        save("encoder", torch.jit.script(nn.TransformerEncoder(layer, 6, enable_nested_tensor=False).eval()))
        save("one_tensor", torch.jit.script(nn.Linear(3, 2, bias=False)))
        small = torch.jit.script(nn.Linear(2, 2))
        save("extra_a", small, _extra_files={"config.json": '{"a": 1}', "notes.txt": "x"})
        save("extra_b", small, _extra_files={"config.json": '{"a": 2}', "other.txt": "y"})
        save("many_a", torch.jit.script(Many(3000, 0)))
        save("many_b", torch.jit.script(Many(3000, 1)))
        mixed = Mixed().eval()
        example = torch.rand(3, 1, 8)
        save("mixed_traced", torch.jit.trace(mixed, example, check_trace=False))
        save("mixed_scripted", torch.jit.script(mixed))
        save("quantized_traced", torch.jit.trace(_quantized(), torch.rand(1, 1, 5, 5)))
    return paths
