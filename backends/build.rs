//! Links libkqueue when the `libkqueue` feature is on and the target is Linux (the BSDs and
//! macOS have kqueue in the kernel and need nothing).
//!
//! Where: `$LIBKQUEUE_DIR` (an install prefix: `lib/libkqueue.a`), else the prefix
//! `ci/kqueue.sh` builds into, `target/libkqueue/install` beside this crate's workspace.
//! Static, so test binaries and `webserv` run without `LD_LIBRARY_PATH`.

use std::env;
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-env-changed=LIBKQUEUE_DIR");
    let feature = env::var_os("CARGO_FEATURE_LIBKQUEUE").is_some();
    let linux = env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux");
    if !(feature && linux) {
        return;
    }
    let dir = match env::var_os("LIBKQUEUE_DIR") {
        Some(d) => PathBuf::from(d),
        None => {
            let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it"));
            manifest.join("../target/libkqueue/install")
        }
    };
    let lib = dir.join("lib");
    let archive = lib.join("libkqueue.a");
    println!("cargo:rerun-if-changed={}", archive.display());
    if !archive.is_file() {
        panic!(
            "feature `libkqueue`: {} not found. Build libkqueue first (bash ci/kqueue.sh builds \
             it into target/libkqueue/install) or set LIBKQUEUE_DIR to its install prefix.",
            archive.display()
        );
    }
    println!("cargo:rustc-link-search=native={}", lib.display());
    println!("cargo:rustc-link-lib=static=kqueue");
    println!("cargo:rustc-link-lib=pthread");
}
