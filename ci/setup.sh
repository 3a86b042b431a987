#!/usr/bin/env bash
# Installs what ci/test.sh needs and this machine lacks. ci/test.sh runs it first; it is safe to
# run on its own, and fast when nothing is missing (no apt-get update then).
#
#   bash ci/setup.sh            # install what is missing
#   bash ci/setup.sh --check    # only say what is missing (exit 1 if anything is)
#
# SKIP (the step names of ci/test.sh, comma separated) drops the needs of skipped steps, e.g.
# SKIP=browser needs no Chromium and no Node.
#
# What it needs, by step:
#   every step      cc (Debian: gcc) to link Rust code; git; curl
#   cross           rustup targets x86_64-unknown-freebsd, x86_64-apple-darwin, aarch64-apple-darwin;
#                   clang and llvm-ar (ring, rustls's crypto, compiles C for the darwin targets)
#   tests           /usr/bin/python3 (the CGI tests name it), mount (tmpfs for the full-disk test)
#   browser         Chromium at $CHROMIUM (default /usr/bin/chromium), Node >= 20, openssl and
#                   certutil (Debian: libnss3-tools) for its HTTPS part
#   soak            siege, python3
#   fuzz            the nightly toolchain, cargo-fuzz, a C++ compiler (libFuzzer is C++)
#   asan            the nightly toolchain (only when ci/asan.sh exists)
#   kqueue          cmake, make, cc (only when ci/kqueue.sh exists: it builds libkqueue)
#   newcomer        python3 (a free port), git, curl
#   workflow        python3 with PyYAML (Debian: python3-yaml)
#
# Toolchain pieces (rustup targets, the nightly toolchain, cargo-fuzz) install for the current
# user, root or not. Debian packages install only when running as root on a system with apt-get;
# otherwise the script stops at once and prints the exact command to run.
set -euo pipefail
cd "$(dirname "$0")/.."

CHECK_ONLY=0
case "${1:-}" in
    --check) CHECK_ONLY=1 ;;
    "") ;;
    *) echo "usage: $0 [--check]" >&2; exit 2 ;;
esac

SKIP_LIST=",$(printf '%s' "${SKIP:-}" | tr ' ' ','),"
skipped() { case "$SKIP_LIST" in *",$1,"*) return 0 ;; esac; return 1; }
# A step that needs its tools: not skipped and (for the optional scripts) present.
wanted() {
    skipped "$1" && return 1
    case "$1" in
        asan) [ -f ci/asan.sh ] ;;
        kqueue) [ -f ci/kqueue.sh ] ;;
        *) return 0 ;;
    esac
}

CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"
TARGETS="x86_64-unknown-freebsd x86_64-apple-darwin aarch64-apple-darwin"

pkgs=()   # Debian packages to install
why=()    # one line per missing thing
need_pkg() { # PACKAGE REASON
    case " ${pkgs[*]:-} " in *" $1 "*) ;; *) pkgs+=("$1") ;; esac
    why+=("$2 (Debian package $1)")
}
have() { command -v "$1" >/dev/null 2>&1; }
node_ok() { have node && [ "$(node -p 'process.versions.node.split(".")[0]')" -ge 20 ]; }

# ---- system packages --------------------------------------------------------------------
have cc || need_pkg gcc "cc, the linker Rust uses"
have git || need_pkg git "git"
have curl || need_pkg curl "curl"
if wanted tests; then
    [ -x /usr/bin/python3 ] || need_pkg python3 "/usr/bin/python3 (CGI tests)"
    have mount || need_pkg mount "mount (full-disk test)"
fi
if wanted newcomer; then
    have python3 || need_pkg python3 "python3 (newcomer step: picks a free port)"
fi
if wanted soak; then
    have siege || need_pkg siege "siege (soak step)"
    have python3 || need_pkg python3 "python3 (soak step)"
fi
if wanted browser; then
    [ -x "$CHROMIUM" ] || need_pkg chromium "Chromium at $CHROMIUM (browser step)"
    node_ok || need_pkg nodejs "node >= 20 (browser step; found: $(node --version 2>/dev/null || echo none))"
    have openssl || need_pkg openssl "openssl (browser step: test certificates, s_client)"
    have certutil || need_pkg libnss3-tools "certutil (browser step: the test CA in Chromium's NSS db)"
fi
if wanted fuzz; then
    have c++ || need_pkg g++ "c++ (fuzz step: libFuzzer)"
fi
if wanted cross; then
    have clang || need_pkg clang "clang (cross step: ring's C code for the apple-darwin targets)"
    have llvm-ar || need_pkg llvm "llvm-ar (cross step: ring's archive for the apple-darwin targets)"
fi
if wanted kqueue; then
    have cmake || need_pkg cmake "cmake (kqueue step: builds libkqueue)"
    have make || need_pkg make "make (kqueue step: builds libkqueue)"
fi
yaml_python() { # prints a python with PyYAML, if any
    local py
    for py in python3 /usr/bin/python3; do
        if have "$py" && "$py" -c 'import yaml' >/dev/null 2>&1; then
            echo "$py"
            return 0
        fi
    done
    return 1
}
if wanted workflow; then
    yaml_python >/dev/null || need_pkg python3-yaml "python3 with PyYAML (workflow step)"
fi

# ---- toolchain pieces (per user) ----------------------------------------------------------
rust_todo=()   # commands, run in order
have rustup || {
    echo "setup: rustup not found; install Rust with rustup (https://rustup.rs), then rerun" >&2
    exit 1
}
if wanted cross; then
    installed_targets="$(rustup target list --installed 2>/dev/null || true)"
    missing_targets=""
    for t in $TARGETS; do
        grep -qx "$t" <<<"$installed_targets" || missing_targets="$missing_targets $t"
    done
    [ -z "$missing_targets" ] || rust_todo+=("rustup target add$missing_targets")
fi
if wanted fuzz || wanted asan; then
    rustup toolchain list | grep -q '^nightly' ||
        rust_todo+=("rustup toolchain install nightly --profile minimal")
fi
if wanted fuzz; then
    have cargo-fuzz || rust_todo+=("cargo install cargo-fuzz --locked")
fi

# ---- report or install --------------------------------------------------------------------
if [ ${#why[@]} -eq 0 ] && [ ${#rust_todo[@]} -eq 0 ]; then
    echo "setup: nothing missing"
    exit 0
fi
echo "setup: missing:"
for w in "${why[@]+"${why[@]}"}"; do echo "  - $w"; done
for c in "${rust_todo[@]+"${rust_todo[@]}"}"; do echo "  - $c"; done

apt_cmd="apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y ${pkgs[*]:-}"
if [ "$CHECK_ONLY" = 1 ]; then
    [ ${#pkgs[@]} -eq 0 ] || echo "setup: would run: $apt_cmd"
    for c in "${rust_todo[@]+"${rust_todo[@]}"}"; do echo "setup: would run: $c"; done
    exit 1
fi

# WEBSERV_SETUP_AS_USER=1 behaves as a non-root user would (to test the message below as root).
is_root() { [ "$(id -u)" = 0 ] && [ "${WEBSERV_SETUP_AS_USER:-}" != 1 ]; }
if [ ${#pkgs[@]} -gt 0 ]; then
    if ! have apt-get || ! is_root; then
        echo >&2
        if have apt-get; then
            echo "setup: system packages are missing and this is not root. Run:" >&2
            echo >&2
            echo "    sudo sh -c '$apt_cmd'" >&2
        else
            echo "setup: system packages are missing and this system has no apt-get; install" >&2
            echo "the tools listed above with its package manager." >&2
        fi
        echo >&2
        echo "then run 'bash ci/test.sh' again (it installs the rest itself), or skip the steps" >&2
        echo "that need them by name, e.g. SKIP=browser,soak bash ci/test.sh" >&2
        exit 1
    fi
    # The lock timeout lets a concurrent apt (unattended upgrades, another shell) finish first.
    echo "setup: $apt_cmd"
    # dpkg's progress goes to a log; shown only when the install fails.
    apt_log="$(mktemp)"
    if ! { apt-get -o DPkg::Lock::Timeout=600 update -qq &&
        DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq "${pkgs[@]}"; } \
        >"$apt_log" 2>&1; then
        tail -n 40 "$apt_log" >&2
        rm -f "$apt_log"
        echo "setup: the apt-get install above failed" >&2
        exit 1
    fi
    rm -f "$apt_log"
    installed_note="Debian packages: ${pkgs[*]}"
fi

for c in "${rust_todo[@]+"${rust_todo[@]}"}"; do
    echo "setup: $c"
    $c
done

# Checks that an install cannot settle by itself.
status=0
if wanted browser && ! node_ok; then
    echo "setup: node $(node --version 2>/dev/null || echo missing): the browser test needs Node >= 20" >&2
    echo "  (Debian 12 ships 18, Debian 13 ships 20). Install Node >= 20, or SKIP=browser." >&2
    status=1
fi
ran=""
for c in "${rust_todo[@]+"${rust_todo[@]}"}"; do ran="$ran; $c"; done
echo "setup: installed ${installed_note:-no Debian packages}$ran"
exit "$status"
