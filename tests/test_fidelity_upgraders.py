"""The torch-free op view of archives of every file format version against torch's own graphs.

torch compiles an old archive's ``code/`` through its operator upgraders (tsinspect/ir/upgraders.py). A torch
child scripts a module calling every upgraded op in the forms old code has (tensor or scalar divisors,
constants, keyword arguments, attributes, locals), saves it, and writes copies whose version record says
1 to 10; benchmarks/fidelity_truth.py counts each method's ops as torch.jit.load builds them, and the op
view must count the same for every version.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import textwrap

from helpers import REPO

from tsinspect.ir.upgraders import UPGRADERS

spec = importlib.util.spec_from_file_location("tsinspect_fidelity", REPO / "benchmarks" / "fidelity.py")
fidelity = importlib.util.module_from_spec(spec)
spec.loader.exec_module(fidelity)

VERSIONS = (1, 3, 4, 5, 7, 8, 9, 10)

# method name -> body (arguments x, y: Tensor, n: int, f: float, dt: Optional[int]); all compile at version 1
CASES = {
    "div_tensors": "return torch.div(x, y)",
    "div_int": "return torch.div(x, 2)",
    "div_float": "return torch.div(x, 2.5)",
    "div_negative_float": "return torch.div(x, -2.0)",
    "div_int_arg": "return torch.div(x, n)",
    "div_float_arg": "return torch.div(x, f)",
    "div_bool": "return torch.div(x, True)",
    "div_size": "return x.div(x.size(0))",
    "div_shape_item": "return torch.div(x, x.shape[1] * 2)",
    "div_item": "return torch.div(x, x.item())",
    "div_float_of": "return torch.div(x, float(n))",
    "div_reduced": "return torch.div(x, y.sum())",
    "div_operator": "return x / y",
    "div_operator_int": "return x / 2",
    "div_float_local": "c = 4.0\n        return torch.div(x, c)",
    "div_int_local": "c = n + 1\n        return torch.div(x, c)",
    "div_tensor_local": "c = y + 1\n        return torch.div(x, c)",
    "div_attribute": "return torch.div(x, self.scale)",
    "div_parameter": "return torch.div(x, self.weight)",
    "div_helper": "return torch.div(x, self.helper(x))",
    "div_scalars": "return torch.div(n, 2) + f",
    "div_submodule_int": "sub = self.sub\n        return x + torch.div(sub.length, 2)",
    "div_by_submodule_int": "return torch.div(x, self.sub.length)",
    "div_mode": "return torch.div(x, y, rounding_mode='floor')",
    "div_mode_scalar": "return torch.div(x, 2, rounding_mode='trunc')",
    "div_out": "return torch.div(x, y, out=y)",
    "div_inplace": "return x.div_(y)",
    "div_inplace_int": "return x.div_(3)",
    "div_inplace_float": "return x.div_(3.0)",
    "full_int": "return torch.full([2], 1)",
    "full_float": "return torch.full([2], 1.5)",
    "full_int_arg": "return torch.full([2], n)",
    "full_float_arg": "return torch.full([2], f)",
    "full_dtype": "return torch.full([2], n, dtype=torch.float)",
    "full_dtype_none": "return torch.full([2], n, dtype=None)",
    "full_dtype_arg": "return torch.full([2], n, dtype=dt)",
    "full_dtype_arg_constant": "return torch.full([2], 1, dtype=dt)",
    "full_out": "return torch.full([2], n, out=y)",
    "linspace": "return torch.linspace(0, 1, 5)",
    "linspace_arg": "return torch.linspace(0, 1, n)",
    "linspace_out": "return torch.linspace(0, 1, 5, out=y)",
    "linspace_out_arg": "return torch.linspace(0, 1, n, out=y)",
    "logspace": "return torch.logspace(0, 1, 5)",
    "logspace_arg": "return torch.logspace(0, 1, n)",
    "logspace_out": "return torch.logspace(0, 1, 5, out=y)",
    "gelu": "return torch.nn.functional.gelu(x)",
    "gelu_out": "return torch._C._nn.gelu(x, out=y)",
}

_CHILD = '''
import io, json, sys, zipfile
import torch
from typing import Optional

SOURCE = {source!r}
VERSIONS = {versions!r}
out_dir = sys.argv[1]
namespace = {{}}
with open(out_dir + "/cases.py", "w") as f:
    f.write(SOURCE)
spec = __import__("importlib.util").util.spec_from_file_location("cases", out_dir + "/cases.py")
module = __import__("importlib.util").util.module_from_spec(spec)
spec.loader.exec_module(module)
buffer = io.BytesIO()
torch.jit.save(torch.jit.script(module.Cases()), buffer)
saved = zipfile.ZipFile(buffer)
for version in VERSIONS:
    with zipfile.ZipFile(f"{{out_dir}}/v{{version}}.pt", "w", zipfile.ZIP_STORED) as z:
        for name in saved.namelist():
            data = saved.read(name)
            if name.rsplit("/", 1)[-1] == "version":
                data = f"{{version}}\\n".encode()
            z.writestr(name, data)
print(json.dumps(sorted([name, e.bumped_at_version, e.upgrader_name]
                        for name, entries in torch._C._get_operator_version_map().items() for e in entries)))
'''


def _source() -> str:
    methods = []
    for name, body in CASES.items():
        methods.append(f"    def {name}(self, x: torch.Tensor, y: torch.Tensor, n: int, f: float, dt: Optional[int]):\n"
                       f"        {body}\n")
    calls = ", ".join(f"self.{name}(x, y, n, f, dt)" for name in CASES)
    return textwrap.dedent('''\
        import torch
        from typing import Optional


        class Sub(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.length = 4


        class Cases(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.sub = Sub()
                self.scale = 2.0
                self.weight = torch.nn.Parameter(torch.ones(2))

            def helper(self, x: torch.Tensor) -> int:
                return x.dim()

        ''') + "".join(methods) + (
        "    def forward(self, x: torch.Tensor, y: torch.Tensor, n: int, f: float, dt: Optional[int]):\n"
        f"        return [{calls}]\n")


def test_op_view_counts_what_torch_counts_at_every_file_version(tmp_path):
    child = _CHILD.format(source=_source(), versions=VERSIONS)
    proc = subprocess.run([sys.executable, "-c", child, str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    torch_map = json.loads(proc.stdout.splitlines()[-1])
    # the table is torch's: an upgrader added or changed in torch fails here until the op view models it
    assert sorted([u.schema, u.bumped_at, u.name] for u in UPGRADERS) == torch_map
    paths = [tmp_path / f"v{v}.pt" for v in VERSIONS]
    truths = fidelity.run_truth(paths)
    failures, upgraded = {}, 0
    for path in paths:
        truth = truths[str(path)]
        assert "error" not in truth and "load_error" not in truth, truth
        result = fidelity.compare(truth, fidelity.view(path))
        if result["diffs"].get("ops"):
            failures[path.name] = result["diffs"]["ops"]
        upgraded += sum(c.get("aten::is_floating_point", 0) + c.get("aten::__is__", 0) for c in truth["ops"].values())
    assert not failures, json.dumps(failures, indent=1)
    assert upgraded > 0  # the old versions did run upgraders
    assert {key.rsplit(".", 1)[-1] for key in truths[str(paths[0])]["ops"]} >= set(CASES)
