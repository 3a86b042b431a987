#!/usr/bin/env bash
# HTTPS end to end with the openssl and curl command-line clients, against a webserv that is
# already running (ci/browser.sh starts one per backend and calls this during its TLS part):
#
#   bash ci/tls_smoke.sh PORT CA_FILE [ALT_NAME]
#
# PORT is a TLS listen on 127.0.0.1 whose default server serves the default site (www/) with a
# certificate for CN=localhost (SAN localhost, 127.0.0.1) signed by CA_FILE. ALT_NAME, when
# given, is the server_name of a second server on that port with its own certificate
# (CN=ALT_NAME, same CA) that answers `return 200 "ALT_NAME\n"`: SNI must pick it.
#
# Checks, each one printed; the first failure exits 1:
#   - TLS 1.3 and TLS 1.2 (-tls1_3, -tls1_2): the chain verifies with -CAfile (Verify return
#     code: 0), ALPN http/1.1 is negotiated, SNI localhost gets subject CN=localhost, and a GET
#     sent through s_client gets `HTTP/1.1 200` and the home page;
#   - without the CA the same handshake does not verify (the check above can fail);
#   - no SNI gets the default server's certificate; SNI ALT_NAME gets ALT_NAME's and its body;
#   - curl --cacert over https://localhost:PORT/ gets 200;
#   - plain HTTP to the TLS port gets 400 "The plain HTTP request was sent to HTTPS port".
# Every client runs under `timeout`; only 127.0.0.1 is contacted.
set -euo pipefail

PORT=${1:?usage: $0 PORT CA_FILE [ALT_NAME]}
CA=${2:?usage: $0 PORT CA_FILE [ALT_NAME]}
ALT=${3:-}
T=10 # seconds per client command

fail() {
    echo "FAIL: tls_smoke: $1" >&2
    if [ -n "${2:-}" ]; then
        echo "---- client output ----" >&2
        printf '%s\n' "$2" | head -40 >&2
    fi
    exit 1
}
ok() { echo "  ok: $1"; }
has() { grep -qF -- "$2" <<<"$1"; } # has OUTPUT TEXT

# s_client ARGS... : a handshake, then a GET / with Connection: close; -ign_eof keeps the
# session open after stdin ends until the server closes it. Prints everything s_client says.
s_client_get() {
    local host=$1
    shift
    printf 'GET / HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n' "$host" |
        timeout "$T" openssl s_client -connect "127.0.0.1:$PORT" -ign_eof "$@" 2>&1 || true
}

for v in 1_3 1_2; do
    name="TLSv${v/_/.}"
    out=$(s_client_get localhost "-tls$v" -CAfile "$CA" -verify_return_error \
        -servername localhost -verify_hostname localhost -alpn http/1.1)
    has "$out" "Verify return code: 0 (ok)" || fail "$name: the chain did not verify with -CAfile" "$out"
    has "$out" "New, $name," || fail "$name: not negotiated" "$out"
    has "$out" "ALPN protocol: http/1.1" || fail "$name: ALPN http/1.1 not negotiated" "$out"
    grep -qE '^subject=.*CN ?= ?localhost$' <<<"$out" || fail "$name: SNI localhost did not get subject CN=localhost" "$out"
    grep -qE $'^HTTP/1.1 200 OK\r?$' <<<"$out" || fail "$name: GET / did not answer HTTP/1.1 200" "$out"
    has "$out" '<h1 id="title">It works.</h1>' || fail "$name: GET / did not return the home page" "$out"
    ok "$name: verified with -CAfile, ALPN http/1.1, subject CN=localhost, GET / -> HTTP/1.1 200 and the home page"
done

# The same handshake with no trusted CA at all must not verify.
out=$(timeout "$T" openssl s_client -connect "127.0.0.1:$PORT" -servername localhost \
    -no-CAfile -no-CApath -no-CAstore </dev/null 2>&1 || true)
has "$out" "Verify return code: " || fail "no verify result without a CA" "$out"
! has "$out" "Verify return code: 0 (ok)" || fail "the chain verified without the test CA" "$out"
ok "without the CA: $(grep -m1 -o 'Verify return code: .*' <<<"$out")"

# No SNI: the address's default server, hence its certificate.
out=$(timeout "$T" openssl s_client -connect "127.0.0.1:$PORT" -noservername -CAfile "$CA" \
    -verify_return_error </dev/null 2>&1 || true)
has "$out" "Verify return code: 0 (ok)" || fail "no SNI: the chain did not verify" "$out"
grep -qE '^subject=.*CN ?= ?localhost$' <<<"$out" || fail "no SNI: not the default server's certificate" "$out"
ok "no SNI: the default server's certificate (CN=localhost)"

if [ -n "$ALT" ]; then
    out=$(s_client_get "$ALT" -CAfile "$CA" -verify_return_error -servername "$ALT" \
        -verify_hostname "$ALT" -alpn http/1.1)
    has "$out" "Verify return code: 0 (ok)" || fail "SNI $ALT: the chain did not verify" "$out"
    grep -qE "^subject=.*CN ?= ?$ALT\$" <<<"$out" || fail "SNI $ALT: did not get subject CN=$ALT" "$out"
    grep -qE $'^HTTP/1.1 200 OK\r?$' <<<"$out" || fail "SNI $ALT: GET / did not answer HTTP/1.1 200" "$out"
    grep -qxF "$ALT" <<<"$out" || fail "SNI $ALT: the body is not $ALT's" "$out"
    ok "SNI $ALT: subject CN=$ALT, and that server's body"
fi

# curl, with the CA as its only trust anchor.
code=$(timeout "$T" curl -sS -m "$T" --cacert "$CA" --resolve "localhost:$PORT:127.0.0.1" \
    -o /dev/null -w '%{http_code} %{scheme}' "https://localhost:$PORT/" 2>&1 || true)
[ "$code" = "200 HTTPS" ] || fail "curl --cacert https://localhost:$PORT/ gave '$code', want '200 HTTPS'"
ok "curl --cacert: 200 over HTTPS"

# Plain HTTP to the TLS port: nginx's 400, in clear text.
out=$(timeout "$T" bash -c '
    exec 3<>"/dev/tcp/127.0.0.1/$1"
    printf "GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n" >&3
    cat <&3' _ "$PORT" 2>&1 || true)
grep -qE $'^HTTP/1.1 400 Bad Request\r?$' <<<"$out" || fail "plain HTTP to the TLS port: no HTTP/1.1 400" "$out"
has "$out" "The plain HTTP request was sent to HTTPS port" || fail "plain HTTP to the TLS port: not nginx's message" "$out"
ok "plain HTTP to the TLS port: 400 \"The plain HTTP request was sent to HTTPS port\""

echo "tls_smoke: all checks passed on 127.0.0.1:$PORT"
