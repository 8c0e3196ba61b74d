"""Run one command and print its wall time, CPU time and peak RSS as JSON: ``python measure.py CMD...``.

A process of its own per measurement, so the children's rusage is the command's own: ru_maxrss its peak,
ru_utime + ru_stime the CPU time of its whole tree (on a loaded machine the steadier of the two times).
"""

import json
import resource
import subprocess
import sys
import time

start = time.perf_counter()
proc = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
wall = time.perf_counter() - start
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"wall_s": round(wall, 3), "cpu_s": round(usage.ru_utime + usage.ru_stime, 3),
                  "peak_mib": round(usage.ru_maxrss / 1024, 1), "rc": proc.returncode,
                  "stderr": proc.stderr.decode(errors="replace")[-300:]}))
