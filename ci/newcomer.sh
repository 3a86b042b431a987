#!/usr/bin/env bash
# The README's first command, as a newcomer runs it: a fresh `git clone` of this checkout's
# HEAD into a temp folder, then `cargo run --release` there with conf/default.conf's listen port
# changed to a free one on 127.0.0.1 (the copy is the only change). One GET / must answer 200 with
# exactly the bytes of www/index.html; then SIGTERM to the server's pid must stop it with exit 0.
#
# Uncommitted changes are not in the clone: this tests what a clone gets. The build goes to
# target/newcomer (NEWCOMER_TARGET_DIR to change) so it reuses its dependencies across runs and
# never touches the binaries in target/release.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"

TMP="$(mktemp -d "${TMPDIR:-/tmp}/webserv-newcomer.XXXXXX")"
PID=""
cleanup() {
    if [ -n "$PID" ] && kill -0 "$PID" 2>/dev/null; then
        kill "$PID" 2>/dev/null || true
        wait "$PID" 2>/dev/null || true
    fi
    rm -rf "$TMP"
}
trap cleanup EXIT
fail() {
    echo "newcomer: FAIL: $*" >&2
    if [ -f "$TMP/server.log" ]; then
        echo "---- server output ----" >&2
        tail -n 30 "$TMP/server.log" >&2
    fi
    exit 1
}

head="$(git rev-parse HEAD)"
git clone -q --no-hardlinks "$ROOT" "$TMP/webserv"
git -C "$TMP/webserv" checkout -q --detach "$head"
cd "$TMP/webserv"
[ -z "$(git status --porcelain)" ] || fail "the clone is not clean"
echo "newcomer: cloned $head into $TMP/webserv"

port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
# conf/default.conf as shipped but for its listen line; a temp file outside the clone would
# change where `include mime.types` resolves, so the copy sits beside the original.
sed -E "s/^([[:space:]]*)listen 8080 default_server;/\1listen 127.0.0.1:$port default_server;/" \
    conf/default.conf >conf/newcomer.conf
grep -q "listen 127.0.0.1:$port default_server;" conf/newcomer.conf ||
    fail "conf/default.conf no longer has 'listen 8080 default_server;'"

export CARGO_TARGET_DIR="${NEWCOMER_TARGET_DIR:-$ROOT/target/newcomer}"
export CARGO_TERM_COLOR=never
# Build first so the wait below times the server's start, not the compiler.
cargo build --release --quiet
# cargo run replaces itself with the program (exec on Unix), so $! is the server's pid.
cargo run --release --quiet -- -c conf/newcomer.conf >"$TMP/server.log" 2>&1 &
PID=$!

up=0
for _ in $(seq 1 100); do
    if curl -s -o /dev/null "http://127.0.0.1:$port/"; then up=1; break; fi
    kill -0 "$PID" 2>/dev/null || fail "the server exited before it listened"
    sleep 0.1
done
[ "$up" = 1 ] || fail "nothing listens on 127.0.0.1:$port after 10 s"
comm="$(cat "/proc/$PID/comm" 2>/dev/null || ps -o comm= -p "$PID")"
[ "$comm" = webserv ] || fail "pid $PID is '$comm', not webserv (cargo run did not exec?)"

code="$(curl -sS -o "$TMP/body" -w '%{http_code}' "http://127.0.0.1:$port/")" ||
    fail "GET / failed"
[ "$code" = 200 ] || fail "GET / answered $code, not 200"
cmp -s "$TMP/body" www/index.html || fail "GET / body differs from www/index.html"
echo "newcomer: GET http://127.0.0.1:$port/ -> 200, $(wc -c <"$TMP/body") bytes = www/index.html"

kill -TERM "$PID"
rc=0
wait "$PID" || rc=$?
PID=""
[ "$rc" = 0 ] || fail "after SIGTERM the server exited with status $rc, not 0"
echo "newcomer: SIGTERM -> exit 0"
