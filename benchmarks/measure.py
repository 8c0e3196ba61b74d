"""Run one command and print its wall time and peak RSS as JSON: ``python measure.py CMD...``.

A process of its own per measurement, so ru_maxrss of the children is the command's own peak.
"""

import json
import resource
import subprocess
import sys
import time

start = time.perf_counter()
proc = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
wall = time.perf_counter() - start
peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(json.dumps({"wall_s": round(wall, 3), "peak_mib": round(peak_kib / 1024, 1), "rc": proc.returncode,
                  "stderr": proc.stderr.decode(errors="replace")[-300:]}))
