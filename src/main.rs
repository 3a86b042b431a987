//! The `webserv` command: nginx-style flags.

use std::path::PathBuf;
use std::process::ExitCode;
use webserv::server::{self, Control, RunOptions};

const USAGE: &str = "\
usage: webserv [CONFIG] [-c CONFIG] [-p PREFIX] [-t] [--backend auto|uring|epoll|kqueue] [--debug]
               [--no-sendfile]

  CONFIG, -c CONFIG   configuration file (default: conf/default.conf)
  -p PREFIX           directory relative paths in the config resolve against (default: .)
  -t                  test the configuration and exit
  --backend KIND      override the config's `backend` (auto picks io_uring, else epoll)
  --debug             trace every task transition (connection, task, operation, result)
  --no-sendfile       send files by reading them (the path used where sendfile(2) is missing)
  -h, --help          this help
  -V, --version       version
";

struct Args {
    config: PathBuf,
    prefix: PathBuf,
    test: bool,
    debug: bool,
    backend: Option<backends::Kind>,
    no_sendfile: bool,
}

fn parse_args() -> Result<Option<Args>, String> {
    let mut a = Args {
        config: PathBuf::from("conf/default.conf"),
        prefix: PathBuf::from("."),
        test: false,
        debug: false,
        backend: None,
        no_sendfile: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().ok_or(format!("option {name} needs a value"));
        match arg.as_str() {
            "-h" | "--help" => {
                print!("{USAGE}");
                return Ok(None);
            }
            "-V" | "--version" => {
                println!("webserv {}", env!("CARGO_PKG_VERSION"));
                return Ok(None);
            }
            "-t" => a.test = true,
            "--debug" => a.debug = true,
            "--no-sendfile" => a.no_sendfile = true,
            "-c" => a.config = PathBuf::from(value("-c")?),
            "-p" => a.prefix = PathBuf::from(value("-p")?),
            "--backend" => a.backend = Some(value("--backend")?.parse()?),
            s if s.starts_with("--backend=") => a.backend = Some(s[10..].parse()?),
            s if !s.starts_with('-') => a.config = PathBuf::from(s),
            s => return Err(format!("unknown option {s}\n{USAGE}")),
        }
    }
    Ok(Some(a))
}

/// The settings a reload cannot apply to a running server: the worker threads and their
/// backends exist already, and each loop opened its access log at start.
fn not_live(old: &webserv::config::Config, new: &webserv::config::Config) -> Vec<&'static str> {
    let mut v = Vec::new();
    if old.workers != new.workers {
        v.push("workers");
    }
    if old.backend != new.backend {
        v.push("backend");
    }
    if old.access_log != new.access_log {
        v.push("access_log");
    }
    v
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(Some(a)) => a,
        Ok(None) => return ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("webserv: {e}");
            return ExitCode::from(2);
        }
    };
    // Every diagnostic on its own line in the GNU format (`FILE:LINE:COL: error: …`), which
    // editors and CI annotators parse; warnings do not stop the server.
    let cfg = match webserv::config::load_all(&args.config, &args.prefix) {
        Ok((c, warnings)) => {
            eprint!("{warnings}");
            c
        }
        Err(diags) => {
            eprint!("{diags}");
            if args.test {
                eprintln!(
                    "webserv: configuration file {} test failed",
                    args.config.display()
                );
            }
            return ExitCode::FAILURE;
        }
    };
    if args.test {
        println!(
            "webserv: the configuration file {} syntax is ok",
            args.config.display()
        );
        println!(
            "webserv: configuration file {} test is successful",
            args.config.display()
        );
        return ExitCode::SUCCESS;
    }
    // systemd's variables are read (and removed) while this is the only thread.
    let inherited = match webserv::systemd::listen_fds() {
        Ok(v) => v,
        Err(e) => {
            eprintln!("webserv: socket activation: {e}");
            return ExitCode::FAILURE;
        }
    };
    let notify = std::sync::Arc::new(webserv::systemd::Notifier::from_env());
    let log_path = cfg.error_log.path.clone();
    if let Err(e) = webserv::log::init(log_path.as_deref(), cfg.error_log.level, args.debug) {
        eprintln!("webserv: error_log: {e}");
        return ExitCode::FAILURE;
    }
    let opts = RunOptions {
        backend: args.backend,
        no_sendfile: args.no_sendfile,
        inherited,
        notify: notify.clone(),
    };
    let control = Control::new(cfg);
    // The signals are blocked before any other thread exists; a watcher thread turns them into
    // requests to the loops: TERM/INT stop gracefully, HUP reloads (a bad new configuration is
    // logged and the running one kept).
    let ctl = control.clone();
    let (config_path, prefix) = (args.config.clone(), args.prefix.clone());
    let watched = [libc::SIGTERM, libc::SIGINT, libc::SIGHUP];
    if let Err(e) = backends::util::watch_signals(&watched, move |sig| {
        if sig == libc::SIGHUP {
            notify.notify(&webserv::systemd::reloading_message());
            match webserv::config::load_all(&config_path, &prefix) {
                Ok((cfg, warnings)) => {
                    for w in warnings.iter() {
                        webserv::warn!("SIGHUP: {w}");
                    }
                    webserv::notice!("SIGHUP: reloading {}", config_path.display());
                    for what in not_live(&ctl.config(), &cfg) {
                        webserv::warn!(
                            "reload: \"{what}\" changed; the running value is kept until a restart"
                        );
                    }
                    ctl.reload(cfg);
                }
                Err(diags) => {
                    for d in diags.iter() {
                        if d.is_error() {
                            webserv::error!("SIGHUP: {d}");
                        } else {
                            webserv::warn!("SIGHUP: {d}");
                        }
                    }
                    let n = diags.iter().filter(|d| d.is_error()).count();
                    webserv::error!(
                        "SIGHUP: {} has {n} error(s); keeping the running configuration",
                        config_path.display()
                    );
                }
            }
            notify.notify("READY=1\nSTATUS=serving");
        } else {
            notify.notify("STOPPING=1");
            ctl.stop();
        }
    }) {
        eprintln!("webserv: cannot watch signals: {e}");
        return ExitCode::FAILURE;
    }
    match server::serve(control, &opts) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            webserv::error!("{e}");
            eprintln!("webserv: {e}");
            ExitCode::FAILURE
        }
    }
}
