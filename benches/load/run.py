#!/usr/bin/env python3
"""Side-by-side load bench: webserv (io_uring, epoll) against nginx and lighttpd.

Every server gets an equivalent config written into one temp dir (1 worker, 127.0.0.1 only,
the same document root), runs pinned to CPU 0 while `wrk -t1` runs on CPU 1, and is measured
in the same run, one after the other, so the ratios between rows mean something on a noisy
shared machine even where the absolute numbers do not.

What a cell means:
  CPU µs/req  the server's utime+stime (its whole process tree, plus cutime+cstime of reaped
              children, which is where CGI processes land) from /proc/PID/stat, sampled just
              before and just after the wrk run, divided by the responses wrk counted.
  req/s, p99  as wrk reports them (`--latency`).
  idle        VmRSS growth of the server tree per connection while N idle keep-alive
              connections (each has done one request) are held open.

Called by ci/bench.sh (which builds webserv first); see benches/load/README.md.
Only starts processes it owns, kills them by pid, bounded in time (every wrk run and every
wait has a timeout), and talks to 127.0.0.1 only.
"""

import argparse
import datetime
import http.client
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
CLK_TCK = os.sysconf("SC_CLK_TCK")
SMALL = "/index.html"  # 612 bytes, like nginx's default index.html
BIG = "/1m.bin"  # 1 MiB
CGI = "/cgi-bin/ok.sh"

# (key, column title, connections, path, pipeline depth or None)
WORKLOADS = [
    ("small50", "612 B, 50 conns", 50, SMALL, None),
    ("small1k", "612 B, 1000 conns", 1000, SMALL, None),
    ("pipe50", "612 B, 50 conns, pipeline 16", 50, SMALL, 16),
    ("pipe1k", "612 B, 1000 conns, pipeline 16", 1000, SMALL, 16),
    ("big10", "1 MiB, 10 conns", 10, BIG, None),
    ("cgi10", "sh CGI, 10 conns", 10, CGI, None),
]
ROWS = ["webserv-uring", "webserv-epoll", "nginx", "lighttpd", "h2o", "floor-epoll", "floor-uring"]
# `--https` (issue 14): the same servers over TLS with one ECDSA P-256 certificate; the last
# workload opens a connection (a full handshake) per request.
HTTPS_WORKLOADS = [
    ("tls_small50", "HTTPS 612 B, 50 conns", 50, SMALL, None),
    ("tls_big10", "HTTPS 1 MiB, 10 conns", 10, BIG, None),
    ("tls_hs4", "HTTPS 612 B, handshake per request (4 openssl s_time)", 4, SMALL, "close"),
]
TLS = None  # (certificate, key) paths in --https mode
# The floor: C probes in floor/ (built here with cc) that do the least a server can do for each
# workload; every row's CPU per response is also printed divided by the cheapest floor.
FLOOR_SRC = os.path.join(HERE, "floor")
FLOOR_WORKLOADS = {
    "floor-epoll": {"small50", "small1k", "pipe50", "pipe1k", "big10", "cgi10"},
    "floor-uring": {"small50", "small1k", "pipe50", "pipe1k"},
}


def unsupported(row, key):
    """Why `row` does not run workload `key`, or None."""
    if key == "cgi10" and row == "nginx":
        return "n/a (no CGI in nginx)"
    if key == "cgi10" and row == "h2o":
        return "n/a (CGI only through its FastCGI wrapper)"
    if row in FLOOR_WORKLOADS and key not in FLOOR_WORKLOADS[row]:
        return "n/a (no probe)"
    return None


def log(*a):
    print("[bench]", *a, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------------------------
# /proc sampling
# ----------------------------------------------------------------------------------------------


def _stat(pid):
    """(ppid, utime+stime+cutime+cstime in ticks) of one process, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            s = f.read()
    except OSError:
        return None
    # comm (field 2) may contain spaces and parentheses: split after the last ')'.
    rest = s[s.rindex(")") + 2 :].split()
    # rest[0] is field 3 (state); utime..cstime are fields 14..17.
    return int(rest[1]), sum(int(x) for x in rest[11:15])


def tree(pid):
    """pid and all its live descendants."""
    parent = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            st = _stat(d)
            if st:
                parent[int(d)] = st[0]
    out, frontier = [pid], [pid]
    while frontier:
        p = frontier.pop()
        kids = [c for c, pp in parent.items() if pp == p]
        out += kids
        frontier += kids
    return out


def cpu_seconds(pid):
    """CPU time of the server's process tree. cutime/cstime hold the reaped children (CGI);
    live children (nginx's worker) are counted by their own utime+stime; a child counts once."""
    total = 0
    for p in tree(pid):
        st = _stat(p)
        if st:
            total += st[1]
    return total / CLK_TCK


def rss_bytes(pid):
    total = 0
    for p in tree(pid):
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
        except OSError:
            pass
    return total


# ----------------------------------------------------------------------------------------------
# Servers
# ----------------------------------------------------------------------------------------------


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write(path, text, mode=0o644):
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, mode)


def make_site(tmp):
    www = os.path.join(tmp, "www")
    os.makedirs(os.path.join(www, "cgi-bin"))
    body = "<!DOCTYPE html>\n<html><head><title>Welcome</title></head><body>\n"
    body += "<h1>webserv load bench</h1>\n<p>" + "x" * 10 + "</p>\n"
    body += "<!-- " + "p" * (612 - len(body) - len("-->\n</body></html>\n") - 5) + " -->\n"
    body += "</body></html>\n"
    body = body[:612]
    assert len(body) == 612, len(body)
    write(os.path.join(www, "index.html"), body)
    with open(os.path.join(www, "1m.bin"), "wb") as f:
        f.write(bytes(range(256)) * 4096)
    write(
        os.path.join(www, "cgi-bin", "ok.sh"),
        "#!/bin/sh\necho 'Content-Type: text/plain'\necho\necho ok\n",
        0o755,
    )
    return www


def tls_lines(indent):
    if not TLS:
        return ""
    pad = " " * indent
    return f"{pad}ssl_certificate {TLS[0]};\n{pad}ssl_certificate_key {TLS[1]};\n"


def make_cert(tmp):
    """One ECDSA P-256 self-signed certificate for every server (openssl CLI)."""
    crt, key = os.path.join(tmp, "bench.crt"), os.path.join(tmp, "bench.key")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-days", "2", "-subj", "/CN=bench", "-keyout", key, "-out", crt],
        check=True, capture_output=True, timeout=60,
    )
    os.chmod(key, 0o644)  # nginx's worker (nobody) reads it when started as root
    return crt, key


def cfg_webserv(tmp, www, port):
    path = os.path.join(tmp, "webserv.conf")
    write(
        path,
        f"""# webserv, as the load bench runs it
workers 1;
worker_connections 20000;
error_log stderr error;
access_log off;
keepalive_timeout 120s;
keepalive_requests 100000;
include {ROOT}/conf/mime.types;
server {{
    listen 127.0.0.1:{port}{" ssl" if TLS else ""};
{tls_lines(4)}    root {www};
    index index.html;
    location / {{ }}
    location /cgi-bin/ {{ cgi .sh /bin/sh; }}
    location /status {{ status; }}
}}
""",
    )
    return path


def cfg_nginx(tmp, www, port):
    path = os.path.join(tmp, "nginx.conf")
    d = os.path.join(tmp, "nginx")
    os.makedirs(d, exist_ok=True)
    write(
        path,
        f"""# nginx, as the load bench runs it
daemon off;
worker_processes 1;
worker_rlimit_nofile 40000;
pid {d}/nginx.pid;
error_log stderr error;
events {{ worker_connections 20000; }}
http {{
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    access_log off;
    sendfile on;
    tcp_nopush on;
    open_file_cache max=1000;
    keepalive_timeout 120s;
    keepalive_requests 100000;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    server {{
        listen 127.0.0.1:{port}{" ssl" if TLS else ""};
{tls_lines(8)}        root {www};
        index index.html;
    }}
}}
""",
    )
    return path


def cfg_h2o(tmp, www, port):
    path = os.path.join(tmp, "h2o.conf")
    write(
        path,
        f"""# h2o, as the load bench runs it
listen:
  host: 127.0.0.1
  port: {port}
num-threads: 1
max-connections: 20000
http1-request-timeout: 120
hosts:
  "default":
    paths:
      /:
        file.dir: {www}
""",
    )
    return path


def build_floor(tmp):
    """Compile the floor probes with cc into tmp; {row: path} of those that built."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if not cc:
        return {}, ["no C compiler (cc): floor rows skipped."]
    built, notes = {}, []
    for row, src in (("floor-epoll", "floor_epoll.c"), ("floor-uring", "floor_uring.c")):
        exe = os.path.join(tmp, row)
        p = subprocess.run([cc, "-O2", "-o", exe, os.path.join(FLOOR_SRC, src)],
                           capture_output=True, text=True, timeout=120)
        if p.returncode == 0:
            built[row] = exe
        else:
            notes.append(f"{row}: cc failed: {p.stderr.strip()[-300:]}")
    return built, notes


def cfg_lighttpd(tmp, www, port):
    path = os.path.join(tmp, "lighttpd.conf")
    write(
        path,
        f"""# lighttpd, as the load bench runs it (one process: server.max-worker defaults to 0)
server.document-root = "{www}"
server.bind = "127.0.0.1"
server.port = {port}
server.modules = ("mod_cgi")
server.max-fds = 40000
server.max-connections = 20000
server.max-keep-alive-requests = 100000
server.max-keep-alive-idle = 120
server.errorlog = "{tmp}/lighttpd-error.log"
server.network-backend = "sendfile"
index-file.names = ("index.html")
mimetype.assign = (".html" => "text/html", ".bin" => "application/octet-stream")
cgi.assign = (".sh" => "/bin/sh")
""",
    )
    return path


class Server:
    def __init__(self, name, argv, port, tmp, pin, env=None):
        self.name, self.port = name, port
        self.logpath = os.path.join(tmp, name + ".log")
        self.logf = open(self.logpath, "wb")
        if pin:
            argv = ["taskset", "-c", "0"] + argv
        extra = " ".join(f"{k}={v}" for k, v in (env or {}).items())
        log(f"start {name}: {extra + ' ' if extra else ''}{' '.join(argv)}")
        # taskset execs the server, so this pid is the server's own.
        self.proc = subprocess.Popen(
            argv, stdout=self.logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env={**os.environ, **env} if env else None,
        )
        self.pid = self.proc.pid
        deadline = time.time() + 15
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {self.proc.returncode}: {self.log_tail()}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                time.sleep(0.05)
        else:
            self.stop()
            raise RuntimeError(f"{name} did not listen on {port} within 15 s: {self.log_tail()}")

    def log_tail(self):
        self.logf.flush()
        with open(self.logpath, "rb") as f:
            return f.read()[-2000:].decode("utf-8", "replace")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                log(f"{self.name} ignored SIGTERM for 10 s; SIGKILL pid {self.pid}")
                self.proc.kill()
                self.proc.wait(10)
        self.logf.close()


def webserv_status(port):
    """webserv's /status?format=json, or None."""
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        c.request("GET", "/status?format=json")
        r = c.getresponse()
        body = r.read()
        c.close()
        return json.loads(body) if r.status == 200 else None
    except (OSError, ValueError, http.client.HTTPException):
        return None


# ----------------------------------------------------------------------------------------------
# wrk
# ----------------------------------------------------------------------------------------------

_UNIT = {"us": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def parse_wrk(out):
    r = {"requests": 0, "rps": 0.0, "p99_ms": None, "non2xx": 0, "sock_errors": 0, "raw": out}
    m = re.search(r"(\d+) requests in", out)
    if m:
        r["requests"] = int(m.group(1))
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if m:
        r["rps"] = float(m.group(1))
    m = re.search(r"^\s*99%\s+([\d.]+)(us|ms|s|m)\s*$", out, re.M)
    if m:
        # wrk 4.1 prints 0.00us for upper percentiles it lost (seen with pipelining): unknown.
        r["p99_ms"] = float(m.group(1)) * _UNIT[m.group(2)] or None
    m = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    if m:
        r["non2xx"] = int(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if m:
        r["sock_errors"] = sum(int(x) for x in m.groups())
        r["sock_detail"] = m.group(0)
    return r


def run_handshakes(port, conns, path, seconds, pin):
    """A full TLS handshake per request: `openssl s_time -new -www` (HTTP/1.0, the server
    closes after each response), `conns` of them side by side. wrk cannot do this: with
    `Connection: close` wrk 4.1 stops at "data received after completed connection"."""
    argv = ["openssl", "s_time", "-connect", f"127.0.0.1:{port}", "-new", "-www", path,
            "-time", str(seconds)]
    if pin:
        argv = ["taskset", "-c", "1"] + argv
    procs = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for _ in range(conns)]
    r = {"requests": 0, "rps": 0.0, "p99_ms": None, "non2xx": 0, "sock_errors": 0, "raw": ""}
    for p in procs:
        try:
            out, _ = p.communicate(timeout=seconds + 60)
        except subprocess.TimeoutExpired:
            p.kill()
            out, _ = p.communicate()
        r["raw"] += out
        m = re.search(r"(\d+) connections in ([\d.]+)s", out)
        if m and float(m.group(2)) > 0:
            r["requests"] += int(m.group(1))
            r["rps"] += int(m.group(1)) / float(m.group(2))
        elif p.returncode:
            r["sock_errors"] += 1
            r["sock_detail"] = out[-300:]
    return r


def run_wrk(port, conns, path, depth, seconds, pin):
    if depth == "close":
        return run_handshakes(port, conns, path, seconds, pin)
    argv = ["wrk", "-t1", f"-c{conns}", f"-d{seconds}s", "--latency", "--timeout", "5s"]
    if depth:
        argv += ["-s", os.path.join(HERE, "pipeline.lua")]
    argv.append(f"{'https' if TLS else 'http'}://127.0.0.1:{port}{path}")
    if depth:
        argv += ["--", str(depth), path]
    if pin:
        argv = ["taskset", "-c", "1"] + argv
    p = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60)
    out = p.stdout + p.stderr
    if p.returncode != 0:
        log(f"wrk exited {p.returncode}: {out[-500:]}")
    return parse_wrk(out)


def measure(server, wl, seconds, pin, is_webserv):
    key, _title, conns, path, depth = wl
    st0 = webserv_status(server.port) if is_webserv else None
    c0 = cpu_seconds(server.pid)
    k0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    r = run_wrk(server.port, conns, path, depth, seconds, pin)
    k1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    c1 = cpu_seconds(server.pid)
    st1 = webserv_status(server.port) if is_webserv else None
    r["cpu_s"] = c1 - c0
    r["us_per_req"] = (c1 - c0) * 1e6 / r["requests"] if r["requests"] else None
    # wrk's own CPU (a reaped child): on loopback, TCP work lands on whichever side's context
    # pushed the segments, so server + client is the steadier sum (README, "Large files").
    client = (k1.ru_utime + k1.ru_stime) - (k0.ru_utime + k0.ru_stime)
    r["client_us_per_req"] = client * 1e6 / r["requests"] if r["requests"] else None
    if st0 and st1:
        dw = st1["waits"] - st0["waits"]
        r["cpw"] = (st1["completions"] - st0["completions"]) / dw if dw > 0 else None
    return r


# ----------------------------------------------------------------------------------------------
# Idle connections
# ----------------------------------------------------------------------------------------------


def idle_rss(server, n):
    """RSS growth in bytes per connection with n idle keep-alive connections (each did one GET)."""
    req = f"GET {SMALL} HTTP/1.1\r\nHost: bench\r\n\r\n".encode()
    before = rss_bytes(server.pid)
    socks, failed = [], 0
    deadline = time.time() + 120
    try:
        for _ in range(n):
            if time.time() > deadline:
                break
            try:
                s = socket.create_connection(("127.0.0.1", server.port), timeout=5)
                s.sendall(req)
                got = b""
                # Read the whole response: head, then Content-Length bytes of body.
                while b"\r\n\r\n" not in got:
                    chunk = s.recv(4096)
                    if not chunk:
                        raise OSError("closed")
                    got += chunk
                head, _, body = got.partition(b"\r\n\r\n")
                m = re.search(rb"(?i)content-length:\s*(\d+)", head)
                need = int(m.group(1)) if m else 0
                while len(body) < need:
                    chunk = s.recv(4096)
                    if not chunk:
                        raise OSError("closed")
                    body += chunk
                if not head.startswith(b"HTTP/1.1 200"):
                    raise OSError(head.split(b"\r\n")[0].decode())
                socks.append(s)
            except OSError as e:
                failed += 1
                if failed <= 3:
                    log(f"{server.name}: idle connection {len(socks) + failed} failed: {e}")
                if failed > 50:
                    break
        time.sleep(1.0)  # let the server settle (timers, buffer pools)
        after = rss_bytes(server.pid)
        # Are they still open? A server that closed them would look cheap.
        alive = 0
        for s in socks:
            s.setblocking(False)
            try:
                alive += 0 if s.recv(1) == b"" else 1
            except BlockingIOError:
                alive += 1
            except OSError:
                pass
    finally:
        for s in socks:
            s.close()
    held = len(socks)
    return {
        "conns": held,
        "alive": alive,
        "failed": failed,
        "before": before,
        "after": after,
        "per_conn": (after - before) / held if held else None,
    }


# ----------------------------------------------------------------------------------------------
# Report
# ----------------------------------------------------------------------------------------------


def cell(r, with_cpw):
    if r is None:
        return "—"
    if "skip" in r:
        return r["skip"]
    if r["us_per_req"] is None:
        return "no requests"
    p99 = f"{r['p99_ms']:.2f} ms" if r["p99_ms"] is not None else "n/a"
    s = f"{r['us_per_req']:.1f} µs/req ({r['rps']:,.0f} req/s, p99 {p99}"
    if with_cpw and r.get("cpw") is not None:
        s += f", {r['cpw']:.1f} compl/wait"
    s += ")"
    bad = []
    if r["non2xx"]:
        bad.append(f"{r['non2xx']} non-2xx")
    if r["sock_errors"]:
        bad.append(f"{r['sock_errors']} socket errors")
    if bad:
        s += " **⚠ " + ", ".join(bad) + "**"
    return s


def idle_cell(r):
    if r is None:
        return "—"
    if "skip" in r:
        return r["skip"]
    if r["per_conn"] is None:
        return "no connections held"
    s = f"{r['per_conn']:,.0f} B/conn"
    if r["alive"] < r["conns"] or r["failed"]:
        s += f" **⚠ {r['alive']} of {r['conns']} open, {r['failed']} failed**"
    return s


def machine():
    model = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{os.cpu_count()} CPUs ({model}), Linux {platform.release()}"


def pick_medians(results, per_round):
    """Each cell becomes its median round by CPU per response (the lower middle of an even
    count), keeping every round's figure in `rounds` for the range table."""
    for row, wls in per_round.items():
        for key, runs in wls.items():
            timed = [r for r in runs if r.get("us_per_req")]
            if not timed:
                continue
            timed.sort(key=lambda r: r["us_per_req"])
            chosen = dict(timed[(len(timed) - 1) // 2])
            chosen["rounds"] = [r.get("us_per_req") for r in runs]
            results[row][key] = chosen


def range_table(results):
    """Markdown lines: each cell's CPU per response in every round, min–max (empty: one round)."""
    if not any("rounds" in c for r in results.values() for c in r.values() if isinstance(c, dict)):
        return []
    out = ["", "CPU per response over the rounds, µs (min–max; the cells above are the medians):", "",
           "| server | " + " | ".join(w[1] for w in WORKLOADS) + " |",
           "|---|" + "---|" * len(WORKLOADS)]
    for row in ROWS:
        if row not in results:
            continue
        cells = []
        for w in WORKLOADS:
            got = [v for v in results[row].get(w[0], {}).get("rounds", []) if v]
            cells.append(f"{min(got):.1f}–{max(got):.1f} ({len(got)})" if got else "—")
        out.append(f"| {row} | " + " | ".join(cells) + " |")
    return out


def render_md(results, seconds, idle_n, pin, versions, notes):
    cols = [w[1] for w in WORKLOADS] + [f"idle: RSS per conn ({idle_n:,} conns)"]
    out = [
        "# webserv load bench",
        "",
        f"- date: {datetime.datetime.now().astimezone().strftime('%Y-%m-%d %H:%M %Z')}",
        f"- machine: {machine()}",
        f"- {seconds} s per run, wrk -t1; "
        + ("server pinned to CPU 0, wrk to CPU 1" if pin else "not pinned (fewer than 2 CPUs)"),
        "- versions: " + "; ".join(f"{k} {v}" for k, v in versions.items()),
        "- cell: server CPU time (user+sys, whole process tree and reaped CGI children) per "
        "response, with wrk's req/s and p99 latency; webserv rows add completions per backend "
        "wait over that run (from `/status?format=json`).",
        "",
        "| server | " + " | ".join(cols) + " |",
        "|---|" + "---|" * len(cols),
    ]
    for row in ROWS:
        rr = results.get(row, {})
        cells = [cell(rr.get(w[0]), row.startswith(("webserv", "baseline"))) for w in WORKLOADS]
        cells.append(idle_cell(rr.get("idle")))
        out.append(f"| {row} | " + " | ".join(cells) + " |")
    # Ratios: CPU per request of webserv-uring over each competitor (< 1 means webserv is cheaper).
    out += ["", "CPU per request, webserv-uring ÷ other (below 1.00: webserv-uring uses less CPU):", ""]
    out.append("| vs | " + " | ".join(w[1] for w in WORKLOADS) + " | idle RSS/conn |")
    out.append("|---|" + "---|" * (len(WORKLOADS) + 1))
    base = results.get("webserv-uring", {})
    for other in ROWS[1:]:
        o = results.get(other, {})
        cells = []
        for w in WORKLOADS:
            a, b = base.get(w[0]), o.get(w[0])
            ok = a and b and a.get("us_per_req") and b.get("us_per_req")
            cells.append(f"{a['us_per_req'] / b['us_per_req']:.2f}" if ok else "—")
        a, b = base.get("idle"), o.get("idle")
        ok = a and b and a.get("per_conn") and b.get("per_conn")
        cells.append(f"{a['per_conn'] / b['per_conn']:.2f}" if ok else "—")
        out.append(f"| {other} | " + " | ".join(cells) + " |")
    # The floor: every row divided by the cheapest floor probe measured for that workload.
    floors = {}
    for w in WORKLOADS:
        vals = [results.get(f, {}).get(w[0], {}).get("us_per_req") for f in FLOOR_WORKLOADS]
        vals = [v for v in vals if v]
        if vals:
            floors[w[0]] = min(vals)
    if floors:
        out += ["", "CPU per response ÷ the floor (the cheapest C probe of `floor/` for that workload):", ""]
        out.append("| server | " + " | ".join(w[1] for w in WORKLOADS) + " |")
        out.append("|---|" + "---|" * len(WORKLOADS))
        for row in ROWS:
            rr = results.get(row, {})
            if not rr:
                continue
            cells = []
            for w in WORKLOADS:
                v = (rr.get(w[0]) or {}).get("us_per_req")
                cells.append(f"{v / floors[w[0]]:.2f}" if v and w[0] in floors else "—")
            out.append(f"| {row} | " + " | ".join(cells) + " |")
    out += ["", "Server + client (wrk) CPU per response, µs (on loopback the TCP work lands on either side):", ""]
    out.append("| server | " + " | ".join(w[1] for w in WORKLOADS) + " |")
    out.append("|---|" + "---|" * len(WORKLOADS))
    for row in ROWS:
        rr = results.get(row, {})
        if not rr:
            continue
        cells = []
        for w in WORKLOADS:
            r = rr.get(w[0]) or {}
            a, b = r.get("us_per_req"), r.get("client_us_per_req")
            cells.append(f"{a:.1f} + {b:.1f} = {a + b:.1f}" if a and b else "—")
        out.append(f"| {row} | " + " | ".join(cells) + " |")
    out += range_table(results)
    if notes:
        out += ["", "Notes:", ""] + [f"- {n}" for n in notes]
    return "\n".join(out) + "\n"


def esc(s):
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def render_svg(results, subtitle):
    """Small multiples: one panel per workload, each with its own scale (a 1 MiB file and a CGI
    fork cost orders of magnitude more than a 612-byte file, so one axis would hide the rest)."""
    colors = {"webserv-uring": "#d9480f", "webserv-epoll": "#f59f00", "baseline-uring": "#868e96", "baseline-epoll": "#ced4da", "nginx": "#2b8a3e", "lighttpd": "#1c7ed6", "h2o": "#7048e8", "floor-epoll": "#495057", "floor-uring": "#212529"}
    pw, ph, top, gap = 240, 220, 70, 20
    n = len(WORKLOADS)
    width = gap + n * (pw + gap)
    height = top + ph + 90
    o = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="{gap}" y="24" font-size="16" font-weight="bold">Server CPU time per request '
        "(µs, lower is better)</text>",
        f'<text x="{gap}" y="44" fill="#555">{esc(subtitle)}</text>',
    ]
    for i, w in enumerate(WORKLOADS):
        x0 = gap + i * (pw + gap)
        vals = []
        for row in ROWS:
            r = results.get(row, {}).get(w[0])
            vals.append(r.get("us_per_req") if r and "skip" not in r else None)
        vmax = max([v for v in vals if v] or [1.0])
        o.append(f'<text x="{x0 + pw / 2}" y="{top - 8}" text-anchor="middle" font-weight="bold">{esc(w[1])}</text>')
        base_y = top + ph
        o.append(f'<line x1="{x0}" y1="{base_y}" x2="{x0 + pw}" y2="{base_y}" stroke="#333"/>')
        bw = pw / len(ROWS)
        for j, (row, v) in enumerate(zip(ROWS, vals)):
            bx = x0 + j * bw + 6
            if v is None:
                o.append(f'<text x="{bx + (bw - 12) / 2}" y="{base_y - 6}" text-anchor="middle" fill="#999">n/a</text>')
                continue
            h = (ph - 24) * v / vmax
            o.append(
                f'<rect x="{bx:.1f}" y="{base_y - h:.1f}" width="{bw - 12:.1f}" height="{h:.1f}" '
                f'fill="{colors.get(row, "#adb5bd")}"><title>{row}: {v:.1f} µs/req</title></rect>'
            )
            label = f"{v:.1f}" if v < 100 else f"{v:.0f}"
            o.append(f'<text x="{bx + (bw - 12) / 2:.1f}" y="{base_y - h - 4:.1f}" text-anchor="middle">{label}</text>')
    ly = top + ph + 40
    for j, row in enumerate(ROWS):
        lx = gap + j * 170
        o.append(f'<rect x="{lx}" y="{ly - 11}" width="14" height="14" fill="{colors.get(row, "#adb5bd")}"/>')
        o.append(f'<text x="{lx + 20}" y="{ly}">{row}</text>')
    o.append("</svg>")
    return "\n".join(o) + "\n"


# ----------------------------------------------------------------------------------------------


def raise_nofile(want):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    for target in (max(want, hard), hard):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, max(target, hard)))
            return target
        except (ValueError, OSError):
            continue
    return soft


def version(argv):
    try:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=10)
        return (p.stdout + p.stderr).strip().splitlines()[0]
    except (OSError, IndexError, subprocess.TimeoutExpired):
        return "?"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--webserv", default=os.path.join(ROOT, "target", "release", "webserv"))
    ap.add_argument("--seconds", type=int, default=int(os.environ.get("BENCH_SECONDS", "5")))
    ap.add_argument("--quick", action="store_true", help="1 s runs, 2,000 idle connections")
    ap.add_argument("--idle", type=int, default=int(os.environ.get("BENCH_IDLE_CONNS", "10000")))
    ap.add_argument("--only", default=os.environ.get("BENCH_ONLY", ""), help="comma list of rows to run")
    ap.add_argument("--workloads", default=os.environ.get("BENCH_WORKLOADS", ""),
                    help="comma list of workload keys to run (" + ",".join(w[0] for w in WORKLOADS) + ")")
    ap.add_argument("--rounds", type=int, default=int(os.environ.get("BENCH_ROUNDS", "1")),
                    help="run every row N times, the rows' order rotated each round; each cell is "
                    "the round with the median CPU per response, and a table gives each cell's range "
                    "(idle memory is measured in the first round only)")
    ap.add_argument("--out", default=os.path.join(HERE, "results"))
    ap.add_argument("--https", action="store_true",
                    help="HTTPS rows (webserv and nginx, one ECDSA P-256 certificate); writes latest-https.*")
    ap.add_argument("--baseline", default=os.environ.get("BENCH_BASELINE", ""),
                    help="another webserv binary (an earlier commit's) measured in the same run as rows baseline-uring/-epoll")
    ap.add_argument("--env-variant", action="append", default=[], metavar="ROW=VAR=VALUE",
                    help="an extra webserv row started with VAR=VALUE in its environment, e.g. "
                    "webserv-uring-splice=WEBSERV_URING_FILE_SEND=splice (the backend is ROW's "
                    "second word); repeat for more rows, or for more variables of one row")
    args = ap.parse_args()
    env_rows = {}
    for spec in args.env_variant:
        row, _, assign = spec.partition("=")
        var, eq, val = assign.partition("=")
        if not (row.startswith("webserv-") and len(row.split("-")) >= 3 and var and eq):
            sys.exit(f"--env-variant {spec}: expected webserv-BACKEND-NAME=VAR=VALUE")
        env_rows.setdefault(row, {})[var] = val
    # The variants right after the plain webserv rows, so they run in the same minute.
    ROWS[2:2] = [r for r in env_rows if r not in ROWS]
    if args.baseline:
        ROWS[2:2] = ["baseline-uring", "baseline-epoll"]
    if args.quick:
        args.seconds, args.idle = 1, min(args.idle, 2000)
    if args.https:
        WORKLOADS[:] = HTTPS_WORKLOADS
        # Only the servers set up for TLS here: webserv and nginx.
        ROWS[:] = [r for r in ROWS if r.startswith(("webserv", "baseline", "nginx"))]
        args.idle = 0
    if args.workloads:
        keep = set(args.workloads.split(","))
        unknown = keep - {w[0] for w in WORKLOADS}
        if unknown:
            sys.exit(f"unknown workloads: {', '.join(sorted(unknown))}")
        WORKLOADS[:] = [w for w in WORKLOADS if w[0] in keep]

    if not shutil.which("wrk"):
        sys.exit("wrk is not installed (Debian: apt-get install wrk)")
    pin = (os.cpu_count() or 1) >= 2 and shutil.which("taskset") is not None
    nofile = raise_nofile(args.idle * 2 + 4096)
    if nofile < args.idle + 1000:
        log(f"RLIMIT_NOFILE is {nofile}: idle test lowered to {nofile - 1000} connections")
        args.idle = max(0, nofile - 1000)

    tmp = tempfile.mkdtemp(prefix="webserv-bench-")
    os.chmod(tmp, 0o755)  # nginx's worker runs as nobody when started as root
    www = make_site(tmp)
    if args.https:
        global TLS
        TLS = make_cert(tmp)
    only = set(filter(None, args.only.split(",")))
    results, notes = {}, []
    versions = {"webserv": version([args.webserv, "-V"]), "wrk": version(["wrk", "-v"]).split(" [")[0]}

    floor_exes, floor_notes = build_floor(tmp)
    notes += floor_notes
    rows, row_env = [], {}
    for row in ROWS:
        if only and row not in only:
            continue
        if row.startswith("webserv") or row.startswith("baseline"):
            backend = row.split("-")[1]
            exe = args.webserv if row.startswith("webserv") else args.baseline
            if row.startswith("baseline"):
                versions["baseline"] = version([exe, "-V"])
            rows.append((row, lambda p, b=backend, e=exe: [e, "-c", cfg_webserv(tmp, www, p), "-p", tmp, "--backend", b]))
            row_env[row] = env_rows.get(row)
        elif row == "nginx":
            if shutil.which("nginx") or os.path.exists("/usr/sbin/nginx"):
                exe = shutil.which("nginx") or "/usr/sbin/nginx"
                versions["nginx"] = version([exe, "-v"]).split("/")[-1]
                rows.append((row, lambda p, e=exe: [e, "-c", cfg_nginx(tmp, www, p), "-p", tmp]))
            else:
                notes.append("nginx is not installed (Debian: apt-get install nginx): row skipped.")
        elif row == "h2o":
            exe = shutil.which("h2o") or ("/usr/sbin/h2o" if os.path.exists("/usr/sbin/h2o") else None)
            if exe:
                versions["h2o"] = version([exe, "-v"]).split(" ")[-1]
                rows.append((row, lambda p, e=exe: [e, "-c", cfg_h2o(tmp, www, p)]))
            else:
                notes.append("h2o is not installed (Debian: apt-get install h2o): row skipped.")
        elif row in FLOOR_WORKLOADS:
            if row not in floor_exes:
                continue
            exe = floor_exes[row]
            if row == "floor-epoll":
                rows.append((row, lambda p, e=exe: [e, str(p), os.path.join(www, "1m.bin"), os.path.join(www, "cgi-bin", "ok.sh")]))
            else:
                rows.append((row, lambda p, e=exe: [e, str(p)]))
        elif row == "lighttpd":
            exe = shutil.which("lighttpd") or ("/usr/sbin/lighttpd" if os.path.exists("/usr/sbin/lighttpd") else None)
            if exe:
                versions["lighttpd"] = version([exe, "-v"]).split(" ")[0].split("/")[-1]
                rows.append((row, lambda p, e=exe: [e, "-D", "-f", cfg_lighttpd(tmp, www, p)]))
            else:
                notes.append("lighttpd is not installed (Debian: apt-get install lighttpd): row skipped.")

    rounds = max(1, args.rounds)
    per_round = {}  # row -> workload -> [result of each round]
    try:
        for rnd in range(rounds):
            # Rotated, so no row always runs first (or last) on a machine whose load drifts.
            k = rnd % max(1, len(rows))
            for row, argv_for in rows[k:] + rows[:k]:
                if rounds > 1:
                    log(f"round {rnd + 1}/{rounds}: {row}")
                res = results.setdefault(row, {})
                is_ws = row.startswith("webserv") or row.startswith("baseline")
                port = free_port()
                try:
                    srv = Server(row, argv_for(port), port, tmp, pin, row_env.get(row))
                except (RuntimeError, OSError) as e:
                    notes.append(f"{row} did not start: {str(e)[:300]}")
                    log(notes[-1])
                    continue
                try:
                    # Idle connections first, on a fresh server, before load has grown its pools.
                    if args.idle and row not in FLOOR_WORKLOADS and rnd == 0:
                        res["idle"] = idle_rss(srv, args.idle)
                        log(f"{row} idle: {res['idle']}")
                    # Warm up: caches, page cache, lazily allocated pools.
                    run_wrk(port, 50, SMALL, None, 1, pin)
                    for wl in WORKLOADS:
                        why = unsupported(row, wl[0])
                        if why:
                            res[wl[0]] = {"skip": why}
                            continue
                        if srv.proc.poll() is not None:
                            notes.append(f"{row} exited during the bench: {srv.log_tail()[-300:]}")
                            break
                        r = measure(srv, wl, args.seconds, pin, is_ws)
                        res[wl[0]] = r
                        per_round.setdefault(row, {}).setdefault(wl[0], []).append(r)
                        log(f"{row} {wl[0]}: {cell(r, is_ws)}")
                        if r["non2xx"] or r["sock_errors"] or not r["requests"]:
                            notes.append(
                                f"{row}, {wl[1]}: {r['requests']} responses, {r['non2xx']} non-2xx, "
                                f"{r.get('sock_detail', 'no socket errors')}"
                            )
                    idle = res.get("idle") if rnd == 0 else None
                    if idle and (idle["failed"] or idle["alive"] < idle["conns"]):
                        notes.append(
                            f"{row}, idle: held {idle['conns']}, still open {idle['alive']}, failed {idle['failed']}"
                        )
                finally:
                    srv.stop()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if rounds > 1:
        pick_medians(results, per_round)
        notes.insert(0, f"each cell is the median of {rounds} rounds (rows rotated each round); "
                     "the range table gives every round")

    subtitle = f"{datetime.date.today()} · {machine()} · {args.seconds} s per run"
    md = render_md(results, args.seconds, args.idle, pin, versions, notes)
    os.makedirs(args.out, exist_ok=True)
    stem = "latest-https" if args.https else "latest"
    with open(os.path.join(args.out, f"{stem}.md"), "w") as f:
        f.write(md)
    with open(os.path.join(args.out, f"{stem}.svg"), "w") as f:
        f.write(render_svg(results, subtitle))
    with open(os.path.join(args.out, f"{stem}.json"), "w") as f:
        slim = {row: {k: {kk: vv for kk, vv in v.items() if kk != "raw"} for k, v in r.items()} for row, r in results.items()}
        json.dump({"seconds": args.seconds, "idle_conns": args.idle, "machine": machine(), "versions": versions, "results": slim}, f, indent=1)
    with open(os.path.join(args.out, f"{stem}-wrk.txt"), "w") as f:
        for row, r in results.items():
            for k, v in r.items():
                if isinstance(v, dict) and "raw" in v:
                    f.write(f"===== {row} {k}\n{v['raw']}\n")
    print(md)
    log(f"wrote {args.out}/{stem}.md, {stem}.svg, {stem}.json")


if __name__ == "__main__":
    main()
