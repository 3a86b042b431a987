#!/usr/bin/env python3
"""Slowloris against webserv, measured from a fresh client's point of view.

    ci/slowloris.py [--backend uring|epoll|auto] [-n 2000] [--duration 20] [--bin PATH]

Starts webserv itself (on a free 127.0.0.1 port, with a config written to a temp dir and
`client_header_timeout 3s`), opens N connections that each send a partial request head and
then one byte a second, and re-opens each one the server closes, for --duration seconds.
Every 0.5 s a fresh client does `GET /` on a new connection and its latency is recorded.

Prints median / p99 / max fresh-client latency and how many drippers the server closed by the
header deadline (3 s + the 1 s tick + 2 s slack after they connected). Exits 1 when a fresh
request failed or a dripper outlived the deadline. Bounded: the run stops by itself after
--duration (+ a few seconds to shut down), talks only to 127.0.0.1, and stops only the server
it started, by pid.
"""

import argparse
import errno
import os
import resource
import selectors
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HEADER_TIMEOUT = 3.0
TICK = 1.0
SLACK = 2.0

CONF = """\
error_log stderr warn;
access_log off;
default_type text/html;
workers 1;
client_header_timeout 3s;
keepalive_timeout 30s;
server {{
    listen 127.0.0.1:{port};
    root {root};
    location / {{ }}
}}
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def find_binary(path):
    if path:
        return path
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    binary = os.path.join(repo, "target", "release", "webserv")
    if not os.path.exists(binary):
        print("==> cargo build --release", file=sys.stderr)
        subprocess.run(["cargo", "build", "--release"], cwd=repo, check=True)
    return binary


def wait_listening(port, proc, within=10.0):
    end = time.monotonic() + within
    while time.monotonic() < end:
        if proc.poll() is not None:
            sys.exit(f"slowloris: webserv exited with {proc.returncode} before listening")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"slowloris: webserv did not listen on {port} within {within} s")


def listen_drops():
    """TcpExt ListenDrops from /proc/net/netstat (SYNs dropped on a full accept queue), or None."""
    try:
        with open("/proc/net/netstat") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    for names, values in zip(lines[::2], lines[1::2]):
        if names.startswith("TcpExt:"):
            row = dict(zip(names.split()[1:], values.split()[1:]))
            return int(row.get("ListenDrops", 0))
    return None


def fresh_get(port, timeout=5.0):
    """One GET / on a new connection; returns (latency seconds, status or error)."""
    t0 = time.monotonic()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        status = data.split(b" ", 2)[1].decode() if data.startswith(b"HTTP/1.1 ") else "bad"
        if status == "200" and not data.endswith(b"hello\n"):
            status = "short body"
    except OSError as e:
        status = f"error: {e}"
    return time.monotonic() - t0, status


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--backend", default="auto")
    ap.add_argument("-n", "--connections", type=int, default=2000)
    ap.add_argument("--duration", type=float, default=20.0)
    ap.add_argument("--bin", default=None, help="webserv binary (default: target/release)")
    args = ap.parse_args()

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = args.connections + 256
    if soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(max(need, soft), hard), hard))
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        if soft < need:
            sys.exit(f"slowloris: RLIMIT_NOFILE {soft} < {need} needed")

    binary = find_binary(args.bin)
    tmp = tempfile.mkdtemp(prefix="webserv-slowloris-")
    root = os.path.join(tmp, "www")
    os.makedirs(root)
    with open(os.path.join(root, "index.html"), "w") as f:
        f.write("hello\n")
    port = free_port()
    conf = os.path.join(tmp, "webserv.conf")
    with open(conf, "w") as f:
        f.write(CONF.format(port=port, root=root))
    log = open(os.path.join(tmp, "server.log"), "w")
    proc = subprocess.Popen(
        [binary, "-c", conf, "-p", tmp, "--backend", args.backend],
        stdin=subprocess.DEVNULL, stdout=log, stderr=log,
    )
    try:
        wait_listening(port, proc)
        return run(args, port, proc)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()
        subprocess.run(["rm", "-rf", tmp], check=False)


def run(args, port, proc):
    sel = selectors.DefaultSelector()
    opened = {}  # socket -> time it connected
    connecting = set()  # sockets whose handshake has not completed
    lifetimes = []  # seconds each closed dripper lived
    late = 0
    start = time.monotonic()
    stop_at = start + args.duration

    def open_one():
        s = socket.socket()
        s.setblocking(False)
        try:
            s.connect(("127.0.0.1", port))
        except BlockingIOError:
            pass
        # The clock starts when the handshake completes (writable), not at connect(): a SYN
        # dropped on a full accept queue costs the client a 1 s retransmit the server never saw.
        connecting.add(s)
        opened[s] = time.monotonic()
        sel.register(s, selectors.EVENT_READ | selectors.EVENT_WRITE)

    def closed(s):
        nonlocal late
        life = time.monotonic() - opened.pop(s)
        lifetimes.append(life)
        if life > HEADER_TIMEOUT + TICK + SLACK:
            late += 1
        connecting.discard(s)
        sel.unregister(s)
        s.close()

    drops_before = listen_drops()
    for _ in range(args.connections):
        open_one()
    connected_in = time.monotonic() - start

    # Fresh client thread: one request every 0.5 s until the end.
    latencies, failures = [], []
    done = threading.Event()

    def fresh_loop():
        while not done.is_set():
            lat, status = fresh_get(port)
            if status == "200":
                latencies.append(lat)
            else:
                failures.append(status)
            done.wait(0.5)

    t = threading.Thread(target=fresh_loop, daemon=True)
    t.start()

    head_sent = set()
    next_drip = time.monotonic()
    while time.monotonic() < stop_at:
        now = time.monotonic()
        if now >= next_drip:
            next_drip = now + 1.0
            for s in list(opened):
                if s in connecting:
                    continue
                try:
                    if s not in head_sent:
                        s.send(b"GET / HTTP/1.1\r\nHost: x\r\nX-Drip: ")
                        head_sent.add(s)
                    else:
                        s.send(b"a")
                except BlockingIOError:
                    pass
                except OSError as e:
                    if e.errno in (errno.ENOTCONN, errno.EINPROGRESS):
                        continue  # still connecting; try next second
                    head_sent.discard(s)
                    closed(s)
                    open_one()
        for key, events in sel.select(timeout=0.1):
            s = key.fileobj
            if s in connecting and events & selectors.EVENT_WRITE:
                connecting.discard(s)
                opened[s] = time.monotonic()
                sel.modify(s, selectors.EVENT_READ)
                if not events & selectors.EVENT_READ:
                    continue
            try:
                data = s.recv(4096)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if not data:
                head_sent.discard(s)
                closed(s)
                if time.monotonic() < stop_at:
                    open_one()
        if proc.poll() is not None:
            print(f"slowloris: webserv exited with {proc.returncode} during the run")
            done.set()
            return 1
    done.set()
    t.join(timeout=10)
    drops_after = listen_drops()
    still_open = len(opened)
    # Those open at the end are younger than the deadline unless the server let them linger.
    overdue = sum(
        1
        for s, o in opened.items()
        if s not in connecting and time.monotonic() - o > HEADER_TIMEOUT + TICK + SLACK
    )
    for s in list(opened):
        s.close()

    def pct(xs, p):
        xs = sorted(xs)
        return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))] if xs else float("nan")

    ms = [x * 1000 for x in latencies]
    print("==== slowloris summary ====")
    print(f"backend            {args.backend}")
    print(f"drippers           {args.connections} concurrent (connected in {connected_in:.2f} s), "
          f"re-opened when closed, {args.duration:.0f} s")
    print(f"still connecting   {len(connecting)} at the end (SYN queued or retransmitting)")
    print(f"closed by server   {len(lifetimes)} (by deadline {len(lifetimes) - late}, "
          f"late {late}); open at end {still_open} (overdue {overdue})")
    if lifetimes:
        print(f"dripper lifetime   min {min(lifetimes):.2f} s  median "
              f"{statistics.median(lifetimes):.2f} s  max {max(lifetimes):.2f} s  "
              f"(client_header_timeout 3s + 1 s tick)")
    print(f"fresh requests     {len(latencies)} ok, {len(failures)} failed")
    if ms:
        print(f"fresh latency      median {statistics.median(ms):.2f} ms  "
              f"p99 {pct(ms, 99):.2f} ms  max {max(ms):.2f} ms")
        slow = sum(1 for x in ms if x > 100)
        print(f"fresh over 100 ms  {slow} of {len(ms)}")
    if drops_before is not None and drops_after is not None:
        print(f"listen drops       {drops_after - drops_before} SYNs dropped on a full accept "
              f"queue (host-wide; a dropped SYN costs its client a 1 s retransmit)")
    if failures:
        print(f"fresh failures     {failures[:5]}")
    ok = not failures and late == 0 and overdue == 0 and latencies and lifetimes
    print(f"result             {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
