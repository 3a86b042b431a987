#!/usr/bin/env bash
# Browser test of the default site: headless Chromium, driven over the DevTools protocol by
# tests/browser/site.mjs, against a release webserv serving a temp copy of www/ with a config
# derived from conf/default.conf (only the listen port changed), once per backend.
#
#   ci/browser.sh                       # backends: uring epoll (whichever start here)
#   BACKENDS=epoll ci/browser.sh
#   BACKENDS=kqueue CARGO_FEATURES=libkqueue ci/browser.sh   # what ci/kqueue.sh runs
#   KEEP=1 ci/browser.sh                # keep the temp dir (screenshots, server log)
#
# Needs /usr/bin/chromium (Debian package `chromium`) and Node >= 20. When either is missing
# this fails under CI=true; elsewhere it exits 77 ("skipped"), never 0.
set -euo pipefail
cd "$(dirname "$0")/.."

CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"
BACKENDS="${BACKENDS:-uring epoll}"

missing() {
    if [ "${CI:-}" = "true" ]; then
        echo "FAIL: $1 (CI=true: the browser test may not be skipped)" >&2
        exit 1
    fi
    echo "SKIPPED: $1" >&2
    exit 77
}
[ -x "$CHROMIUM" ] || missing "chromium not found at $CHROMIUM (apt-get install chromium)"
command -v node >/dev/null || missing "node not found (Node >= 20 needed)"
node_major=$(node -p 'process.versions.node.split(".")[0]')
[ "$node_major" -ge 20 ] || missing "node $node_major is too old (Node >= 20 needed)"

# CARGO_FEATURES=libkqueue (ci/kqueue.sh) builds the binary with kqueue on Linux.
cargo build --release --bin webserv -j2 ${CARGO_FEATURES:+--features "$CARGO_FEATURES"}
BIN="$PWD/target/release/webserv"

TMP=$(mktemp -d "${TMPDIR:-/tmp}/webserv-browser.XXXXXX")
SERVER_PID=""
cleanup() {
    if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    if [ "${KEEP:-}" = "1" ]; then
        echo "kept $TMP"
    else
        rm -rf "$TMP"
    fi
}
trap cleanup EXIT

free_port() {
    node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'
}

run_one() {
    local backend=$1 dir="$TMP/$1" port
    mkdir -p "$dir/conf"
    cp -R www "$dir/www"
    find "$dir/www/uploads" -mindepth 1 ! -name .keep -exec rm -rf {} +
    cp conf/mime.types "$dir/conf/"
    port=$(free_port)
    # conf/default.conf as shipped, listening on 127.0.0.1:$port instead of 8080. root and
    # upload_store are relative to the prefix (-p), so they name the copy in $dir.
    sed -E "s/^([[:space:]]*)listen 8080 default_server;/\1listen 127.0.0.1:$port default_server;/" \
        conf/default.conf >"$dir/conf/default.conf"
    if ! grep -q "listen 127.0.0.1:$port default_server;" "$dir/conf/default.conf"; then
        echo "FAIL: conf/default.conf no longer has 'listen 8080 default_server;'" >&2
        return 1
    fi
    grep -q "^[[:space:]]*root www;" "$dir/conf/default.conf" || { echo "FAIL: default.conf root is not 'www'" >&2; return 1; }

    "$BIN" -c "$dir/conf/default.conf" -p "$dir" --backend "$backend" >"$dir/server.log" 2>&1 &
    SERVER_PID=$!
    local i
    for i in $(seq 1 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then break; fi
        if ! kill -0 "$SERVER_PID" 2>/dev/null; then
            echo "FAIL: webserv ($backend) exited before listening:" >&2
            cat "$dir/server.log" >&2
            return 1
        fi
        sleep 0.1
    done
    echo "==> browser test, backend $backend, http://127.0.0.1:$port (server pid $SERVER_PID)"
    local status=0
    BASE_URL="http://127.0.0.1:$port" SITE_DIR="$dir/www" OUT_DIR="$dir" CHROMIUM="$CHROMIUM" \
        node --experimental-websocket --no-warnings tests/browser/site.mjs || status=$?
    kill "$SERVER_PID"
    wait "$SERVER_PID" || true
    SERVER_PID=""
    if [ "$status" -ne 0 ]; then
        echo "---- webserv log ($backend) ----" >&2
        cat "$dir/server.log" >&2
    fi
    return "$status"
}

overall=0
for b in $BACKENDS; do
    run_one "$b" || { echo "browser test FAILED on $b" >&2; overall=1; }
done
exit "$overall"
