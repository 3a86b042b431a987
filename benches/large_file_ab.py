#!/usr/bin/env python3
"""A/B of two webserv binaries on large files: server CPU per response (user+sys from
/proc/PID/stat) for GETs of a 200 KB and a 1 MiB file, 10 connections, epoll and uring; the
server pinned to CPU 0, `wrk -t1 -d4s` to CPU 1; two rounds, the binaries' order swapped in the
second. 127.0.0.1 only; stops what it started.

Usage: python3 benches/large_file_ab.py NEW_BINARY OLD_BINARY   (needs wrk, taskset; Linux)
"""
import os, subprocess, sys, tempfile, time, socket, re
bins = {"new": sys.argv[1], "old": sys.argv[2]}
d = tempfile.mkdtemp(prefix="ofc-mb-")
os.makedirs(f"{d}/www")
with open(f"{d}/www/k200.bin", "wb") as f: f.write(os.urandom(200_000))
with open(f"{d}/www/m1.bin", "wb") as f: f.write(os.urandom(1 << 20))
tick = os.sysconf("SC_CLK_TCK")
def cpu(pid):
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / tick
res = {}
for rnd in range(2):
  for be in ["epoll", "uring"]:
    for name, b in (bins.items() if rnd == 0 else reversed(list(bins.items()))):
        s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
        open(f"{d}/c.conf", "w").write(f"workers 1;\nerror_log stderr error;\naccess_log off;\nserver {{ listen 127.0.0.1:{port}; root {d}/www; location / {{ }} }}\n")
        p = subprocess.Popen(["taskset", "-c", "0", b, "-c", f"{d}/c.conf", "--backend", be], stderr=subprocess.DEVNULL)
        time.sleep(0.4)
        for path in ["k200.bin", "m1.bin"]:
            subprocess.run(["wrk", "-t1", "-c10", "-d1s", f"http://127.0.0.1:{port}/{path}"], capture_output=True)
            c0 = cpu(p.pid)
            out = subprocess.run(["taskset", "-c", "1", "wrk", "-t1", "-c10", "-d4s", f"http://127.0.0.1:{port}/{path}"], capture_output=True, text=True).stdout
            c1 = cpu(p.pid)
            n = int(re.search(r"(\d+) requests in", out).group(1))
            res.setdefault((be, path, name), []).append((c1 - c0) / n * 1e6)
        p.terminate(); p.wait()
for k in sorted(res):
    print(k, " ".join(f"{v:.1f}" for v in res[k]), "µs/resp")
subprocess.run(["rm", "-rf", d])
