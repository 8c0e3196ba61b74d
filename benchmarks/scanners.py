"""Side by side: tsinspect scan, picklescan, modelscan and fickling on the same evil and benign files.

Not a test (not run in CI): the other scanners live in their own virtualenv, installed with

    python3 -m venv /tmp/scanners-venv
    /tmp/scanners-venv/bin/pip install picklescan modelscan fickling typing_extensions

Usage: python benchmarks/scanners.py [--venv /tmp/scanners-venv] [--out DIR] [--markdown]

Writes every case of tests/evil_cases.py (the same crafting code the tests use), the committed samples and a
TorchScript archive whose ``__setstate__`` writes a file (built with torch, from tests/archives.py) into DIR,
runs each scanner on each file in a subprocess and prints a table of verdicts:

- ``unsafe``: the scanner reports something dangerous (picklescan "dangerous globals", modelscan CRITICAL/HIGH,
  fickling LIKELY_UNSAFE or worse, tsinspect unsafe);
- ``susp.``: a lesser warning (picklescan "suspicious globals" only, modelscan MEDIUM/LOW, fickling
  POSSIBLY_UNSAFE/SUSPICIOUS or a parse error it reports as suspicious, tsinspect suspicious);
- ``clean``: nothing reported; ``error``: the scanner failed or skipped the file without a verdict.

Nothing here loads a model; the payloads would only create a marker file under DIR.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

import evil_cases  # noqa: E402

FICKLING = r"""
import json, sys, zipfile, warnings
warnings.simplefilter("ignore")
import fickling
from fickling.analysis import Severity
path = sys.argv[1]
try:
    if zipfile.is_zipfile(path):
        results = list(fickling.scan_zip_archive(path, graceful=True).values())
        if not results:
            print(json.dumps({"verdict": "clean", "note": "no .pkl/.bin members"})); sys.exit()
    else:
        results = [fickling.scan_file(path, graceful=True)]
except Exception as exc:
    print(json.dumps({"verdict": "error", "note": f"{type(exc).__name__}: {exc}"[:120]})); sys.exit()
worst = max((r.severity for r in results), default=Severity.LIKELY_SAFE)
errors = [e for r in results for e in r.errors]
if worst >= Severity.LIKELY_UNSAFE:
    verdict = "unsafe"
elif worst > Severity.LIKELY_SAFE:
    verdict = "susp."
else:
    verdict = "clean"
print(json.dumps({"verdict": verdict, "note": worst.name + (f"; {len(errors)} errors" if errors else "")}))
"""


def run(cmd: list[str], timeout: float = 300) -> tuple[int, str]:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=tempfile.gettempdir())
    except subprocess.TimeoutExpired:
        return -1, "timeout"
    return proc.returncode, proc.stdout + proc.stderr


def picklescan(venv: Path, path: Path) -> tuple[str, str]:
    rc, out = run([str(venv / "bin/picklescan"), "-p", str(path)])
    dangerous = int(m.group(1)) if (m := re.search(r"Dangerous globals: (\d+)", out)) else 0
    suspicious = int(m.group(1)) if (m := re.search(r"Suspicious globals: (\d+)", out)) else 0
    scanned = int(m.group(1)) if (m := re.search(r"Scanned files: (\d+)", out)) else 0
    if rc == 1 or dangerous:
        return "unsafe", f"{dangerous} dangerous"
    if rc not in (0, 1) or "ERROR" in out and not scanned:
        return "error", out.strip().splitlines()[-1][:80] if out.strip() else f"exit {rc}"
    if suspicious:
        return "susp.", f"{suspicious} suspicious globals"
    return "clean", f"{scanned} scanned"


def modelscan(venv: Path, path: Path) -> tuple[str, str]:
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "r.json"
        rc, out = run([str(venv / "bin/modelscan"), "-p", str(path), "-r", "json", "-o", str(report)])
        data = json.loads(report.read_text()) if report.exists() else {}
    issues = data.get("issues", [])
    severities = {i.get("severity") for i in issues}
    errors = data.get("errors", [])
    skipped = data.get("summary", {}).get("skipped", {}).get("total_skipped", 0)
    if severities & {"CRITICAL", "HIGH"}:
        return "unsafe", ",".join(sorted(severities))
    if issues:
        return "susp.", ",".join(sorted(severities))
    if errors or rc == 2:
        return "error", (errors[0].get("description", "") if errors else f"exit {rc}")[:80]
    if rc == 3:
        return "error", "no supported files"
    return "clean", f"{skipped} skipped"


def fickling(venv: Path, path: Path) -> tuple[str, str]:
    rc, out = run([str(venv / "bin/python"), "-c", FICKLING, str(path)])
    try:
        data = json.loads(out.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return "error", f"exit {rc}"
    return data["verdict"], data.get("note", "")


def tsinspect(path: Path) -> tuple[str, str]:
    rc, out = run([sys.executable, "-m", "tsinspect", "scan", "--json", str(path)])
    try:
        result = json.loads(out[out.index("{"):])["files"][0]
    except (ValueError, KeyError, IndexError):
        return "error", f"exit {rc}"
    verdict = {"suspicious": "susp."}.get(result["verdict"], result["verdict"])
    kinds = sorted({f["kind"] for f in result["findings"] if f["severity"] == result["verdict"]})
    return verdict, ",".join(kinds[:3])


def build_cases(out: Path, marker: Path) -> list[tuple[str, str, Path]]:
    """(id, expected, path) for every case, written under ``out``."""
    cases = []
    for case in evil_cases.EVIL:
        path = out / case.id / case.filename
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(case.build(str(marker)))
        cases.append((case.id, case.verdict, path))
    try:
        import importlib.util

        spec = importlib.util.spec_from_file_location("tsinspect_test_archives", REPO / "tests/archives.py")
        archives = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = archives
        spec.loader.exec_module(archives)
        folder = out / "setstate_file_writer"
        folder.mkdir(exist_ok=True)
        cases.append(("setstate_writes_a_file", "unsafe", archives.build_setstate_file_writer(folder)[0]))
    except Exception as exc:  # torch missing: the table says so
        print(f"(setstate case skipped: {exc})", file=sys.stderr)
    for sample in sorted((REPO / "samples").glob("*.pt*")):
        cases.append((f"sample {sample.name}", "clean", sample))
    return cases


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--venv", type=Path, default=Path("/tmp/scanners-venv"))
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="tsinspect-scanners-"))
    marker = out / "MARKER_payload_ran"
    cases = build_cases(out, marker)
    tools = [("tsinspect", lambda p: tsinspect(p))]
    for name, fn in (("picklescan", picklescan), ("modelscan", modelscan), ("fickling", fickling)):
        if (args.venv / "bin/python").exists():
            tools.append((name, lambda p, fn=fn: fn(args.venv, p)))
    versions = {}
    for name in ("picklescan", "modelscan", "fickling"):
        rc, text = run([str(args.venv / "bin/python"), "-c",
                        f"import importlib.metadata as m; print(m.version({name!r}))"])
        versions[name] = text.strip() if rc == 0 else "not installed"
    rows = []
    timings = {name: 0.0 for name, _ in tools}
    for case_id, expected, path in cases:
        row = [case_id, expected]
        for name, fn in tools:
            start = time.perf_counter()
            verdict, note = fn(path)
            timings[name] += time.perf_counter() - start
            row.append(verdict)
        rows.append(row)
        if not args.markdown:
            print("  ".join(f"{c:<34}" if i == 0 else f"{c:<10}" for i, c in enumerate(row)), flush=True)
    header = ["case", "expected"] + [name for name, _ in tools]
    missed = {name: sum(1 for r in rows if r[1] != "clean" and r[2 + i] in ("clean", "error"))
              for i, (name, _) in enumerate(tools)}
    false = {name: sum(1 for r in rows if r[1] == "clean" and r[2 + i] not in ("clean",))
             for i, (name, _) in enumerate(tools)}
    if args.markdown:
        print("| " + " | ".join(header) + " |")
        print("|" + "---|" * len(header))
        for row in rows:
            print("| " + " | ".join(f"`{c}`" if i == 0 else c for i, c in enumerate(row)) + " |")
        print("| **evil files passed as clean or not judged** | | "
              + " | ".join(str(missed[n]) for n, _ in tools) + " |")
        print("| **benign samples not called clean** | | " + " | ".join(str(false[n]) for n, _ in tools) + " |")
    else:
        print("missed (evil called clean or error):", missed)
        print("benign not clean:", false)
    print(f"\nversions: {versions}; {len(rows)} files; seconds: "
          + ", ".join(f"{n} {t:.1f}" for n, t in timings.items()), file=sys.stderr)
    print(f"payload marker created: {marker.exists()}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("NO_COLOR", "1")
    sys.exit(main())
