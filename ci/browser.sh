#!/usr/bin/env bash
# Browser test of the default site: headless Chromium, driven over the DevTools protocol by
# tests/browser/site.mjs, against a release webserv serving a temp copy of www/ with a config
# derived from conf/default.conf, once per backend. The default server listens on a plain port
# and on a TLS port (`listen ... ssl`, a throwaway CA and certificates made with the openssl CLI);
# the site is driven once over http:// and once over https:// with that CA trusted through an NSS
# database in a temporary HOME (Chromium on Linux reads $HOME/.pki/nssdb), and ci/tls_smoke.sh
# checks the TLS port with openssl s_client and curl in between.
#
#   ci/browser.sh                       # backends: uring epoll (whichever start here)
#   BACKENDS=epoll ci/browser.sh        # or BACKENDS=uring,epoll
#   BACKENDS=kqueue CARGO_FEATURES=libkqueue ci/browser.sh   # what ci/kqueue.sh runs
#   KEEP=1 ci/browser.sh                # keep the temp dir (screenshots, server log)
#
# Needs /usr/bin/chromium (Debian package `chromium`), Node >= 20, openssl, curl and certutil
# (Debian package `libnss3-tools`). When one is missing this fails under CI=true; elsewhere it
# exits 77 ("skipped"), never 0.
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
command -v openssl >/dev/null || missing "openssl not found (apt-get install openssl)"
command -v curl >/dev/null || missing "curl not found (apt-get install curl)"
command -v certutil >/dev/null || missing "certutil not found (apt-get install libnss3-tools)"

# CARGO_FEATURES=libkqueue (ci/kqueue.sh) builds the binary with kqueue on Linux;
# CARGO_PROFILE=ci (ci/kqueue.sh too) builds it with the test suites' profile instead of release.
PROFILE="${CARGO_PROFILE:-release}"
cargo build --profile "$PROFILE" --bin webserv -j2 ${CARGO_FEATURES:+--features "$CARGO_FEATURES"}
BIN="$PWD/target/$PROFILE/webserv"

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

# ---- a throwaway PKI: a CA, and ECDSA P-256 leaves for localhost (the default server: SAN
# localhost and 127.0.0.1) and for alt.test (a second server on the TLS port, for SNI) ----------
PKI="$TMP/pki"
ALT_NAME=alt.test
# A failing openssl or certutil stops the run with what it said.
pki_tool() {
    "$@" >>"$PKI/tools.log" 2>&1 || { echo "FAIL: $*:" >&2; cat "$PKI/tools.log" >&2; exit 1; }
}
make_pki() {
    mkdir -p "$PKI"
    cat >"$PKI/ca.cnf" <<'CNF'
[req]
distinguished_name = dn
prompt = no
[dn]
CN = webserv browser-test CA
[v3_ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
CNF
    pki_tool openssl req -x509 -config "$PKI/ca.cnf" -extensions v3_ca -newkey ec \
        -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -keyout "$PKI/ca.key" -out "$PKI/ca.crt"
    local name san
    for name in localhost "$ALT_NAME"; do
        san="DNS:$name"
        [ "$name" = localhost ] && san="DNS:localhost,IP:127.0.0.1"
        printf '%s\n' "subjectAltName = $san" "basicConstraints = critical, CA:FALSE" \
            "keyUsage = critical, digitalSignature" "extendedKeyUsage = serverAuth" \
            "authorityKeyIdentifier = keyid" >"$PKI/$name.ext"
        pki_tool openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$name" \
            -keyout "$PKI/$name.key" -out "$PKI/$name.csr"
        pki_tool openssl x509 -req -in "$PKI/$name.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" \
            -set_serial "0x$(openssl rand -hex 8)" -days 2 -extfile "$PKI/$name.ext" \
            -out "$PKI/$name.crt"
    done
    # The trust store Chromium reads on Linux: $HOME/.pki/nssdb, in a HOME of our own. The CA
    # is trusted for TLS servers ("C,,") and nothing else is in it.
    mkdir -p "$PKI/home/.pki/nssdb"
    pki_tool certutil -N -d "sql:$PKI/home/.pki/nssdb" --empty-password
    pki_tool certutil -A -d "sql:$PKI/home/.pki/nssdb" -n "webserv browser-test CA" -t "C,," -i "$PKI/ca.crt"
}
make_pki

free_port() {
    node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'
}

run_one() {
    local backend=$1 dir="$TMP/$1" port tls_port
    mkdir -p "$dir/conf" "$dir/http" "$dir/https"
    cp -R www "$dir/www"
    find "$dir/www/uploads" -mindepth 1 ! -name .keep -exec rm -rf {} +
    cp conf/mime.types "$dir/conf/"
    port=$(free_port)
    tls_port=$(free_port)
    [ "$tls_port" != "$port" ] || tls_port=$(free_port)
    # conf/default.conf as shipped, its default server listening on 127.0.0.1:$port instead of
    # 8080 and also on 127.0.0.1:$tls_port with TLS; plus a second server on the TLS port
    # (alt.test, for SNI). root and upload_store are relative to the prefix (-p), so they name
    # the copy in $dir.
    sed -E "s|^([[:space:]]*)listen 8080 default_server;|\1listen 127.0.0.1:$port default_server;\n\1listen 127.0.0.1:$tls_port ssl default_server;\n\1ssl_certificate $PKI/localhost.crt;\n\1ssl_certificate_key $PKI/localhost.key;|" \
        conf/default.conf >"$dir/conf/default.conf"
    if ! grep -q "listen 127.0.0.1:$port default_server;" "$dir/conf/default.conf"; then
        echo "FAIL: conf/default.conf no longer has 'listen 8080 default_server;'" >&2
        return 1
    fi
    cat >>"$dir/conf/default.conf" <<CONF
server {
    listen 127.0.0.1:$tls_port ssl;
    server_name $ALT_NAME;
    ssl_certificate $PKI/$ALT_NAME.crt;
    ssl_certificate_key $PKI/$ALT_NAME.key;
    return 200 "$ALT_NAME\n";
}
CONF
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
    BASE_URL="http://127.0.0.1:$port" SITE_DIR="$dir/www" OUT_DIR="$dir/http" CHROMIUM="$CHROMIUM" \
        node --experimental-websocket --no-warnings tests/browser/site.mjs || status=$?
    if [ "$status" -eq 0 ]; then
        echo "==> TLS smoke (openssl s_client, curl), backend $backend, 127.0.0.1:$tls_port"
        bash ci/tls_smoke.sh "$tls_port" "$PKI/ca.crt" "$ALT_NAME" || status=$?
    fi
    if [ "$status" -eq 0 ]; then
        echo "==> browser test over HTTPS, backend $backend, https://127.0.0.1:$tls_port (CA trusted by the NSS db in $PKI/home)"
        HOME="$PKI/home" BASE_URL="https://127.0.0.1:$tls_port" SITE_DIR="$dir/www" OUT_DIR="$dir/https" \
            CHROMIUM="$CHROMIUM" node --experimental-websocket --no-warnings tests/browser/site.mjs || status=$?
    fi
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
for b in ${BACKENDS//,/ }; do
    run_one "$b" || { echo "browser test FAILED on $b" >&2; overall=1; }
done
exit "$overall"
