"""`tsinspect info --json` against `torch.jit.load` as archives grow: tensors, modules (wide and deep), code.

    python benchmarks/info_scale.py                       # build (torch, once) and measure every axis
    python benchmarks/info_scale.py --axes params --repeat 5 --plot docs/performance-info.png
    python benchmarks/info_scale.py --compare /tmp/old    # also time another tsinspect tree (its parent dir)
    python benchmarks/info_scale.py --archives ../main/benchmarks/out/info_scale   # archives built elsewhere

Axes (each archive scripted by torch in a child process of its own, into benchmarks/out/info_scale/):

- ``params``: ``nn.Sequential`` of n/2 ``Linear(2, 2)``: n tensors, n/2 modules, and a forward of n/2 lines;
- ``deep``: a chain of d nested modules (each a ``Linear(2, 2)`` and the next link): modules in depth;
- ``files``: f classes, each in a module (a ``code/`` file) of its own, with a small forward;
- ``lines``: one module whose forward is l statements long: code size alone, two tensors.

For every archive the two commands run alternately (``repeat`` pairs after a warm-up of ours), each in a
fresh process through ``measure.py``: best wall and CPU times (user + system of the process tree), and
the median of the pair ratios. ``ls --json``, ``pickle --json`` and the TUI's first-screen data path
(``tsinspect.tui.state.load``: open, summarize, code scan; no drawing) are timed alongside on the params axis.
Python's bytecode cache is on (an installed tsinspect has it); nothing here is asserted by the tests.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "out" / "info_scale"
PY = sys.executable
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}

AXES = {"params": [1000, 2500, 5000, 10000, 20000], "deep": [10, 25, 50, 100],
        "files": [100, 500, 1000, 2000], "lines": [2500, 5000, 10000, 20000]}

BUILD = r'''
import sys, tempfile, importlib, warnings
from pathlib import Path
import torch
warnings.simplefilter("ignore")
torch.manual_seed(0)
axis, n, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
nn = torch.nn
if axis == "params":
    model = nn.Sequential(*[nn.Linear(2, 2) for _ in range(n // 2)])
else:  # generated source: torch.jit.script reads classes' source from their files
    src = Path(tempfile.mkdtemp())
    sys.path.insert(0, str(src))
    if axis == "deep":
        (src / "link.py").write_text(
            "import torch\n\nclass Link(torch.nn.Module):\n    def __init__(self, depth: int):\n"
            "        super().__init__()\n        self.proj = torch.nn.Linear(2, 2)\n"
            "        self.next = Link(depth - 1) if depth > 1 else torch.nn.Identity()\n\n"
            "    def forward(self, x):\n        return self.next(self.proj(x))\n")
        model = importlib.import_module("link").Link(n)
    elif axis == "files":
        for i in range(n):
            (src / f"part{i}.py").write_text(
                "import torch\n\n"
                f"class Part{i}(torch.nn.Module):\n"
                "    def forward(self, x):\n"
                f"        y = x * {i + 1}.0\n"
                "        return torch.relu(y) + x\n")
        names = "".join(f"from part{i} import Part{i}\n" for i in range(n))
        body = "".join(f"        self.p{i} = Part{i}()\n" for i in range(n))
        calls = "".join(f"        x = self.p{i}(x)\n" for i in range(n))
        (src / "whole.py").write_text(
            f"import torch\n{names}\nclass Whole(torch.nn.Module):\n    def __init__(self):\n"
            f"        super().__init__()\n{body}\n    def forward(self, x):\n{calls}        return x\n")
        model = importlib.import_module("whole").Whole()
    else:
        lines = "".join(f"        x = x * {i % 7 + 1}.0 + self.proj(x)\n" for i in range(n))
        (src / "long.py").write_text(
            "import torch\n\nclass Long(torch.nn.Module):\n    def __init__(self):\n        super().__init__()\n"
            f"        self.proj = torch.nn.Linear(2, 2)\n\n    def forward(self, x):\n{lines}        return x\n")
        model = importlib.import_module("long").Long()
torch.jit.script(model.eval()).save(out)
'''

LOAD = "import sys, torch\ntorch.jit.load(sys.argv[1])"
# tsinspect from a given source tree (this one, or --compare's), ahead of the installed one
LAUNCH = """import runpy, sys
sys.path.insert(0, sys.argv[1])
sys.argv[:] = ["tsinspect", *sys.argv[2:]]
runpy.run_module("tsinspect", run_name="__main__", alter_sys=True)
"""
FIRST_SCREEN = "import sys\nsys.path.insert(0, sys.argv[1])\nfrom tsinspect.tui.state import load\nload(sys.argv[2])"


ARCHIVES = OUT  # where the archives are read (and built when absent): --archives


def build(axis: str, n: int) -> Path:
    path = ARCHIVES / f"{axis}_{n}.pt"
    if not path.exists():
        ARCHIVES.mkdir(parents=True, exist_ok=True)
        print(f"building {path.name} ...", file=sys.stderr)
        tmp = path.with_suffix(".part")
        subprocess.run([PY, "-c", BUILD, axis, str(n), str(tmp)], check=True)
        tmp.rename(path)
    return path


def tsi(tree: Path | str, *args: str) -> list[str]:
    return [PY, "-c", LAUNCH, str(tree), *args]


def run(cmd: list[str]) -> dict:
    out = subprocess.run([PY, str(HERE / "measure.py"), *cmd], capture_output=True, text=True, check=True,
                         env=ENV).stdout
    result = json.loads(out)
    if result["rc"] not in (0, 1):
        raise SystemExit(f"{' '.join(cmd)} failed ({result['rc']}): {result['stderr']}")
    return result


def pairs(ours: list[str], theirs: list[str], repeat: int) -> dict:
    """Alternate runs; best times of each side and the median (range) of the pair ratios."""
    run(ours)  # warm-up: bytecode cache, page cache
    a, b = [], []
    for _ in range(repeat):
        a.append(run(ours))
        b.append(run(theirs))
    wall = sorted(x["wall_s"] / y["wall_s"] for x, y in zip(a, b))
    cpu = sorted(x["cpu_s"] / y["cpu_s"] for x, y in zip(a, b))

    def best(runs: list[dict]) -> dict:
        times = {k: min(r[k] for r in runs) for k in ("wall_s", "cpu_s")}
        return times | {"peak_mib": max(r["peak_mib"] for r in runs)}

    return {"ours": best(a), "torch": best(b), "wall_x": round(wall[len(wall) // 2], 3),
            "cpu_x": round(cpu[len(cpu) // 2], 3), "cpu_x_range": [round(cpu[0], 3), round(cpu[-1], 3)]}


def size_of(path: Path) -> dict:
    """What the archive holds, read by tsinspect itself (the axes' x values)."""
    sys.path.insert(0, str(HERE.parent))
    from tsinspect.archive.reader import open_archive
    from tsinspect.archive.summary import summarize

    with open_archive(str(path)) as archive:
        s = summarize(archive)
        code = sum(r.size for r in archive.records_of("code"))
    modules = sum(1 for _ in s.modules.walk()) if s.modules else 0
    return {"bytes": path.stat().st_size, "tensors": len(s.tensors), "modules": modules,
            "code_files": len(s.code_files), "code_bytes": code}


def measure(axes: dict[str, list[int]], repeat: int, compare: str | None, here: str) -> dict:
    out = {"machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
           "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "repeat": repeat,
           "load_before": os.getloadavg()[0], "rows": []}
    for axis, sizes in axes.items():
        for n in sizes:
            path = build(axis, n)
            row = {"axis": axis, "n": n, **size_of(path)}
            load = [PY, "-c", LOAD, str(path)]
            row["info"] = pairs(tsi(here, "info", "--json", str(path)), load, repeat)
            if compare:
                row["info_compare"] = pairs(tsi(compare, "info", "--json", str(path)), load, repeat)
            if axis == "params":
                for name, cmd in (("ls", ["ls", "--json"]), ("pickle", ["pickle", "--json"])):
                    row[name] = pairs(tsi(here, *cmd, str(path)), load, repeat)
                    if compare:
                        row[name + "_compare"] = pairs(tsi(compare, *cmd, str(path)), load, repeat)
                row["first_screen"] = pairs([PY, "-c", FIRST_SCREEN, str(here), str(path)], load, repeat)
            print(json.dumps(row), file=sys.stderr)
            out["rows"].append(row)
    out["load_after"] = os.getloadavg()[0]
    return out


def table(result: dict) -> str:
    lines = [f"{result['machine']}; {result['date']}; load {result['load_before']:.1f} -> "
             f"{result['load_after']:.1f}; {result['repeat']} interleaved pairs, best times, median CPU ratio "
             "[range].", "",
             "| axis | n | tensors | modules | code files | code | `info --json` | `torch.jit.load` | CPU x | wall x |"
             + (" compared tree: CPU x |" if any("info_compare" in r for r in result["rows"]) else ""),
             "|---|---|---|---|---|---|---|---|---|---|" + ("---|" if "info_compare" in result["rows"][0] else "")]
    for r in result["rows"]:
        i = r["info"]
        cells = [r["axis"], f"{r['n']:,}", f"{r['tensors']:,}", f"{r['modules']:,}", str(r["code_files"]),
                 f"{r['code_bytes'] / 1024:.0f} KiB", f"{i['ours']['cpu_s']:.2f} s CPU, {i['ours']['wall_s']:.2f} s",
                 f"{i['torch']['cpu_s']:.2f} s CPU, {i['torch']['wall_s']:.2f} s",
                 f"{i['cpu_x']:.2f}x [{i['cpu_x_range'][0]:.2f}-{i['cpu_x_range'][1]:.2f}]", f"{i['wall_x']:.2f}x"]
        if "info_compare" in r:
            c = r["info_compare"]
            cells.append(f"{c['ours']['cpu_s']:.2f} s, {c['cpu_x']:.2f}x")
        lines.append("| " + " | ".join(cells) + " |")
    others = [r for r in result["rows"] if "ls" in r]
    if others:
        lines += ["", "| parameters | `ls --json` | `pickle --json` | TUI first-screen data | `torch.jit.load` |",
                  "|---|---|---|---|---|"]
        for r in others:
            lines.append(f"| {r['n']:,} | " + " | ".join(
                f"{r[k]['ours']['cpu_s']:.2f} s CPU ({r[k]['cpu_x']:.2f}x)" for k in ("ls", "pickle", "first_screen"))
                + f" | {r['info']['torch']['cpu_s']:.2f} s CPU |")
    return "\n".join(lines)


def plot(result: dict, path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot", file=sys.stderr)
        return False
    axes = sorted({r["axis"] for r in result["rows"]}, key=list(AXES).index)
    x_of = {"params": ("tensors", "tensors"), "deep": ("modules", "nested modules"),
            "files": ("code_files", "code files"), "lines": ("code_bytes", "code bytes")}
    fig, subplots = plt.subplots(1, len(axes), figsize=(4.2 * len(axes), 3.6), squeeze=False)
    for ax, axis in zip(subplots[0], axes):
        rows = [r for r in result["rows"] if r["axis"] == axis]
        key, label = x_of[axis]
        xs = [r[key] for r in rows]
        ax.plot(xs, [r["info"]["ours"]["cpu_s"] for r in rows], "o-", label="info --json")
        ax.plot(xs, [r["info"]["torch"]["cpu_s"] for r in rows], "s--", label="torch.jit.load")
        if any("info_compare" in r for r in rows):
            ax.plot(xs, [r["info_compare"]["ours"]["cpu_s"] for r in rows], "^:", label="info --json (before)")
        ax.set(xlabel=label, ylabel="CPU s", title=axis, ylim=(0, None))
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--axes", default=",".join(AXES), help="comma-separated: " + ", ".join(AXES))
    parser.add_argument("--sizes", help="override the sizes of a single axis, e.g. 1000,5000")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--compare", help="a directory holding another tsinspect package to time as well "
                        "(e.g. git archive main tsinspect | tar -x -C /tmp/old)")
    parser.add_argument("--tree", default=str(HERE.parent), help="the tsinspect tree to time (default: this one)")
    parser.add_argument("--archives", type=Path, default=OUT,
                        help="read the archives from this folder (another tree's benchmarks/out/info_scale, say) "
                        "instead of building them here; results.json is still written here")
    parser.add_argument("--plot", type=Path)
    parser.add_argument("--build-only", action="store_true")
    args = parser.parse_args()
    global ARCHIVES
    ARCHIVES = args.archives
    axes = {a: AXES[a] for a in args.axes.split(",")}
    if args.sizes:
        axes = {a: [int(n) for n in args.sizes.split(",")] for a in axes}
    if args.build_only:
        for axis, sizes in axes.items():
            for n in sizes:
                build(axis, n)
        return
    result = measure(axes, args.repeat, args.compare, args.tree)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "results.json").write_text(json.dumps(result, indent=1))
    print(table(result))
    if args.plot and plot(result, args.plot):
        print(f"plot: {args.plot}", file=sys.stderr)


if __name__ == "__main__":
    main()
