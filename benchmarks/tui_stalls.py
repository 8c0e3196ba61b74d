"""The terminal UI's times and UI-thread stalls, against ``tsinspect graph --json`` in the same run.

    python benchmarks/tui_stalls.py ARCHIVE... [--repeat 3]

For each archive, in a fresh process each run, the app is driven headless (App.run_test, 140x40) while an
event-loop heartbeat (a task that sleeps 10 ms and records how late it wakes) measures the longest stall
of the UI thread in each phase: the IR's arrival (after the first screen), ``i`` (the inlined graphs,
fetched on demand), a search for ``aten::`` (every node of every method), 40 ``down`` keys, and ``i`` back.
Prints one JSON line per run and a Markdown table of the best times and the worst stalls. The times are
from the process's start: "first screen" when the archive is read and shown, "IR ready" when the IR view
has the IR (``g`` pressed at the first screen). Nothing here is asserted by the tests.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

PY = sys.executable

PROBE = r"""
import asyncio, json, sys, time
START = float(sys.argv[2])
from tsinspect.tui.app import InspectorApp

stalls = {}
phase = "start"

async def heartbeat():
    while True:
        before = time.perf_counter()
        await asyncio.sleep(0.01)
        late = time.perf_counter() - before - 0.01
        stalls[phase] = max(stalls.get(phase, 0.0), late)

async def settle(app, pilot):
    await app.workers.wait_for_complete()
    await pilot.pause()

async def main(path):
    global phase
    app = InspectorApp(path)
    out = {}
    async with app.run_test(size=(140, 40)) as pilot:
        while app.loaded is None:
            await pilot.pause(0.005)
        await pilot.pause()
        out["first"] = time.time() - START
        beat = asyncio.create_task(heartbeat())
        phase = "IR arrival"
        await pilot.press("g")
        view = app.query_one("IRView")
        while view.state in ("waiting", "loading"):
            await pilot.pause(0.005)
        await settle(app, pilot)
        out["ir"] = time.time() - START
        out["state"] = view.state
        if view.state == "loaded":
            phase = "i (inlined, fetched)"
            t = time.perf_counter()
            await pilot.press("i")
            while view.state != "loaded" or not view.inlined:
                await pilot.pause(0.005)
            await settle(app, pilot)
            out["inline_s"] = time.perf_counter() - t
            phase = "search aten::"
            t = time.perf_counter()
            await pilot.press("slash", *"aten::", "enter")
            while app.workers and any(w.is_running for w in app.workers):
                await pilot.pause(0.005)
            await settle(app, pilot)
            out["search_s"] = time.perf_counter() - t
            out["matches"] = len(app.matches)
            phase = "40 x down"
            app.query_one("#ir-tree").focus()
            for _ in range(40):
                await pilot.press("down")
            await settle(app, pilot)
            phase = "i (back)"
            await pilot.press("i")
            await settle(app, pilot)
        phase = "end"
        beat.cancel()
    out["stalls"] = {k: round(v, 3) for k, v in stalls.items() if k not in ("start", "end")}
    print(json.dumps(out))

asyncio.run(main(sys.argv[1]))
"""


def probe(path: Path) -> dict:
    start = time.time()
    proc = subprocess.run([PY, "-c", PROBE, str(path), repr(start)], capture_output=True, text=True, timeout=900)
    if proc.returncode:
        raise SystemExit(f"probe failed on {path}: {proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def graph_json(path: Path) -> float:
    start = time.perf_counter()
    subprocess.run([PY, "-m", "tsinspect", "graph", "--json", str(path)], capture_output=True, check=True,
                   timeout=900)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("archives", nargs="+", type=Path)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    rows = []
    for path in args.archives:
        runs, graphs = [], []
        for _ in range(args.repeat):  # interleaved: the same machine load for both
            runs.append(probe(path))
            graphs.append(graph_json(path))
            print(json.dumps({"archive": path.name, **runs[-1], "graph_json_s": round(graphs[-1], 3)}),
                  file=sys.stderr)
        stalls: dict[str, float] = {}
        for run in runs:
            for k, v in run["stalls"].items():
                stalls[k] = max(stalls.get(k, 0.0), v)
        ir = min(r["ir"] for r in runs)
        rows.append((path.name, min(r["first"] for r in runs), ir, min(graphs), stalls,
                     min(r.get("inline_s", 0) for r in runs), min(r.get("search_s", 0) for r in runs)))
    print("| archive | first screen | IR ready | `graph --json` | IR ready x graph | `i` (fetch inlined) | "
          "search | longest UI stall (phase) |")
    print("|---|---|---|---|---|---|---|---|")
    for name, first, ir, graph, stalls, inline, search in rows:
        worst = max(stalls.items(), key=lambda kv: kv[1]) if stalls else ("-", 0)
        print(f"| {name} | {first:.2f} s | {ir:.2f} s | {graph:.2f} s | {ir / graph:.2f}x | {inline:.2f} s | "
              f"{search:.2f} s | {worst[1] * 1000:.0f} ms ({worst[0]}) |")
    print()
    for row in rows:
        print(f"{row[0]}: worst stall by phase (ms): " + ", ".join(f"{k} {v * 1000:.0f}" for k, v in row[4].items()))

if __name__ == "__main__":
    main()
