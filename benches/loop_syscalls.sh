#!/usr/bin/env bash
# The system calls a running server's loop thread makes per request kind (issue 16): starts
# target/release/webserv on a temporary site, attaches `strace -f -ff` for 20 requests of each
# kind, and prints, per thread, the calls counted (the loop thread is the one that waits in
# epoll_wait/kevent/io_uring_enter; the others are the offload pool and the signal thread).
# Usage: bash benches/loop_syscalls.sh [uring|epoll] — needs strace and curl; talks to
# 127.0.0.1 only; stops the server it started. WEBSERV_NO_CACHED_CALLS=1 in the environment
# runs the server as on a kernel without RESOLVE_CACHED and cachestat.
set -euo pipefail
B=${1:-uring}
BIN=${WEBSERV_BIN:-$(cd "$(dirname "$0")/.." && pwd)/target/release/webserv}
[ -x "$BIN" ] || { echo "build first: cargo build --release" >&2; exit 1; }
command -v strace >/dev/null || { echo "needs strace" >&2; exit 1; }
D=$(mktemp -d "${TMPDIR:-/tmp}/webserv-loopsys.XXXXXX")
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mkdir -p "$D/www/up" "$D/www/list"
for i in $(seq 1 30); do echo "$i" >"$D/www/list/f$i.txt"; done
head -c 200000 /dev/urandom >"$D/www/big.bin"
for i in $(seq 1 23); do cp "$D/www/big.bin" "$D/www/m$i.bin"; done
echo small >"$D/www/s.txt"
head -c 200000 /dev/urandom >"$D/put.bin"
head -c 1000 /dev/urandom >"$D/p1"
cat >"$D/c.conf" <<CONF
workers 1;
server {
    listen 127.0.0.1:$PORT;
    root $D/www;
    location / { }
    location /list/ { autoindex on; }
    location /up/ { allow_methods GET PUT POST DELETE; upload_store $D/www/up; }
}
CONF
"$BIN" -c "$D/c.conf" --backend "$B" >"$D/log" 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null; rm -rf "$D"' EXIT
sleep 0.5
U=http://127.0.0.1:$PORT
run() {
    local name=$1
    shift
    for _ in 1 2 3; do eval "$@" >/dev/null 2>&1; done
    rm -f "$D"/tr.*
    strace -qq -f -ff -o "$D/tr" -p "$PID" &
    local st=$!
    sleep 0.5
    for _ in $(seq 1 20); do eval "$@" >/dev/null 2>&1; done
    sleep 0.3
    kill -INT "$st"
    wait "$st" 2>/dev/null || true
    echo "== $name ($B, 20 requests)"
    for f in "$D"/tr.*; do
        local role=other
        grep -qE "epoll_wait|io_uring_enter|kevent" "$f" && role=loop
        echo "  [$role thread] $(grep -oE '^[a-z_0-9]+\(' "$f" | tr -d '(' | sort | uniq -c | sort -rn | awk '{printf "%s×%s ", $2, $1}')"
    done
}
run "GET cached 6 B" "curl -s $U/s.txt"
run "GET 200 KB hot (open-file cache hit)" "curl -s $U/big.bin"
N=1
run "GET 200 KB, a new file each (open-file cache miss)" 'curl -s $U/m$N.bin; N=$((N + 1))'
run "GET autoindex, 30 entries" "curl -s $U/list/"
run "PUT 200 KB" "curl -s -T $D/put.bin $U/up/put.bin"
run "POST multipart 2 x 1 KB" "curl -s -F 'a=@$D/p1;filename=a.bin' -F 'b=@$D/p1;filename=b.bin' $U/up/"
run "PUT 1 KB + DELETE" "curl -s -T $D/p1 $U/up/d.bin; curl -s -X DELETE $U/up/d.bin"
