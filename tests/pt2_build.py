"""Build torch.export archives (.pt2) for tests/test_pt2.py and write what torch itself says about them.

Run as ``python tests/pt2_build.py OUTDIR``: writes OUTDIR/<name>.pt2 and OUTDIR/truth.json with, per archive,
what ``torch.export.load`` gives back: the op targets of every call_function node of the graph and its
higher-order subgraphs (``operator.getitem`` left out: the serialized form folds it into the outputs of the
node it unpacks), the signature, state-dict and constant tensors, and the range constraints.
Checked with torch 2.13.0+cpu.
"""

from __future__ import annotations

import json
import operator
import sys
import warnings
from pathlib import Path

import torch
from torch._higher_order_ops.map import map as hop_map
from torch._higher_order_ops.while_loop import while_loop
from torch.export import Dim


class Sub(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(4, 3)

    def forward(self, x):
        return self.lin(x)  # pt2: sub line


class CondNet(torch.nn.Module):
    """A submodule, a buffer, a tensor constant, torch.cond, and a dynamic batch dimension."""

    def __init__(self):
        super().__init__()
        self.sub = Sub()
        self.register_buffer("scale", torch.ones(3))
        self.c = torch.tensor([2.0, 3.0, 4.0])

    def forward(self, x):
        y = self.sub(x) * self.scale + self.c  # pt2: scale line

        def positive(y):
            return y.sin()

        def negative(y):
            return y.cos()

        return torch.cond(y.sum() > 0, positive, negative, (y,))  # pt2: cond line


class LoopNet(torch.nn.Module):
    """map over the rows, then a while_loop; static shapes."""

    def forward(self, xs, y):
        z = hop_map(lambda x, y: x * y + 1, xs, y)
        i, acc = while_loop(lambda i, acc: i < 3, lambda i, acc: (i + 1, acc * 2), (torch.tensor(0), z))
        return acc


class TwoDims(torch.nn.Module):
    """Two dynamic dimensions, one of them derived (seq = 2 * half)."""

    def forward(self, x, y):
        return x @ y.transpose(0, 1)


class Flow(torch.nn.Module):
    """Control flow on shapes: scripted, it stays; exported with static shapes, one side and an unrolled loop."""

    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(4, 3)

    def forward(self, x):
        y = self.lin(x)
        if x.shape[0] > 4:  # pt2: flow if
            y = torch.relu(y)  # pt2: flow then
        else:
            y = torch.sigmoid(y)  # pt2: flow else
        for _ in range(x.shape[1]):  # pt2: flow loop
            y = y * 2.0  # pt2: flow body
        return y


def _target(t) -> str:
    if isinstance(t, torch._ops.OpOverload):
        return f"{t.namespace}::{t._opname}.{t._overloadname}"
    if isinstance(t, torch._ops.HigherOrderOperator):
        return f"higher_order::{t.name()}"
    return f"{t.__module__}.{t.__name__}"


def _ops(gm) -> list[str]:
    out = []
    todo = [gm]
    while todo:
        module = todo.pop()
        for node in module.graph.nodes:
            if node.op == "call_function" and node.target is not operator.getitem:
                out.append(_target(node.target))
            elif node.op == "get_attr" and isinstance(getattr(module, node.target, None), torch.fx.GraphModule):
                todo.append(getattr(module, node.target))
    return out


class ConvNet(torch.nn.Module):
    """Conv + batch norm (eval: running stats are buffers) + pooling + a linear head; dynamic batch."""

    def __init__(self):
        super().__init__()
        self.features = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.BatchNorm2d(8),
                                            torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1))
        self.head = torch.nn.Linear(8, 5)

    def forward(self, x):
        return self.head(self.features(x).flatten(1))


def _modules(gm) -> list[list[str]]:
    """[innermost nn_module_stack path, op target] of every call_function node, subgraphs included."""
    out = []
    todo = [gm]
    while todo:
        module = todo.pop()
        for node in module.graph.nodes:
            if node.op == "call_function" and node.target is not operator.getitem:
                stack = list((node.meta.get("nn_module_stack") or {}).values())
                out.append([stack[-1][0] if stack else "", _target(node.target)])
            elif node.op == "get_attr" and isinstance(getattr(module, node.target, None), torch.fx.GraphModule):
                todo.append(getattr(module, node.target))
    return sorted(out)


def truth(path: Path) -> dict:
    return truth_of(torch.export.load(path))


def truth_of(ep) -> dict:
    sig = ep.graph_signature
    kinds = {"USER_INPUT": "user_input", "PARAMETER": "parameter", "BUFFER": "buffer",
             "CONSTANT_TENSOR": "constant", "CUSTOM_OBJ": "custom_object", "TOKEN": "token"}
    tensors = {name: {"dtype": str(t.dtype).removeprefix("torch."), "shape": list(t.shape)}
               for name, t in list(ep.state_dict.items()) + list(ep.constants.items())}
    return {"ops": sorted(_ops(ep.graph_module)), "modules": _modules(ep.graph_module),
            "nbytes": {name: t.numel() * t.element_size()
                       for name, t in list(ep.state_dict.items()) + list(ep.constants.items())},
            "inputs": [[s.arg.name, kinds[s.kind.name], s.target] for s in sig.input_specs],
            "outputs": [[s.arg.name, s.kind.name.lower(), s.target] for s in sig.output_specs],
            "tensors": tensors,
            "ranges": {str(k): [int(v.lower), None if v.upper.is_integer is False or str(v.upper) == "int_oo"
                                else int(v.upper)] for k, v in ep.range_constraints.items()}}


def legacy_layout(ep, src: Path, dest: Path) -> None:
    """The zip torch.export.save wrote before the pt2 package format (torch.export.load still reads it): the
    records at the zip's root, the state dict and constants as torch.save bytes, ``version`` = the schema."""
    import io
    import zipfile

    def saved(obj) -> bytes:
        buf = io.BytesIO()
        torch.save(obj, buf)
        return buf.getvalue()

    with zipfile.ZipFile(src) as z:
        top = z.namelist()[0].split("/", 1)[0]
        program = z.read(f"{top}/models/model.json")
        inputs = z.read(f"{top}/data/sample_inputs/model.pt")
    version = json.loads(program)["schema_version"]
    with zipfile.ZipFile(dest, "w") as z:
        z.writestr("serialized_exported_program.json", program)
        z.writestr("serialized_state_dict.pt", saved(ep.state_dict))
        z.writestr("serialized_constants.pt", saved(ep.constants))
        z.writestr("serialized_example_inputs.pt", inputs)
        z.writestr("version", f"{version['major']}.{version['minor']}")


def main(outdir: Path) -> None:
    warnings.simplefilter("ignore")
    outdir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    built = {
        "cond": torch.export.export(CondNet(), (torch.randn(5, 4),),
                                    dynamic_shapes={"x": {0: Dim("batch", min=2, max=64)}}),
        "loops": torch.export.export(LoopNet(), (torch.randn(3, 4), torch.randn(4))),
        "dims": torch.export.export(TwoDims(), (torch.randn(6, 8), torch.randn(5, 8)),
                                    dynamic_shapes={"x": {0: Dim("n")}, "y": {0: Dim("m", max=100)}}),
    }
    transformer = torch.nn.Transformer(d_model=16, nhead=2, num_encoder_layers=1, num_decoder_layers=1,
                                       dim_feedforward=32, batch_first=True).eval()
    built["transformer"] = torch.export.export(
        transformer, (torch.randn(2, 5, 16), torch.randn(2, 4, 16)),
        dynamic_shapes={"src": {1: Dim("src_len", min=2, max=64)}, "tgt": {1: Dim("tgt_len", min=2, max=64)}})
    built["lstm"] = torch.export.export(torch.nn.LSTM(8, 16, num_layers=2, batch_first=True).eval(),
                                        (torch.randn(3, 5, 8),), dynamic_shapes=({0: Dim("batch", max=32)},))
    built["convnet"] = torch.export.export(ConvNet().eval(), (torch.randn(2, 3, 8, 8),),
                                           dynamic_shapes={"x": {0: Dim("batch", min=2, max=16)}})
    # traced twins of torch.nn's code: the trace records ops inside F.dropout/F.layer_norm/attention, the
    # export at the module line that called them
    torch.jit.save(torch.jit.trace(transformer, (torch.randn(2, 5, 16), torch.randn(2, 4, 16)), check_trace=False),
                   str(outdir / "transformer_traced.pt"))
    torch.jit.save(torch.jit.trace(ConvNet().eval(), torch.randn(2, 3, 8, 8)), str(outdir / "convnet_traced.pt"))
    out = {}
    for name, ep in built.items():
        path = outdir / f"{name}.pt2"
        torch.export.save(ep, path)
        out[name] = truth(path)
    legacy_layout(built["cond"], outdir / "cond.pt2", outdir / "legacy.pt2")
    torch.jit.save(torch.jit.script(Flow()), str(outdir / "flow_scripted.pt"))
    torch.export.save(torch.export.export(Flow(), (torch.randn(5, 4),)), outdir / "flow.pt2")
    out["legacy"] = truth(outdir / "legacy.pt2")
    lstm = torch.nn.LSTM(8, 16, num_layers=2, batch_first=True).eval()  # torch.nn's code on both sides
    torch.jit.save(torch.jit.script(lstm), str(outdir / "lstm_scripted.pt"))
    torch.export.save(torch.export.export(lstm, (torch.randn(3, 5, 8),)), outdir / "lstm_static.pt2")
    # several programs in one package (torch.export.save writes one; the package format holds any number)
    from torch.export.pt2_archive._package import load_pt2, package_pt2

    package_pt2(outdir / "multi.pt2", exported_programs={"forward": built["cond"], "encode": built["lstm"]})
    loaded = load_pt2(outdir / "multi.pt2").exported_programs
    (outdir / "multi_truth.json").write_text(json.dumps({name: truth_of(ep) for name, ep in loaded.items()}))
    (outdir / "truth.json").write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
