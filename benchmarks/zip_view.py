"""Does tsinspect read the same records as torch? For each archive given: torch's own reader
(``torch._C.PyTorchFileReader``, in a child process) lists its records and returns each one's bytes; for every
name, the entry tsinspect's ``Archive.lookup`` resolves must hold the same bytes.

Usage: python benchmarks/zip_view.py FILE...   (prints one line per file and a total; exit 1 on a mismatch)
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time

from tsinspect.archive.reader import open_archive

_CHILD = r"""
import hashlib, json, sys
import torch
out = {}
for path in sys.argv[1:]:
    try:
        reader = torch._C.PyTorchFileReader(path)
        out[path] = {n: hashlib.sha256(reader.get_record(n)).hexdigest() for n in reader.get_all_records()}
    except Exception as exc:
        out[path] = {"$error": str(exc).splitlines()[0][:200]}
print(json.dumps(out))
"""


def tsinspect_view(path: str) -> dict[str, str]:
    """Every record name torch lists (shadowed twins too), with the bytes of the entry tsinspect resolves it to."""
    with open_archive(path) as archive:
        names = [r.name for r in archive.records if r.inside and not r.hidden and not r.entry.is_dir
                 and not r.name.endswith(".debug_pkl")]
        return {n: hashlib.sha256(archive.read(archive.lookup(n), 1 << 31)).hexdigest() for n in names}


def main(paths: list[str]) -> int:
    proc = subprocess.run([sys.executable, "-c", _CHILD, *paths], capture_output=True, text=True, timeout=600)
    truth = json.loads(proc.stdout)
    bad = 0
    for path in paths:
        start = time.perf_counter()
        mine = tsinspect_view(path)
        seconds = time.perf_counter() - start
        theirs = truth[path]
        if "$error" in theirs:
            print(f"torch cannot read {path}: {theirs['$error']}")
            continue
        theirs = {n: h for n, h in theirs.items() if not n.endswith(".debug_pkl")}  # torch skips them by default
        same = mine == theirs
        bad += not same
        print(f"{'same' if same else 'DIFFERENT'}  {len(theirs):4d} records  {seconds:.2f} s  {path}")
        if not same:
            print("   only torch:", sorted(set(theirs) - set(mine))[:5], " only tsinspect:",
                  sorted(set(mine) - set(theirs))[:5], " differing:",
                  sorted(n for n in set(mine) & set(theirs) if mine[n] != theirs[n])[:5])
    print(f"{len(paths) - bad} of {len(paths)} archives: the same records and bytes as torch's reader")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
