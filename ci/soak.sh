#!/usr/bin/env bash
# Soak: the default site under siege, then 200 concurrent 1 MB uploads.
#
#   ci/soak.sh [--short] [--backend uring|epoll|auto]
#
# Starts webserv (release build; WEBSERV_BIN=path to use another) on a temp copy of www/ and
# conf/ with the port changed to a free one on 127.0.0.1, then:
#   1. siege -b -c 255 -t 60S (--short: 10S) over a URL list of the site's static pages;
#      availability must be 100 %, and the server's VmRSS at the end of the run must be within
#      10 % of its VmRSS after warm-up (a fifth of the run);
#   2. 200 concurrent PUTs of 1 MB each to /uploads/; every answer must be 201 and every stored
#      file's SHA-256 must equal what was sent.
# The config gets `keepalive_requests 1000000;` (SOAK_KEEPALIVE_REQUESTS=N to change it): siege
# 4.0.7 does not reconnect when a server ends a keep-alive connection after its last response
# (with `Connection: close`, then a lingering close) — it counts the next request as failed.
# nginx with its default keepalive_requests 1000 fails the same way under siege (measured:
# keepalive_requests 2 gives 70 % availability for both). SOAK_KEEPALIVE_REQUESTS=N (a diagnostic: it shows
# whether failures come from connections the server closes after N requests).
# Prints a summary block and exits 1 when a criterion fails (2 when it cannot run).
# Needs siege (installed with apt-get when missing), python3, cargo. Everything talks to
# 127.0.0.1, is bounded in time, and only the server this script started is stopped (by pid).
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_RUN=60
BACKEND=auto
while [ $# -gt 0 ]; do
    case "$1" in
        --short) SECONDS_RUN=10 ;;
        --backend) BACKEND="$2"; shift ;;
        --backend=*) BACKEND="${1#--backend=}" ;;
        -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
        *) echo "soak: unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done

if ! command -v siege >/dev/null; then
    echo "==> siege missing: apt-get install -y siege" >&2
    if ! { apt-get install -y siege >/dev/null 2>&1 || { apt-get update >/dev/null 2>&1 && apt-get install -y siege >/dev/null 2>&1; }; }; then
        echo "soak: siege is not installed and apt-get could not install it" >&2
        exit 2
    fi
fi

BIN="${WEBSERV_BIN:-}"
if [ -z "$BIN" ]; then
    echo "==> cargo build --release" >&2
    cargo build --release >&2
    BIN="$PWD/target/release/webserv"
fi

ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

TMP="$(mktemp -d /tmp/webserv-soak.XXXXXX)"
SERVER_PID=""
SAMPLER_PID=""
cleanup() {
    [ -n "$SAMPLER_PID" ] && kill "$SAMPLER_PID" 2>/dev/null || true
    if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$SERVER_PID" 2>/dev/null || true
    fi
    rm -rf "$TMP"
}
trap cleanup EXIT

PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
cp -r www conf "$TMP/"
rm -f "$TMP"/www/uploads/* 2>/dev/null || true
mkdir -p "$TMP/www/uploads"
# The one listen line of the default site, moved to a free loopback port.
sed -i -E "s/^([[:space:]]*)listen 8080 default_server;/\1listen 127.0.0.1:$PORT default_server;/" \
    "$TMP/conf/default.conf"
grep -q "listen 127.0.0.1:$PORT" "$TMP/conf/default.conf" || {
    echo "soak: could not rewrite the listen directive of conf/default.conf" >&2; exit 2; }
SOAK_KEEPALIVE_REQUESTS="${SOAK_KEEPALIVE_REQUESTS:-1000000}"
if [ -n "${SOAK_KEEPALIVE_REQUESTS:-}" ]; then
    printf 'keepalive_requests %s;\n' "$SOAK_KEEPALIVE_REQUESTS" >>"$TMP/conf/default.conf"
fi

"$BIN" -c "$TMP/conf/default.conf" -p "$TMP" --backend "$BACKEND" >"$TMP/server.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 100); do
    curl -fsS -o /dev/null "http://127.0.0.1:$PORT/" 2>/dev/null && break
    kill -0 "$SERVER_PID" 2>/dev/null || { echo "soak: webserv exited:" >&2; cat "$TMP/server.log" >&2; exit 2; }
    sleep 0.1
done
curl -fsS -o /dev/null "http://127.0.0.1:$PORT/" || { echo "soak: webserv not answering" >&2; exit 2; }
BACKEND_USED="$(grep -o 'backend [a-z]*' "$TMP/server.log" | head -1 | cut -d' ' -f2)"

rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$SERVER_PID/status" 2>/dev/null || echo 0; }

# ---- 1. siege ------------------------------------------------------------------------------
U="http://127.0.0.1:$PORT"
cat >"$TMP/urls.txt" <<EOF
$U/
$U/index.html
$U/upload.html
$U/files.html
$U/static/style.css
$U/static/files.js
$U/static/favicon.svg
$U/demo/
$U/demo/readme.txt
$U/demo/data.json
$U/demo/notes.md
$U/demo/hello%20world.txt
$U/errors/404.html
EOF
# Keep-alive, no log file, no parsing of pages for more URLs: the load is the URL list.
cat >"$TMP/siegerc" <<EOF
connection = keep-alive
logging = false
parser = false
protocol = HTTP/1.1
EOF

WARM=$((SECONDS_RUN / 5))
: >"$TMP/rss.txt"
( start=$(date +%s); while kill -0 "$SERVER_PID" 2>/dev/null; do
      echo "$(( $(date +%s) - start )) $(rss_kib)" >>"$TMP/rss.txt"; sleep 1
  done ) &
SAMPLER_PID=$!

echo "==> siege -b -c 255 -t ${SECONDS_RUN}S ($BACKEND_USED, port $PORT)" >&2
set +e
timeout -k 10 $((SECONDS_RUN + 60)) siege -R "$TMP/siegerc" -b -c 255 -t "${SECONDS_RUN}S" \
    -f "$TMP/urls.txt" >"$TMP/siege.out" 2>"$TMP/siege.err"
SIEGE_RC=$?
set -e
RSS_END="$(rss_kib)"
kill "$SAMPLER_PID" 2>/dev/null || true
wait "$SAMPLER_PID" 2>/dev/null || true
SAMPLER_PID=""
RSS_WARM="$(awk -v w="$WARM" '$1 >= w {print $2; exit}' "$TMP/rss.txt")"
RSS_WARM="${RSS_WARM:-0}"

# siege 4 prints its totals as JSON on stdout (older versions as text on stderr).
field() {
    grep -h -E "\"?$1\"?[[:space:]]*:" "$TMP/siege.out" "$TMP/siege.err" | head -1 |
        sed -E 's/.*:[[:space:]]*//; s/[",%]//g; s/[[:space:]].*//' || true
}
AVAIL="$(field availability)"; [ -n "$AVAIL" ] || AVAIL="$(field Availability)"
TRANS="$(field transactions)"; [ -n "$TRANS" ] || TRANS="$(field Transactions)"
FAILED="$(field failed_transactions)"; [ -n "$FAILED" ] || FAILED="$(field 'Failed transactions')"
RATE="$(field transaction_rate)"; [ -n "$RATE" ] || RATE="$(field 'Transaction rate')"
RESP="$(field response_time)"; [ -n "$RESP" ] || RESP="$(field 'Response time')"
LONGEST="$(field longest_transaction)"; [ -n "$LONGEST" ] || LONGEST="$(field 'Longest transaction')"

# ---- 2. 200 concurrent 1 MB uploads ---------------------------------------------------------
echo "==> 200 concurrent 1 MB PUTs" >&2
set +e
UPLOAD_REPORT="$(timeout -k 10 120 python3 - "$PORT" "$TMP/www/uploads" <<'PY'
import hashlib, http.client, os, sys, threading
port, store = int(sys.argv[1]), sys.argv[2]
N, SIZE = 200, 1 << 20
bodies = [os.urandom(SIZE) for _ in range(N)]
status = [None] * N
barrier = threading.Barrier(N)

def put(i):
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        barrier.wait(timeout=30)
        c.request("PUT", f"/uploads/soak-{i}.bin", body=bodies[i],
                  headers={"Content-Type": "application/octet-stream"})
        r = c.getresponse(); r.read(); status[i] = r.status; c.close()
    except Exception as e:  # reported, counted as a failure
        status[i] = f"error {type(e).__name__}: {e}"

threads = [threading.Thread(target=put, args=(i,)) for i in range(N)]
for t in threads: t.start()
for t in threads: t.join()
ok_status = sum(1 for s in status if s == 201)
ok_hash = 0
bad = []
for i in range(N):
    path = os.path.join(store, f"soak-{i}.bin")
    try:
        with open(path, "rb") as f:
            got = hashlib.sha256(f.read()).hexdigest()
    except OSError as e:
        bad.append(f"soak-{i}.bin: {e.strerror}"); continue
    if got == hashlib.sha256(bodies[i]).hexdigest():
        ok_hash += 1
    else:
        bad.append(f"soak-{i}.bin: sha-256 mismatch")
leftovers = [n for n in os.listdir(store) if n.startswith(".upload-")]
other = sorted({str(s) for s in status if s != 201})
print(f"{ok_status} {ok_hash} {len(leftovers)} {'; '.join(other[:3] + bad[:3]) or '-'}")
PY
)"
UPLOAD_RC=$?
set -e
read -r UP_201 UP_SHA UP_TMP UP_ERR <<<"${UPLOAD_REPORT:-0 0 0 python failed (rc $UPLOAD_RC)}"
ALIVE=yes; kill -0 "$SERVER_PID" 2>/dev/null || ALIVE=no

# ---- summary --------------------------------------------------------------------------------
FAIL=0
check() { if [ "$1" = ok ]; then echo "  PASS  $2"; else echo "  FAIL  $2"; FAIL=1; fi; }
RSS_DELTA="$(awk -v a="$RSS_WARM" -v b="$RSS_END" 'BEGIN { if (a > 0) printf "%+.1f", (b - a) * 100 / a; else print "nan" }')"
echo
echo "==== soak summary ===="
echo "backend            ${BACKEND_USED:-$BACKEND} (webserv pid $SERVER_PID, 127.0.0.1:$PORT)"
[ -n "${SOAK_KEEPALIVE_REQUESTS:-}" ] && echo "config             + keepalive_requests $SOAK_KEEPALIVE_REQUESTS"
echo "siege              -b -c 255 -t ${SECONDS_RUN}S over $(wc -l <"$TMP/urls.txt") static URLs (exit $SIEGE_RC)"
echo "transactions       ${TRANS:-?} (failed ${FAILED:-?}), ${RATE:-?} trans/s, resp ${RESP:-?} s, longest ${LONGEST:-?} s"
echo "availability       ${AVAIL:-?} %"
echo "VmRSS              after warm-up (${WARM} s) ${RSS_WARM} KiB, at the end ${RSS_END} KiB (${RSS_DELTA} %)"
echo "uploads            ${UP_201}/200 answered 201, ${UP_SHA}/200 sha-256 verified, ${UP_TMP} temp files left; ${UP_ERR}"
echo "server             alive: $ALIVE"
echo "criteria:"
[ "${AVAIL:-0}" = "100.00" ] && a=ok || a=no; check $a "availability is 100 %"
awk -v a="$RSS_WARM" -v b="$RSS_END" 'BEGIN { exit !(a > 0 && b > 0 && b <= a * 1.10 && b >= a * 0.90) }' && a=ok || a=no
check $a "VmRSS at the end within 10 % of after warm-up"
[ "$UP_201" = 200 ] && [ "$UP_SHA" = 200 ] && [ "$UP_TMP" = 0 ] && a=ok || a=no
check $a "200 concurrent 1 MB uploads stored byte-exact"
[ "$ALIVE" = yes ] && a=ok || a=no; check $a "server still running"
if [ "$FAIL" != 0 ]; then
    echo "result             FAIL"
    echo "---- siege errors (count, message) ----"
    grep -h -i -E "error|warning|descriptor|refused|reset|timed out" "$TMP/siege.err" "$TMP/siege.out" |
        sed -E 's/[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+:[0-9]+/ADDR/g' | sort | uniq -c | sort -rn | head -8 || true
    echo "---- server log (tail) ----"; tail -20 "$TMP/server.log" || true
    exit 1
fi
echo "result             PASS"
