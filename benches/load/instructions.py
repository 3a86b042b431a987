#!/usr/bin/env python3
"""User-space instructions per request of a webserv binary, counted by callgrind.

    python3 benches/load/instructions.py [BIN ...] [--requests N] [--pipeline D] [--keep DIR]

Each binary serves the load bench's site (run.py's config, --backend epoll) under
`valgrind --tool=callgrind` with instrumentation off; 400 warm-up keep-alive GETs of
/index.html go over four connections, then instrumentation is switched on, N more are made
(one at a time, or D per write), and it is switched off. The line printed per binary:

    BIN: 8,537 Ir/request (Conn::drive 5,263, backend wait 1,788, turns/request 1.38)

Ir is instructions executed in the server's user space (the kernel is not counted): a count,
not a time, so two binaries compare on a busy machine where CPU times do not (issue 12: the
612-byte row's distance to the floor is user space). `Conn::drive` is the per-request core
(parse, route, reply, queue), independent of how many completions each wait returned; the
total also holds the loop turns, which vary from run to run. With --keep the callgrind files
stay in DIR for `callgrind_annotate --auto=yes`. epoll only: valgrind cannot follow io_uring.
Needs valgrind (apt install valgrind); not part of the test suite.
"""
import argparse
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import run  # noqa: E402  (the load bench: its site and its config)


def control(pid, *args):
    subprocess.run(["callgrind_control", *args, str(pid)], capture_output=True, check=False)


def requests(port, count, depth):
    req = f"GET {run.SMALL} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode() * depth
    conns = [socket.create_connection(("127.0.0.1", port)) for _ in range(4)]
    try:
        for i in range(max(1, count // depth)):
            c = conns[i % len(conns)]
            c.sendall(req)
            got = b""
            while got.count(b"</body></html>") < depth:
                d = c.recv(65536)
                if not d:
                    raise SystemExit("the server closed a keep-alive connection")
                got += d
    finally:
        for c in conns:
            c.close()


def inclusive(path, pattern):
    """Inclusive Ir of the function whose name matches `pattern` (the largest such line:
    callgrind_annotate lists a function once per source file its code came from)."""
    out = subprocess.run(["callgrind_annotate", "--inclusive=yes", path],
                         capture_output=True, text=True, check=True).stdout
    found = [int(line.split()[0].replace(",", "")) for line in out.splitlines()
             if re.search(pattern, line) and line.split()[0][0].isdigit()]
    return max(found, default=0)


def measure(exe, n, depth, keep):
    tmp = tempfile.mkdtemp(prefix="webserv-ir-")
    os.chmod(tmp, 0o755)
    www = run.make_site(tmp)
    port = run.free_port()
    cfg = run.cfg_webserv(tmp, www, port)
    out = os.path.join(keep or tmp, f"callgrind.{os.path.basename(exe)}.{port}")
    log = open(out + ".log", "w")
    p = subprocess.Popen(["valgrind", "--tool=callgrind", "--instr-atstart=no",
                          f"--callgrind-out-file={out}", exe, "-c", cfg, "-p", tmp,
                          "--backend", "epoll"], stdout=subprocess.DEVNULL, stderr=log)
    try:
        for _ in range(600):
            try:
                socket.create_connection(("127.0.0.1", port)).close()
                break
            except OSError:
                time.sleep(0.1)
        requests(port, 400, depth)
        control(p.pid, "-i", "on")
        requests(port, n, depth)
        control(p.pid, "-i", "off")
    finally:
        p.terminate()
        p.wait(timeout=60)
    total = inclusive(out, r"PROGRAM TOTALS")
    drive = inclusive(out, r"conn/flow\.rs:\S*flow::<impl webserv::server::conn::Conn>::drive\b")
    wait = inclusive(out, r"as backends::Backend>::wait\b")
    turns = 0
    ann = subprocess.run(["callgrind_annotate", "--tree=caller", out],
                         capture_output=True, text=True, check=True).stdout
    m = re.search(r"< [^\n]*serve::\{\{closure\}\} \((\d[\d,]*)x\)[^\n]*\n[^\n]*\*[^\n]*Loop::turn \[", ann)
    if m:
        turns = int(m.group(1).replace(",", ""))
    if not keep:
        shutil.rmtree(tmp, ignore_errors=True)
    per = lambda x: f"{x / n:,.0f}"
    extra = f", turns/request {turns / n:.2f}" if turns else ""
    print(f"{exe}: {per(total)} Ir/request (Conn::drive {per(drive)}, backend wait {per(wait)}{extra})",
          flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("bins", nargs="*", default=[os.path.join(HERE, "../../target/release/webserv")])
    ap.add_argument("--requests", type=int, default=4000)
    ap.add_argument("--pipeline", type=int, default=1)
    ap.add_argument("--keep", help="keep the callgrind files in this directory")
    a = ap.parse_args()
    if not shutil.which("valgrind"):
        raise SystemExit("valgrind is not installed (apt install valgrind)")
    if a.keep:
        os.makedirs(a.keep, exist_ok=True)
    for exe in a.bins:
        measure(os.path.abspath(exe), a.requests, a.pipeline, a.keep)


if __name__ == "__main__":
    main()
