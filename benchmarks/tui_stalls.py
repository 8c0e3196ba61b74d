"""The terminal UI's times and UI-thread stalls, against ``tsinspect graph --json`` in the same run.

    python benchmarks/tui_stalls.py ARCHIVE... [--repeat 3]

For each archive, in a fresh process each run, the app is started as ``tsinspect FILE`` starts it (the IR's
torch child first, then Textual) and driven headless (App.run_test, 140x40) while an
event-loop heartbeat (a task that sleeps 10 ms and records how late it wakes) measures the longest stall of
the UI thread in each phase: the IR's arrival (``g`` pressed at the first screen: the screen refreshed
once the archive is shown), ``i`` (the inlined graphs, fetched on demand), a search for ``aten::`` (every
node of every method), space on a folder of 1,000 nodes, scrolling (20 pages, end, home, 40 lines), a
jump to an input's definition (tab, enter), ``c`` (the node's code line in the archive view), one
``gc.collect()`` on the UI thread, and ``i`` back.
``graph --json`` and ``graph --inline --json`` run interleaved with the probe, so all see the same machine.
Prints one JSON line per run and a Markdown table of the best times and the worst stalls. Times are from
the process's start; CPU times are the UI process's own (its children not included). Beside each stall,
the UI thread's own CPU time within it: on a loaded machine much of a stall is waiting for a core.

``--against SOURCE`` runs the whole probe on this tree's app and on the tsinspect package in the folder
SOURCE (the code before a change) alternately, and prints each phase's median and range for both.
``--first SOURCE`` times the first screen only, the same way. Every run has the bytecode cache, as an
installed tsinspect.

Diagnostics for one probe (``probe(path, flag)``): ``--slow`` lists message handlers and screen updates
over 50 ms, ``--where`` samples every thread's stack while the heartbeat is late, ``--profile`` profiles
the UI thread by phase, ``--worst`` profiles the event loop's longest callback of each phase, ``--types``
counts the objects the collector tracks, ``--gen2`` times every full collection by phase. Nothing here is
asserted by the tests.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

PY = sys.executable

PROBE = r"""
import asyncio, gc, json, os, resource, sys, time
START = float(sys.argv[2])
if os.environ.get("TUI_STALLS_SOURCE"):  # another tsinspect package than the editable install's
    sys.path.insert(0, os.environ["TUI_STALLS_SOURCE"])
try:  # as tsinspect.tui.run does, before Textual's import
    from tsinspect.tui import start_ir
    started = start_ir(sys.argv[1], False)
except ImportError:  # the code before irfetch.Early: a `graph --json` process
    from tsinspect.tui.irfetch import Running
    started = Running(sys.argv[1], trust=False, inline=False)
from tsinspect.tui.app import InspectorApp
from tsinspect.tui.widgets.lazytree import Range

stalls = {}
phase = "start"
beat_at = [time.perf_counter()]
where = {}  # with --where: the UI thread's innermost frames of tsinspect or textual seen in stalls, by phase

stall_cpu = {}  # the UI thread's own CPU seconds within each phase's longest stall (the rest: waiting)

full = {}  # with --gen2: the duration of every full collection (ms), by phase, in whichever thread it ran
full_start = [0.0]

def time_full_collections(event, info):
    if info["generation"] == 2:
        if event == "start":
            full_start[0] = time.perf_counter()
        else:
            full.setdefault(phase, []).append(round((time.perf_counter() - full_start[0]) * 1000))

if "--gen2" in sys.argv:
    gc.callbacks.append(time_full_collections)

async def heartbeat():
    while True:
        before = beat_at[0] = time.perf_counter()
        cpu_before = time.thread_time()
        await asyncio.sleep(0.01)
        late = time.perf_counter() - before - 0.01
        if late >= stalls.get(phase, 0.0):
            stalls[phase] = late
            stall_cpu[phase] = time.thread_time() - cpu_before

def watch(ui_thread):
    # samples the UI thread stack every 20 ms while the heartbeat is more than 70 ms late
    import threading, traceback
    while True:
        time.sleep(0.02)
        if time.perf_counter() - beat_at[0] > 0.07:
            counts = where.setdefault(phase, {})
            for ident, frame in sys._current_frames().items():
                if ident == threading.get_ident():
                    continue
                frames = traceback.extract_stack(frame)
                ours = [f"{f.filename.split('site-packages/')[-1].split('tsinspect/')[-1].split('lib/python3')[-1]}"
                        f":{f.lineno} {f.name}" for f in frames]
                key = ("UI: " if ident == ui_thread else "other: ") + " < ".join(reversed(ours[-4:]))
                counts[key] = counts.get(key, 0) + 1

async def settle(app, pilot):
    await app.workers.wait_for_complete()
    await pilot.pause()

profiles = {}  # with --profile: the UI thread's profile of each phase
worst = {}  # with --worst: (seconds, profile) of the event loop's longest callback in each phase

def profile_callbacks():
    import asyncio.events, cProfile
    run = asyncio.events.Handle._run
    def profiled(self):
        prof = cProfile.Profile()
        t = time.perf_counter()
        prof.enable()
        try:
            return run(self)
        finally:
            prof.disable()
            took = time.perf_counter() - t
            if took > worst.get(phase, (0.0,))[0]:
                worst[phase] = (took, prof)
    asyncio.events.Handle._run = profiled

def set_phase(name):
    global phase
    if "--profile" in sys.argv:
        import cProfile
        if phase in profiles:
            profiles[phase].disable()
        profiles[name] = cProfile.Profile()
        profiles[name].enable()
    phase = name

slow = {}  # with --slow: message handlers and refreshes of the UI thread that took over 50 ms, by phase

def time_handlers():
    from textual.message_pump import MessagePump
    from textual.screen import Screen
    def timed(original, what):
        async def wrapper(self, *args, **kwargs):
            t = time.perf_counter()
            try:
                return await original(self, *args, **kwargs)
            finally:
                took = time.perf_counter() - t
                if took > 0.05:
                    slow.setdefault(phase, []).append((round(took, 3), what(self, *args)))
        return wrapper
    MessagePump._dispatch_message = timed(MessagePump._dispatch_message,
                                          lambda self, m: f"{type(self).__name__}#{self.id} {type(m).__name__}")
    for name in ("_compositor_refresh", "_refresh_layout"):
        def step(self, *args, _original=getattr(Screen, name), _name=name, **kwargs):
            t = time.perf_counter()
            _original(self, *args, **kwargs)
            if time.perf_counter() - t > 0.05:
                slow.setdefault(phase, []).append((round(time.perf_counter() - t, 3), "Screen." + _name))
        setattr(Screen, name, step)

def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime

async def main(path):
    if "--slow" in sys.argv:
        time_handlers()
    if "--worst" in sys.argv:
        profile_callbacks()
    shown = {}  # the first screen: the screen refreshed after the status line first names the archive's records
    update_status = InspectorApp.update_status
    def marked(self, *args):
        update_status(self, *args)
        if self.loaded is not None and not shown:
            shown["at"] = None
            self.call_after_refresh(lambda: shown.update(at=(time.time() - START, cpu())))
    InspectorApp.update_status = marked
    app = InspectorApp(path, started_ir=started)
    out = {}
    async with app.run_test(size=(140, 40)) as pilot:
        while shown.get("at") is None:
            await asyncio.sleep(0.005)  # not pilot.pause: it posts to every widget and redraws
        out["first"], out["first_cpu"] = shown["at"][0], round(shown["at"][1], 3)
        await pilot.pause()
        if "--first" in sys.argv:  # no teardown: it is not measured, and the app's may race its timers
            print(json.dumps(out), flush=True)
            started.stop()
            os._exit(0)
        beat = asyncio.create_task(heartbeat())
        if "--where" in sys.argv:
            import threading
            threading.Thread(target=watch, args=(threading.get_ident(),), daemon=True).start()
        set_phase("IR arrival")
        await pilot.press("g")
        view = app.query_one("IRView")
        tree = app.query_one("#ir-tree")
        while view.state in ("waiting", "loading"):
            await asyncio.sleep(0.005)  # not pilot.pause: it posts to every widget and redraws
        await pilot.pause()
        out["ir"] = time.time() - START  # the tree shown; where values are defined and used may follow
        await settle(app, pilot)
        out["ir_indexed"] = time.time() - START
        out["state"] = view.state
        out["focus_after_g"] = getattr(app.focused, "id", None)
        if view.state == "loaded":
            set_phase("i (inlined, fetched)")
            t = time.perf_counter()
            await pilot.press("i")
            while view.state != "loaded" or not view.inlined:
                await asyncio.sleep(0.005)  # not pilot.pause: it posts to every widget and redraws
            await pilot.pause()
            out["inline_s"] = time.perf_counter() - t
            await settle(app, pilot)
            out["inline_indexed_s"] = time.perf_counter() - t
            out["inlined_nodes"] = max(view._counts.values(), default=0)
            set_phase("search aten::")
            t = time.perf_counter()
            await pilot.press("slash", *"aten::", "enter")
            while app.workers and any(w.is_running for w in app.workers):
                await asyncio.sleep(0.005)  # not pilot.pause: it posts to every widget and redraws
            await settle(app, pilot)
            out["search_s"] = time.perf_counter() - t
            out["matches"] = len(app.matches)
            set_phase("expand")  # a collapsed folder of 1,000 nodes (or the largest collapsed line) by space
            tree.focus()
            folders = [n for n in tree._tree_nodes.values() if isinstance(n.data, Range) and not n.is_expanded]
            if folders:
                tree.move_cursor(folders[-1])
                await pilot.pause()
                await pilot.press("space")
                await settle(app, pilot)
            set_phase("scroll")  # 20 pages down, end, home, 40 lines down
            for key in ["pagedown"] * 20 + ["end", "home"] + ["down"] * 40:
                await pilot.press(key)
            await settle(app, pilot)
            set_phase("jump to definition")  # tab to the links, down to the first node link, enter
            links = app.query_one("#ir-links")
            enabled = [i for i, target in enumerate(links.targets) if target is not None]
            node_link = next((i for i in enabled if links.targets[i][0] == "node"), None)
            if node_link is not None:
                t = time.perf_counter()
                await pilot.press("tab", *["down"] * enabled.index(node_link), "enter")
                await settle(app, pilot)
                out["jump_s"] = time.perf_counter() - t
            set_phase("code line (c)")  # the archive view opens the code record at the node's line
            tree.focus()
            t = time.perf_counter()
            await pilot.press("c")
            await settle(app, pilot)
            out["code_s"] = time.perf_counter() - t
            await pilot.press("g")
            await settle(app, pilot)
            set_phase("full collection")
            t = time.perf_counter()
            gc.collect()
            out["gc_s"] = time.perf_counter() - t
            out["gc_tracked"] = len(gc.get_objects())
            if "--types" in sys.argv:
                from collections import Counter
                out["gc_types"] = Counter(type(o).__module__ + "." + type(o).__qualname__
                                          for o in gc.get_objects()).most_common(12)
            await pilot.pause(0.05)
            set_phase("i (back)")
            tree.focus()
            await pilot.press("i")
            await settle(app, pilot)
        set_phase("end")
        beat.cancel()
        out["cpu_s"] = round(cpu(), 2)
        out["max_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    out["stalls"] = {k: round(v, 3) for k, v in stalls.items() if k not in ("start", "end")}
    out["stall_cpu"] = {k: round(v, 3) for k, v in stall_cpu.items() if k not in ("start", "end")}
    if slow:
        out["slow"] = {k: sorted(v, reverse=True)[:8] for k, v in slow.items()}
    if full:
        out["full_collections_ms"] = full
    if where:
        out["where"] = {k: sorted(v.items(), key=lambda kv: -kv[1])[:6] for k, v in where.items()}
    for name, (took, prof) in worst.items():
        import pstats
        print(f"----- {name}: longest callback {took * 1000:.0f} ms", file=sys.stderr)
        pstats.Stats(prof, stream=sys.stderr).sort_stats("cumulative").print_stats(40)
    for name, prof in profiles.items():
        import pstats
        prof.disable()
        print(f"----- {name}", file=sys.stderr)
        pstats.Stats(prof, stream=sys.stderr).sort_stats("tottime").print_stats(12)
    print(json.dumps(out))

try:
    asyncio.run(main(sys.argv[1]))
finally:
    started.stop()  # as tsinspect.tui.run does: nothing left running if the probe fails
"""


# as an installed tsinspect runs: with the bytecode cache (this machine's environment sets
# PYTHONDONTWRITEBYTECODE, and tsinspect's modules were then compiled again by every probe: 0.05-0.1 s of CPU)
CACHED_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def probe(path: Path, *flags: str, source: Path | None = None) -> dict:
    """One run of the app on ``path``; ``source``: a folder holding another tsinspect package to run instead."""
    env = dict(CACHED_ENV, TUI_STALLS_SOURCE=str(source)) if source else CACHED_ENV
    start = time.time()
    proc = subprocess.run([PY, "-c", PROBE, str(path), repr(start), *flags],
                          capture_output=True, text=True, timeout=900, env=env)
    if proc.returncode:
        raise SystemExit(f"probe failed on {path}: {proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def graph_json(path: Path, *flags: str) -> tuple[float, float]:
    """Wall and CPU seconds (with its torch child) of ``tsinspect graph --json``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run([PY, "-m", "tsinspect", "graph", "--json", *flags, str(path)], capture_output=True, check=True,
                   timeout=900)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime


PHASES = ("IR arrival", "i (inlined, fetched)", "search aten::", "expand", "scroll", "jump to definition",
          "code line (c)", "full collection", "i (back)")


def first_screens(archives: list[Path], repeat: int, source: Path) -> None:
    """The first screen of this tree's app and of ``source``'s, alternately, in one run (same machine load)."""
    here = Path(__file__).resolve().parent.parent
    print("| archive | tree | first screen, wall (each run) | UI CPU (each run) | load |")
    print("|---|---|---|---|---|")
    for path in archives:
        for tree in (source, here):  # one warm-up each: writes the bytecode cache, reads the archive into memory
            probe(path, "--first", source=tree)
        times = {source: [], here: []}
        loads = []
        for _ in range(repeat):
            for tree in (source, here):
                out = probe(path, "--first", source=tree)
                times[tree].append((out["first"], out["first_cpu"]))
                loads.append(os.getloadavg()[0])
        for tree, runs in times.items():
            print(f"| {path.name} | {tree} | {' '.join(f'{w:.2f}' for w, _ in runs)} s | "
                  f"{' '.join(f'{c:.2f}' for _, c in runs)} s | {min(loads):.1f}-{max(loads):.1f} |")


def against(archives: list[Path], repeat: int, source: Path) -> None:
    """Each probe of ``source``'s app followed by one of this tree's and a ``graph --json``, ``repeat`` times."""
    from statistics import median

    here = Path(__file__).resolve().parent.parent
    for path in archives:
        runs: dict[Path, list] = {source: [], here: []}
        graphs, loads = [], []
        for _ in range(repeat):
            for tree in (source, here):
                loads.append(os.getloadavg()[0])
                runs[tree].append(probe(path, source=tree))
                print(json.dumps({"archive": path.name, "tree": str(tree), "load": loads[-1], **runs[tree][-1]}),
                      file=sys.stderr)
            graphs.append(graph_json(path)[0])
        print(f"\n{path.name}: {repeat} runs each, alternating, load {min(loads):.1f}-{max(loads):.1f}; "
              f"`graph --json` median {median(graphs):.2f} s; median (range)\n")
        print("| phase | " + " | ".join(str(t) for t in runs) + " |")
        print("|---|---|---|")

        def cell(values: list[float], unit: str, scale: float = 1.0) -> str:
            values = [v * scale for v in values]
            digits = 0 if unit == "ms" else 2
            return f"{median(values):.{digits}f} {unit} ({min(values):.{digits}f}-{max(values):.{digits}f})"

        for phase in PHASES:
            print(f"| {phase} | " + " | ".join(cell([r["stalls"].get(phase, 0.0) for r in rs], "ms", 1000)
                                               for rs in runs.values()) + " |")
        for key, what in (("first", "first screen"), ("ir", "IR ready"), ("inline_s", "`i`"),
                          ("search_s", "search")):
            print(f"| {what} | " + " | ".join(cell([r[key] for r in rs if key in r], "s") for rs in runs.values())
                  + " |")
        print("| IR ready x `graph --json` | " + " | ".join(
            f"{median(r['ir'] for r in rs) / median(graphs):.2f}x" for rs in runs.values()) + " |")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("archives", nargs="+", type=Path)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--first", type=Path, metavar="SOURCE",
                        help="only the first screen, alternating with the tsinspect package in SOURCE (a folder "
                             "holding it, e.g. `git archive main tsinspect | tar -x -C SOURCE`)")
    parser.add_argument("--against", type=Path, metavar="SOURCE",
                        help="stalls and times of this tree's app and of the tsinspect package in SOURCE, run "
                             "alternately (with `graph --json` between): median and range of each")
    args = parser.parse_args()
    if args.first:
        first_screens(args.archives, args.repeat, args.first)
        return
    if args.against:
        against(args.archives, args.repeat, args.against)
        return
    rows = []
    for path in args.archives:
        runs, graphs, inlines = [], [], []
        for _ in range(args.repeat):  # interleaved: the same machine load for all three
            runs.append(probe(path))
            graphs.append(graph_json(path))
            inlines.append(graph_json(path, "--inline"))
            print(json.dumps({"archive": path.name, "load": os.getloadavg()[0], **runs[-1],
                              "graph_json": graphs[-1], "graph_inline_json": inlines[-1]}), file=sys.stderr)
        stalls = {k: max(((r["stalls"].get(k, 0.0), r["stall_cpu"].get(k, 0.0)) for r in runs)) for k in PHASES}
        best = lambda key: min(r.get(key, float("nan")) for r in runs)
        rows.append((path.name, best("first"), best("first_cpu"), best("ir"), min(graphs), best("inline_s"),
                     min(inlines), best("search_s"), stalls, max(r["gc_s"] for r in runs if "gc_s" in r)))
    print("| archive | first screen (CPU) | IR ready | `graph --json` (CPU) | IR ready x graph | `i` | "
          "`graph --inline --json` | `i` x graph | search | longest stall (phase) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, first, first_cpu, ir, graph, inline, graph_inline, search, stalls, gc_s in rows:
        worst = max(stalls.items(), key=lambda kv: kv[1][0])
        print(f"| {name} | {first:.2f} s ({first_cpu:.2f} s) | {ir:.2f} s | {graph[0]:.2f} s ({graph[1]:.2f} s) | "
              f"{ir / graph[0]:.2f}x | {inline:.2f} s | {graph_inline[0]:.2f} s | {inline / graph_inline[0]:.2f}x | "
              f"{search:.2f} s | {worst[1][0] * 1000:.0f} ms, {worst[1][1] * 1000:.0f} ms CPU ({worst[0]}) |")
    print()
    for row in rows:
        print(f"{row[0]}: worst stall by phase, ms (the UI thread's CPU in it): "
              + ", ".join(f"{k} {v * 1000:.0f} ({c * 1000:.0f})" for k, (v, c) in row[8].items())
              + f"; gc.collect() {row[9] * 1000:.0f} ms")


if __name__ == "__main__":
    main()
