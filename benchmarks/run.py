"""Benchmarks: tsinspect against what a user would do instead, on large archives built here with torch.

    python benchmarks/run.py [--layers 1,6,12,24] [--repeat 3] [--quick] [--plot docs/performance.png]

Builds, once, into benchmarks/out/ (ignored by git; about 2.5 GB of disk):
  - scripted nn.TransformerEncoder archives, d_model 1024, 16 heads, feed-forward 4096, at each --layers
    (24 layers is 1.2 GB of weights);
  - nn.Transformer, 6 encoder + 6 decoder layers, d_model 512 (the defaults), traced and scripted;
  - a "deep" scripted nn.TransformerEncoder of 35 layers at d_model 32: a ~50k-node inlined graph over
    1 MiB of weights (the same graph as 35 large layers, none of the bytes).
Then measures each command in a fresh process (benchmarks/measure.py: wall time, and the peak resident
memory of the largest process of the command's tree: ru_maxrss over RUSAGE_CHILDREN, which takes the
maximum over every descendant that was waited for, so for `graph`, `diff` and `report` it is
max(tsinspect, its torch extraction children)):
  info     tsinspect info --json F          vs  torch.jit.load(F) (the process, with import torch); unzip -l F
  graph    tsinspect graph --json F         vs  print(torch.jit.load(F).graph)
  inline   tsinspect graph --inline --json  vs  print(torch.jit.load(F).inlined_graph)
  report   tsinspect report F -o X.html     vs  torch.jit.load(F)
  tui      the app driven headless (App.run_test) in a fresh process: time from the command to the first
           screen (the archive read and shown) and to the IR view with the IR loaded ("g" pressed)
  diff     tsinspect diff TRACED SCRIPTED (IR path, and --ir never)  vs  loading both and printing .code
Wall times are the best of --repeat runs, memory the largest. Prints the Markdown tables of
docs/performance.md, writes benchmarks/out/results.json, and with matplotlib installed draws the scaling
plot (--plot). Nothing here is asserted by the tests. --quick: 1 layer, small Transformer and deep model,
one run (a smoke test of this script).

--curves measures only the curves of issue 14, each command alternately with torch's (interleaved pairs, the
median pair ratio, wall and CPU time), with bytecode caching on: graph and graph --inline on d_model 32
encoders of 1.7k to 205k inlined nodes, info and graph on nn.Sequential archives of 1,000 to 10,000
parameters, and the fixed cost against `import torch` alone (benchmarks/out/results-curves.json).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
OUT = HERE / "out"
PY = sys.executable
TSI = [PY, "-m", "tsinspect"]

ENCODER = """
import sys, warnings, torch
warnings.simplefilter("ignore")
torch.manual_seed(0)
layers, d, heads, ff = map(int, sys.argv[2:6])
layer = torch.nn.TransformerEncoderLayer(d_model=d, nhead=heads, dim_feedforward=ff, batch_first=True)
model = torch.nn.TransformerEncoder(layer, num_layers=layers, enable_nested_tensor=False).eval()
torch.jit.script(model).save(sys.argv[1])
"""

TRANSFORMER = """
import sys, warnings, torch
warnings.simplefilter("ignore")
torch.manual_seed(0)
d = int(sys.argv[3])
model = torch.nn.Transformer(d_model=d, nhead=8 if d >= 64 else 4, num_encoder_layers=6, num_decoder_layers=6,
                             dim_feedforward=4 * d, batch_first=True).eval()
src, tgt = torch.rand(2, 5, d), torch.rand(2, 3, d)
# check_trace=False: the trace check re-traces and fails on renamed values, which says nothing about the model
torch.jit.save(torch.jit.trace(model, (src, tgt), check_trace=False), sys.argv[1])
torch.jit.save(torch.jit.script(model), sys.argv[2])
"""

# The TUI in a fresh process, headless; prints absolute times (time.time()) of the first screen and the IR.
TUI = """
import asyncio, json, resource, sys, time
from tsinspect.tui.app import InspectorApp

async def main(path):
    app = InspectorApp(path)
    async with app.run_test(size=(140, 40)) as pilot:
        while app.loaded is None:
            await pilot.pause(0.005)
        await pilot.pause()  # the views have taken the archive and the screen is refreshed
        first = time.time()
        await pilot.press("g")
        view = app.query_one("IRView")
        while view.state in ("waiting", "loading"):
            await pilot.pause(0.005)
        await app.workers.wait_for_complete()
        await pilot.pause()
        ir = time.time()
        state = view.state
    peak = max(resource.getrusage(who).ru_maxrss for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    print(json.dumps({"first": first, "ir": ir, "state": state, "ui_mib": resource.getrusage(
        resource.RUSAGE_SELF).ru_maxrss / 1024, "peak_mib": peak / 1024}))

asyncio.run(main(sys.argv[1]))
"""


def build(path: Path, script: str, *args) -> Path:
    if not path.exists():
        OUT.mkdir(exist_ok=True)
        print(f"building {path.name} ...", file=sys.stderr)
        tmp = path.with_suffix(".part")
        subprocess.run([PY, "-c", script, str(tmp), *map(str, args)], check=True)
        tmp.rename(path)
    return path


def build_encoder(layers: int) -> Path:
    return build(OUT / f"encoder_{layers}.pt", ENCODER, layers, 1024, 16, 4096)


def build_deep(layers: int) -> Path:
    return build(OUT / f"deep_{layers}_d32.pt", ENCODER, layers, 32, 4, 64)


def build_transformer(d: int) -> tuple[Path, Path]:
    traced, scripted = OUT / f"transformer_6_6_d{d}_traced.pt", OUT / f"transformer_6_6_d{d}_scripted.pt"
    if not (traced.exists() and scripted.exists()):
        OUT.mkdir(exist_ok=True)
        print(f"building {traced.name}, {scripted.name} ...", file=sys.stderr)
        subprocess.run([PY, "-c", TRANSFORMER, str(traced), str(scripted), str(d)], check=True)
    return traced, scripted


def measure_once(cmd: list[str]) -> dict:
    out = subprocess.run([PY, str(HERE / "measure.py"), *cmd], capture_output=True, text=True, check=True).stdout
    run = json.loads(out)
    if run["rc"] not in (0, 1):  # diff exits 1 when it finds something
        raise SystemExit(f"{' '.join(cmd)} failed ({run['rc']}): {run['stderr']}")
    return run


def measure(cmd: list[str], repeat: int) -> dict:
    runs = [measure_once(cmd) for _ in range(repeat)]
    return {"wall_s": min(r["wall_s"] for r in runs), "peak_mib": max(r["peak_mib"] for r in runs)}


def torch_cmd(code: str, *paths: Path) -> list[str]:
    return [PY, "-W", "ignore", "-c", "import sys, torch\n" + code, *map(str, paths)]


LOAD = "torch.jit.load(sys.argv[1])"
LOAD_GRAPH = "print(torch.jit.load(sys.argv[1]).graph)"
LOAD_INLINED = "print(torch.jit.load(sys.argv[1]).inlined_graph)"
LOAD_CODE_BOTH = "print(torch.jit.load(sys.argv[1]).code); print(torch.jit.load(sys.argv[2]).code)"


def tui(path: Path, repeat: int) -> dict:
    runs = []
    for _ in range(repeat):
        start = time.time()
        proc = subprocess.run([PY, "-c", TUI, str(path)], capture_output=True, text=True, timeout=600)
        if proc.returncode:
            raise SystemExit(f"TUI probe failed on {path}: {proc.stderr[-1000:]}")
        doc = json.loads(proc.stdout.strip().splitlines()[-1])
        runs.append({"first_s": doc["first"] - start, "ir_s": doc["ir"] - start, "state": doc["state"],
                     "peak_mib": doc["peak_mib"], "ui_mib": doc["ui_mib"]})
    loaded = [r for r in runs if r["state"] == "loaded"] or runs  # a failed IR is quick: never the best time
    return {"first_s": round(min(r["first_s"] for r in runs), 3), "ir_s": round(min(r["ir_s"] for r in loaded), 3),
            "state": loaded[0]["state"], "failed": len(runs) - len(loaded) if loaded is not runs else len(runs),
            "peak_mib": max(r["peak_mib"] for r in runs), "ui_mib": max(r["ui_mib"] for r in runs)}


def inlined_nodes(path: Path) -> int:
    """Nodes (with those inside blocks) of the root forward's inlined graph, as tsinspect extracts it."""
    doc = json.loads(subprocess.run([*TSI, "graph", "--inline", "--json", str(path)], capture_output=True,
                                    text=True, check=True).stdout)
    root = next(m["type"] for m in doc["modules"] if m["path"] == "")
    method = next(m for m in doc["types"][root]["methods"] if m["name"] == "forward")
    stack, count = list(method["inlined"][2]), 0  # tsinspect.ir/2: GRAPH [inputs, outputs, nodes]
    while stack:
        node = stack.pop()
        count += 1
        for block in node[4] or []:  # NODE [kind, inputs, outputs, attributes, blocks, ...]
            stack.extend(block[2])
    return count


def archive_row(name: str, path: Path, repeat: int, tmp: Path) -> dict:
    html = tmp / "report.html"
    row = {"name": name, "size_mib": round(path.stat().st_size / 2**20, 1), "nodes": inlined_nodes(path)}
    steps = [
        ("info", [*TSI, "info", "--json", str(path)]),
        ("jit_load", torch_cmd(LOAD, path)),
        ("graph", [*TSI, "graph", "--json", str(path)]),
        ("jit_graph", torch_cmd(LOAD_GRAPH, path)),
        ("inline", [*TSI, "graph", "--inline", "--json", str(path)]),
        ("jit_inlined", torch_cmd(LOAD_INLINED, path)),
        ("report", [*TSI, "report", str(path), "-o", str(html), "--force"]),
    ]
    if shutil.which("unzip"):
        steps.insert(2, ("unzip_l", ["unzip", "-l", str(path)]))
    for key, cmd in steps:
        row[key] = measure(cmd, repeat)
        print(f"  {name} {key}: {row[key]}", file=sys.stderr)
    row["tui"] = tui(path, repeat)
    print(f"  {name} tui: {row['tui']}", file=sys.stderr)
    return row


def diff_row(traced: Path, scripted: Path, repeat: int) -> dict:
    row = {"name": traced.name.replace("_traced", ""), "size_mib": round(
        (traced.stat().st_size + scripted.stat().st_size) / 2**20, 1)}
    for key, cmd in (("diff", [*TSI, "diff", str(traced), str(scripted)]),
                     ("diff_no_ir", [*TSI, "diff", str(traced), str(scripted), "--ir", "never"]),
                     ("jit_code", torch_cmd(LOAD_CODE_BOTH, traced, scripted))):
        row[key] = measure(cmd, repeat)
        print(f"  diff {key}: {row[key]}", file=sys.stderr)
    doc = json.loads(subprocess.run([*TSI, "diff", str(traced), str(scripted), "--json"], capture_output=True,
                                    text=True).stdout)
    row["analysis"], row["findings"] = doc["analysis"], sum(doc["counts"].values())
    return row


# ----- output


def t(m: dict) -> str:
    return f"{m['wall_s']:.2f} s"


def tm(m: dict) -> str:
    return f"{m['wall_s']:.2f} s, {m['peak_mib']:.0f} MiB"


def x(a: float, b: float) -> str:
    return f"{a / b:.2f}x"


def tables(results: dict) -> str:
    rows, lines = results["archives"], []
    say = lines.append
    say(f"Machine: {results['machine']}; {results['date']}; load average before/after the run "
        f"{results['load_before']} / {results['load_after']}; best of {results['repeat']} runs.\n")
    say("**info** (`tsinspect info --json` against a process doing `torch.jit.load`, and `unzip -l`)\n")
    say("| archive | size | inlined nodes | `info --json` | `torch.jit.load` | time x | memory x | `unzip -l` |")
    say("|---|---|---|---|---|---|---|---|")
    for r in rows:
        unzip = t(r["unzip_l"]) if "unzip_l" in r else "n/a"
        say(f"| {r['name']} | {r['size_mib']:.0f} MiB | {r['nodes']:,} | {tm(r['info'])} | {tm(r['jit_load'])} | "
            f"{x(r['info']['wall_s'], r['jit_load']['wall_s'])} | "
            f"{x(r['info']['peak_mib'], r['jit_load']['peak_mib'])} | {unzip} |")
    say("\n**graph** (`tsinspect graph --json` against `print(torch.jit.load(f).graph)`; `--inline` against "
        "`print(torch.jit.load(f).inlined_graph)`; memory is the largest process)\n")
    say("| archive | `graph --json` | `.graph` | time x | memory x | `graph --inline --json` | `.inlined_graph` "
        "| time x | memory x |")
    say("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        g, j, i, ji = r["graph"], r["jit_graph"], r["inline"], r["jit_inlined"]
        say(f"| {r['name']} | {tm(g)} | {tm(j)} | {x(g['wall_s'], j['wall_s'])} | "
            f"{x(g['peak_mib'], j['peak_mib'])} | {tm(i)} | {tm(ji)} | {x(i['wall_s'], ji['wall_s'])} | "
            f"{x(i['peak_mib'], ji['peak_mib'])} |")
    say("\n**report** (HTML, with the IR) and **TUI** (headless; from the command to the first screen, and to "
        "the IR view with the IR loaded)\n")
    say("| archive | `report -o x.html` | time x `torch.jit.load` | TUI first screen | TUI IR | TUI memory "
        "(UI process / largest) |")
    say("|---|---|---|---|---|---|")
    for r in rows:
        u = r["tui"]
        say(f"| {r['name']} | {tm(r['report'])} | {x(r['report']['wall_s'], r['jit_load']['wall_s'])} | "
            f"{u['first_s']:.2f} s | {u['ir_s']:.2f} s{'' if u['state'] == 'loaded' else ' (' + u['state'] + ')'}"
            f"{' (IR failed in ' + str(u['failed']) + ' runs)' if u.get('failed') else ''} | {u['ui_mib']:.0f} / {u['peak_mib']:.0f} MiB |")
    d = results["diff"]
    say("\n**diff** (`tsinspect diff TRACED SCRIPTED`, against loading both with torch and printing `.code`)\n")
    say("| pair | both archives | `diff` (IR path) | `diff --ir never` | load both + `.code` | time x | findings |")
    say("|---|---|---|---|---|---|---|")
    say(f"| {d['name']} | {d['size_mib']:.0f} MiB | {tm(d['diff'])} | {tm(d['diff_no_ir'])} | {tm(d['jit_code'])} "
        f"| {x(d['diff']['wall_s'], d['jit_code']['wall_s'])} | {d['findings']} ({d['analysis']}) |")
    return "\n".join(lines)


def _pyplot():
    """matplotlib's pyplot on the Agg backend, or None (said on stderr) when matplotlib is missing."""
    try:
        import matplotlib
    except ImportError:
        print("matplotlib is not installed: no plot (pip install matplotlib)", file=sys.stderr)
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot(results: dict, path: Path) -> bool:
    plt = _pyplot()
    if plt is None:
        return False

    enc = [r for r in results["archives"] if r["name"].startswith("encoder")]
    deep = [r for r in results["archives"] if r["name"].startswith("deep")]
    layers = [r["layers"] for r in enc]
    fig, (a, b, c) = plt.subplots(1, 3, figsize=(15, 4.6))
    series = [("info", "tsinspect info", "C0", "-"), ("graph", "tsinspect graph", "C1", "-"),
              ("inline", "tsinspect graph --inline", "C2", "-"), ("report", "tsinspect report", "C4", "-"),
              ("jit_load", "torch.jit.load", "C3", "--"), ("jit_inlined", "torch.jit.load + .inlined_graph", "C5", "--")]
    for key, label, colour, style in series:
        a.plot(layers, [r[key]["wall_s"] for r in enc], style, marker="o", color=colour, label=label)
        b.plot(layers, [r[key]["peak_mib"] for r in enc], style, marker="o", color=colour, label=label)
    a.plot(layers, [r["tui"]["first_s"] for r in enc], ":", marker="s", color="C7", label="TUI first screen")
    a.plot(layers, [r["tui"]["ir_s"] for r in enc], ":", marker="^", color="C8", label="TUI IR view")
    a.set(title="Wall time (best of runs)", xlabel="encoder layers (d_model 1024; 24 = 1.2 GB)", ylabel="seconds")
    b.set(title="Peak memory of the largest process", xlabel="encoder layers (d_model 1024)", ylabel="MiB")
    a.legend(fontsize=8)
    b.legend(fontsize=8)
    for key, label, colour in (("inline", "tsinspect graph --inline", "C2"), ("tui", "TUI IR view", "C8"),
                               ("jit_inlined", "torch.jit.load + .inlined_graph", "C5")):
        def sec(r):
            return r["tui"]["ir_s"] if key == "tui" else r[key]["wall_s"]
        c.plot([r["nodes"] for r in enc], [sec(r) for r in enc], "-", marker="o", color=colour, label=label)
        c.plot([r["nodes"] for r in deep], [sec(r) for r in deep], "*", markersize=14, color=colour)
    c.set(title="Time against inlined graph size\n(dots: d_model 1024; stars: d_model 32, 1 MiB)",
          xlabel="nodes in the inlined forward graph", ylabel="seconds")
    c.legend(fontsize=8)
    for axis in (a, b, c):
        axis.grid(alpha=0.3)
        axis.set_ylim(bottom=0)
    fig.suptitle(f"tsinspect benchmarks ({results['machine']}, {results['date']})", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    return True


# ----- curves (issue 14): tsinspect against torch at sizes from 1k to 200k nodes and 1k to 10k parameters.
# The two sides of a ratio are run alternately (a, b, a, b, ...), and the ratio of each pair is kept: on a shared
# machine the load moves between pairs more than within one.

CURVE_LAYERS = "1,7,35,70,140"  # d_model 32 encoders: 1.7k, 10k, 51k, 102k, 205k inlined nodes
CURVE_PARAMS = "1000,2500,5000,10000"
CURVE_TRACED = "2500,10000"  # the same models traced: a class and a code file per Linear

PARAMS = """
import sys, warnings, torch
warnings.simplefilter("ignore")
torch.manual_seed(0)
model = torch.nn.Sequential(*[torch.nn.Linear(2, 2) for _ in range(int(sys.argv[2]) // 2)]).eval()
if sys.argv[3:] == ["traced"]:
    torch.jit.trace(model, torch.randn(1, 2)).save(sys.argv[1])
else:
    torch.jit.script(model).save(sys.argv[1])
"""

# Python writes no bytecode cache when PYTHONDONTWRITEBYTECODE is set (this machine's environment sets it):
# tsinspect's own modules are then compiled again by every command, torch's (installed with their cache) are
# not. The curves measure what an installed tsinspect costs: caching on, after one warm-up run.
CACHED_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def build_params(n: int, traced: bool = False) -> Path:
    """n parameters: a scripted nn.Sequential of n/2 Linear(2, 2) (code/ grows with n too); ``traced``: the
    same model traced, which gives each Linear a class and a code file (and debug records) of its own."""
    if traced:
        return build(OUT / f"params_{n}_traced.pt", PARAMS, n, "traced")
    return build(OUT / f"params_{n}.pt", PARAMS, n)


def measure_cached(cmd: list[str]) -> dict:
    out = subprocess.run([PY, str(HERE / "measure.py"), *cmd], capture_output=True, text=True, check=True,
                         env=CACHED_ENV).stdout
    run = json.loads(out)
    if run["rc"] not in (0, 1):
        raise SystemExit(f"{' '.join(cmd)} failed ({run['rc']}): {run['stderr']}")
    return run


def interleaved(ours: list[str], theirs: list[str], repeat: int) -> dict:
    """Both commands alternately, ``repeat`` times each: best times, largest memory, median of pair ratios."""
    measure_cached(ours)  # warm-up: bytecode caches, the file in the page cache
    a, b = [], []
    for _ in range(repeat):
        a.append(measure_cached(ours))
        b.append(measure_cached(theirs))
    ratios = sorted(x["wall_s"] / y["wall_s"] for x, y in zip(a, b))
    cpu = sorted(x["cpu_s"] / y["cpu_s"] for x, y in zip(a, b))

    def side(runs: list[dict]) -> dict:
        return {"wall_s": min(r["wall_s"] for r in runs), "cpu_s": min(r["cpu_s"] for r in runs),
                "peak_mib": max(r["peak_mib"] for r in runs)}

    return {"ours": side(a), "theirs": side(b),
            "time_x": round(ratios[len(ratios) // 2], 3), "time_x_range": [round(ratios[0], 3), round(ratios[-1], 3)],
            "cpu_x": round(cpu[len(cpu) // 2], 3), "cpu_x_range": [round(cpu[0], 3), round(cpu[-1], 3)],
            "memory_x": round(max(r["peak_mib"] for r in a) / max(r["peak_mib"] for r in b), 3)}


def child_timings(path: Path, *flags: str) -> dict:
    """The extraction child's own wall-clock timings (import, load, walk) from the document's ``timings``."""
    doc = json.loads(subprocess.run([*TSI, "graph", "--json", *flags, str(path)], capture_output=True, text=True,
                                    check=True, env=CACHED_ENV).stdout)
    return doc.get("timings", {})


def curves(repeat: int, layers: str, params: str, traced: str = CURVE_TRACED) -> dict:
    load_before = " ".join(f"{v:.1f}" for v in os.getloadavg())
    out = {"machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
                      f"torch {torch_version()}", "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
           "repeat": repeat, "load_before": load_before, "nodes": [], "params": []}
    paths = [(n, build_deep(n)) for n in map(int, layers.split(","))]
    smallest = paths[0][1]
    out["fixed"] = interleaved([*TSI, "graph", "--json", str(smallest)], [PY, "-c", "import torch"], repeat)
    out["fixed"]["child"] = child_timings(smallest)
    print(f"  fixed cost: {out['fixed']}", file=sys.stderr)
    for n, path in paths:
        row = {"layers": n, "nodes": inlined_nodes(path), "size_mib": round(path.stat().st_size / 2**20, 2)}
        row["graph"] = interleaved([*TSI, "graph", "--json", str(path)], torch_cmd(LOAD_GRAPH, path), repeat)
        row["inline"] = interleaved([*TSI, "graph", "--inline", "--json", str(path)], torch_cmd(LOAD_INLINED, path),
                                    repeat)
        row["child"] = child_timings(path, "--inline")
        print(f"  nodes {row['nodes']}: {row}", file=sys.stderr)
        out["nodes"].append(row)
    for n, how in [(int(n), "scripted") for n in params.split(",") if n] + \
            [(int(n), "traced") for n in traced.split(",") if n]:
        path = build_params(n, how == "traced")
        row = {"params": n, "how": how, "size_mib": round(path.stat().st_size / 2**20, 2)}
        row["info"] = interleaved([*TSI, "info", "--json", str(path)], torch_cmd(LOAD, path), repeat)
        row["graph"] = interleaved([*TSI, "graph", "--json", str(path)], torch_cmd(LOAD_GRAPH, path), repeat)
        print(f"  params {n}: {row}", file=sys.stderr)
        out["params"].append(row)
    out["load_after"] = " ".join(f"{v:.1f}" for v in os.getloadavg())
    return out


def curve_tables(c: dict) -> str:
    lines = []
    say = lines.append
    f = c["fixed"]
    say(f"Machine: {c['machine']}; {c['date']}; load average before/after {c['load_before']} / {c['load_after']}; "
        f"{c['repeat']} interleaved pairs per ratio (median pair ratio, range in brackets; best times).\n")
    say(f"Fixed cost: `graph --json` on the smallest archive {f['ours']['wall_s']:.2f} s against `import torch` "
        f"alone {f['theirs']['wall_s']:.2f} s ({f['time_x']:.2f}x; CPU {f['ours']['cpu_s']:.2f} s against "
        f"{f['theirs']['cpu_s']:.2f} s, {f['cpu_x']:.2f}x); the child's own timings: "
        + ", ".join(f"{k} {v:.2f} s" for k, v in f["child"].items()) + ".\n")
    say("Each command: best wall time, best CPU time (user + system, the whole process tree), largest peak "
        "memory. Ratios are ours / torch's: wall and CPU, median of the pairs [lowest-highest].\n")
    say("| layers | inlined nodes | `graph --json` | load + print `.graph` | wall x | CPU x | memory x "
        "| `graph --inline --json` | load + print `.inlined_graph` | wall x | CPU x | memory x "
        "| child: import / load / walk |")
    say("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in c["nodes"]:
        g, i = r["graph"], r["inline"]
        say(f"| {r['layers']} | {r['nodes']:,} | {tcm(g['ours'])} | {tcm(g['theirs'])} | {rx(g, 'time')} | "
            f"{rx(g, 'cpu')} | {g['memory_x']:.2f}x | {tcm(i['ours'])} | {tcm(i['theirs'])} | {rx(i, 'time')} | "
            f"{rx(i, 'cpu')} | {i['memory_x']:.2f}x | {r['child'].get('import', 0):.2f} / "
            f"{r['child'].get('load', 0):.2f} / {r['child'].get('walk', 0):.2f} s |")
    say("\n| parameters | saved by | size | `info --json` | `torch.jit.load` | wall x | CPU x | memory x | "
        "`graph --json` | load + print `.graph` | wall x | CPU x |")
    say("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in c["params"]:
        i, g = r["info"], r["graph"]
        say(f"| {r['params']:,} | {r.get('how', 'scripted')} | {r['size_mib']:.1f} MiB | {tcm(i['ours'])} | {tcm(i['theirs'])} | {rx(i, 'time')} | "
            f"{rx(i, 'cpu')} | {i['memory_x']:.2f}x | {tcm(g['ours'])} | {tcm(g['theirs'])} | {rx(g, 'time')} | "
            f"{rx(g, 'cpu')} |")
    return "\n".join(lines)


def tcm(m: dict) -> str:
    return f"{m['wall_s']:.2f} s (CPU {m['cpu_s']:.2f} s), {m['peak_mib']:.0f} MiB"


def rx(pair: dict, what: str) -> str:
    low, high = pair[f"{what}_x_range"]
    return f"{pair[f'{what}_x']:.2f}x [{low:.2f}-{high:.2f}]"


def plot_curves(c: dict, path: Path) -> bool:
    plt = _pyplot()
    if plt is None:
        return False

    fig, (a, b) = plt.subplots(1, 2, figsize=(12, 4.4))
    nodes = [r["nodes"] for r in c["nodes"]]
    for key, side, label, colour, style in (
            ("graph", "ours", "tsinspect graph --json", "C1", "-"),
            ("graph", "theirs", "load + print .graph", "C3", "--"),
            ("inline", "ours", "tsinspect graph --inline --json", "C2", "-"),
            ("inline", "theirs", "load + print .inlined_graph", "C5", "--")):
        a.plot(nodes, [r[key][side]["cpu_s"] for r in c["nodes"]], style, marker="o", color=colour, label=label)
    a.axhline(c["fixed"]["theirs"]["cpu_s"], color="C7", linestyle=":", label="import torch alone")
    a.set(title="CPU time against inlined graph size (d_model 32 encoders)", xlabel="nodes in the inlined forward",
          ylabel="CPU seconds (process tree, best of runs)")
    scripted = [r for r in c["params"] if r.get("how", "scripted") == "scripted"]
    params = [r["params"] for r in scripted]
    for key, side, label, colour, style in (
            ("info", "ours", "tsinspect info --json", "C0", "-"), ("info", "theirs", "torch.jit.load", "C3", "--"),
            ("graph", "ours", "tsinspect graph --json", "C1", "-"),
            ("graph", "theirs", "load + print .graph", "C5", "--")):
        b.plot(params, [r[key][side]["cpu_s"] for r in scripted], style, marker="o", color=colour, label=label)
    b.set(title="CPU time against parameters (nn.Sequential of Linear(2, 2))", xlabel="parameters",
          ylabel="CPU seconds (process tree, best of runs)")
    for axis in (a, b):
        axis.grid(alpha=0.3)
        axis.set_ylim(bottom=0)
        axis.legend(fontsize=8)
    fig.suptitle(f"tsinspect against torch ({c['machine']}, {c['date']}, load average {c['load_before']}; CPU time, "
                 "steadier than wall time on a shared machine)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    return True


# ----- the TUI's event loop (issue 14): a heartbeat task in the app's own loop wakes every 10 ms; how late it
# wakes is how long the UI could not answer. Phases: the IR's arrival ("g" until loaded), the inline toggle
# ("i"), moving down the tree, and one full garbage collection (what an automatic one would cost).

HEARTBEAT = """
import asyncio, gc, json, sys, time
from tsinspect.tui.app import InspectorApp

async def main(path):
    app = InspectorApp(path)
    late, phase = {}, ["first screen"]

    async def beat():
        last = time.perf_counter()
        while True:
            await asyncio.sleep(0.01)
            now = time.perf_counter()
            late.setdefault(phase[0], []).append(now - last - 0.01)
            last = now

    async with app.run_test(size=(140, 40)) as pilot:
        task = asyncio.get_running_loop().create_task(beat())
        while app.loaded is None:
            await pilot.pause(0.01)
        phase[0] = "IR arrival"
        await pilot.press("g")
        view = app.query_one("IRView")
        while view.state in ("waiting", "loading"):
            await pilot.pause(0.01)
        await app.workers.wait_for_complete()
        await pilot.pause(0.3)
        phase[0] = "inline toggle"
        await pilot.press("i")
        await pilot.pause(0.5)
        phase[0] = "down x20"
        for _ in range(20):
            await pilot.press("down")
        await pilot.pause(0.3)
        phase[0] = "full collection"
        started = time.perf_counter()
        gc.collect()
        collect = time.perf_counter() - started
        await pilot.pause(0.1)
        task.cancel()
    print(json.dumps({"state": view.state, "max_stall_ms": {k: round(max(v) * 1000) for k, v in late.items()},
                      "stalls_over_100ms": {k: sum(x > 0.1 for x in v) for k, v in late.items()},
                      "full_collection_ms": round(collect * 1000), "gc_tracked": len(gc.get_objects())}))

asyncio.run(main(sys.argv[1]))
"""


def heartbeat(path: Path) -> dict:
    proc = subprocess.run([PY, "-c", HEARTBEAT, str(path)], capture_output=True, text=True, timeout=900,
                          env=CACHED_ENV)
    if proc.returncode:
        raise SystemExit(f"heartbeat probe failed on {path}: {proc.stderr[-1000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--layers", default="1,6,12,24", help="encoder sizes (d_model 1024), comma-separated")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each command; the best time is kept")
    parser.add_argument("--deep-layers", type=int, default=35, help="layers of the d_model 32 encoder (35: ~50k nodes)")
    parser.add_argument("--transformer-d", type=int, default=512, help="d_model of the nn.Transformer pair")
    parser.add_argument("--quick", action="store_true", help="1 layer, small models, one run: a smoke test")
    parser.add_argument("--plot", type=Path, help="write the scaling plot here (needs matplotlib)")
    parser.add_argument("--build-only", action="store_true", help="build the archives and stop")
    parser.add_argument("--curves", action="store_true",
                        help="only the curves: graph from 1k to 200k nodes, info from 1k to 10k parameters")
    parser.add_argument("--curve-layers", default=CURVE_LAYERS, help="layers of the d_model 32 encoders of the curve")
    parser.add_argument("--curve-params", default=CURVE_PARAMS, help="parameter counts of the parameter curve")
    parser.add_argument("--curve-traced", default=CURVE_TRACED,
                        help="parameter counts of the traced models measured beside it ('' for none)")
    parser.add_argument("--heartbeat", metavar="LAYERS",
                        help="only the TUI's event-loop stalls on d_model 32 encoders of these layers (e.g. 35,140)")
    args = parser.parse_args()
    if args.heartbeat:
        for n in map(int, args.heartbeat.split(",")):
            path = build_deep(n)
            print(json.dumps({"layers": n, "nodes": inlined_nodes(path), "load": os.getloadavg()[0],
                              **heartbeat(path)}))
        return
    if args.curves:
        result = curves(args.repeat, args.curve_layers, args.curve_params, args.curve_traced)
        (OUT / "results-curves.json").write_text(json.dumps(result, indent=1))
        print(curve_tables(result))
        if args.plot and plot_curves(result, args.plot):
            print(f"\nplot written to {args.plot}", file=sys.stderr)
        return
    if args.quick:
        args.layers, args.repeat, args.deep_layers, args.transformer_d = "1", 1, 2, 32
    sizes = [int(n) for n in args.layers.split(",")]
    archives = [(f"encoder_{n}", n, build_encoder(n)) for n in sizes]
    archives.append((f"deep_{args.deep_layers}_d32", args.deep_layers, build_deep(args.deep_layers)))
    pair = build_transformer(args.transformer_d)
    if args.build_only:
        return
    load_before = " ".join(f"{v:.1f}" for v in os.getloadavg())
    results = {"machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
                          f"torch {torch_version()}", "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
               "repeat": args.repeat, "load_before": load_before, "archives": []}
    with tempfile.TemporaryDirectory() as tmp:
        for name, layers, path in archives:
            row = archive_row(name, path, args.repeat, Path(tmp))
            row["layers"] = layers
            results["archives"].append(row)
        results["diff"] = diff_row(*pair, args.repeat)
    results["load_after"] = " ".join(f"{v:.1f}" for v in os.getloadavg())
    (OUT / ("results-quick.json" if args.quick else "results.json")).write_text(json.dumps(results, indent=1))
    print(tables(results))
    if args.plot and plot(results, args.plot):
        print(f"\nplot written to {args.plot}", file=sys.stderr)


def torch_version() -> str:
    return subprocess.run([PY, "-c", "import torch; print(torch.__version__)"], capture_output=True, text=True,
                          check=True).stdout.strip()


if __name__ == "__main__":
    main()
