"""Benign real models for the false-positive checks of tests/test_judge_code.py, built in a process of their
own (``python tests/real_models.py FOLDER``) so that scripting them does not mangle the class names of
archives other tests build in the pytest process.

torch.nn modules scripted and saved (TorchScript and lite): Transformer, LSTM, GRU, dynamically quantized
Linear+LSTM, statically quantized conv nets (one fused conv-bn-relu with a residual add), a module with
defaults and Final constants, and a traced transformers BERT when transformers is installed.
"""

import sys
import warnings
from pathlib import Path
from typing import Final, Optional  # noqa: F401 - the scripted module's annotations name them


def build(folder: Path) -> dict[str, Path]:
    import torch
    from torch import nn

    out: dict[str, Path] = {}

    class Defaults(nn.Module):
        scale: Final[float]

        def __init__(self):
            super().__init__()
            self.scale = 2.0

        def forward(self, x: torch.Tensor, k: int = 3, mode: str = "a", y: Optional[torch.Tensor] = None,
                    dims: tuple[int, int] = (0, 1)) -> torch.Tensor:
            return x * self.scale + k

    class Conv(nn.Module):
        def __init__(self):
            super().__init__()
            self.quant, self.dequant = torch.ao.quantization.QuantStub(), torch.ao.quantization.DeQuantStub()
            self.conv, self.relu = nn.Conv2d(3, 4, 3), nn.ReLU()

        def forward(self, x):
            return self.dequant(self.relu(self.conv(self.quant(x))))

    class Fused(nn.Module):  # conv-bn-relu blocks, a residual add, a linear head: the detection-net shape
        def __init__(self):
            super().__init__()
            self.quant, self.dequant = torch.ao.quantization.QuantStub(), torch.ao.quantization.DeQuantStub()
            self.c1, self.b1, self.r1 = nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU()
            self.c2, self.b2 = nn.Conv2d(8, 8, 3, padding=1, groups=2), nn.BatchNorm2d(8)
            self.add = torch.ao.nn.quantized.FloatFunctional()
            self.fc = nn.Linear(8, 4)

        def forward(self, x):
            x = self.quant(x)
            y = self.r1(self.b1(self.c1(x)))
            y = self.add.add(y, self.b2(self.c2(y)))
            return self.dequant(self.fc(y.mean((2, 3))))

    torch.manual_seed(0)
    fused = Fused().eval()
    fused = torch.ao.quantization.fuse_modules(fused, [["c1", "b1", "r1"], ["c2", "b2"]])
    fused.qconfig = torch.ao.quantization.get_default_qconfig("fbgemm")
    fused_prepared = torch.ao.quantization.prepare(fused)
    fused_prepared(torch.randn(2, 3, 8, 8))
    conv = Conv().eval()
    conv.qconfig = torch.ao.quantization.get_default_qconfig("fbgemm")
    prepared = torch.ao.quantization.prepare(conv)
    prepared(torch.randn(2, 3, 8, 8))
    models = {
        "transformer": nn.Transformer(d_model=16, nhead=2, num_encoder_layers=1, num_decoder_layers=1,
                                      dim_feedforward=32),
        "lstm": nn.LSTM(4, 8, num_layers=2), "gru": nn.GRU(4, 8),
        "dynamic_quantized": torch.ao.quantization.quantize_dynamic(
            nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2)), {nn.Linear}, dtype=torch.qint8),
        "dynamic_quantized_lstm": torch.ao.quantization.quantize_dynamic(nn.LSTM(4, 8), {nn.LSTM}),
        "static_quantized_conv": torch.ao.quantization.convert(prepared),
        "static_quantized_fused": torch.ao.quantization.convert(fused_prepared),
        "defaults": Defaults(),
    }
    for name, model in models.items():
        scripted = torch.jit.script(model.eval())
        out[name] = folder / f"{name}.pt"
        scripted.save(str(out[name]))
        if name in ("lstm", "static_quantized_conv", "static_quantized_fused", "defaults"):
            out[name + "_lite"] = folder / f"{name}.ptl"
            scripted._save_for_lite_interpreter(str(out[name + "_lite"]))
    try:  # a traced BERT (random weights, small config) when transformers is installed (PyPI)
        import transformers
    except ImportError:
        return out
    config = transformers.BertConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                                     intermediate_size=128, torchscript=True)
    out["transformers_bert"] = folder / "bert.pt"
    traced = torch.jit.trace(transformers.BertModel(config).eval(), (torch.ones(1, 8, dtype=torch.long),),
                             strict=False)
    traced.save(str(out["transformers_bert"]))
    return out


if __name__ == "__main__":
    warnings.simplefilter("ignore")
    for name, path in build(Path(sys.argv[1])).items():
        print(name, path)
