//! Starting a CGI script (RFC 3875 §7): checks that decide 404/403, then a child process with
//! piped, non-blocking stdin/stdout and a cleared environment.

use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// A started script. The loop owns both pipe ends (non-blocking) and must reap `pid` through
/// the backend's child-exit op; nothing here waits for it.
#[derive(Debug)]
pub struct Spawned {
    pub pid: u32,
    /// Write end of the script's stdin; drop (close) it after the last body byte so the script
    /// sees EOF.
    pub stdin: OwnedFd,
    /// Read end of the script's stdout: the response head then body, up to EOF.
    pub stdout: OwnedFd,
    /// Read end of the script's stderr: its diagnostics, for the error log.
    pub stderr: OwnedFd,
}

/// Decide the status for a script path before spawning: `Err(404)` when it does not exist
/// (or a path component is not a directory), `Err(403)` for a directory, a non-regular file,
/// a permission error, or — when it is to be executed directly (no interpreter) — a file with
/// no execute bit. `Err(500)` for other stat failures.
pub fn check_script(path: &Path, interpreter: Option<&Path>) -> Result<(), u16> {
    let meta = std::fs::metadata(path).map_err(|e| crate::http::status::from_io(&e))?;
    if !meta.is_file() {
        return Err(403);
    }
    if interpreter.is_none() && meta.permissions().mode() & 0o111 == 0 {
        return Err(403);
    }
    Ok(())
}

/// Start `script` (through `interpreter` when given) with exactly `env` as its environment.
///
/// argv is `[interpreter, script]` or `[script]`; the working directory is the script's
/// directory (scripts open files relative to themselves); stdin, stdout and stderr are pipes,
/// the server's ends returned non-blocking (stderr is read so that a failing script's last
/// words reach the error log with the task that ran it).
///
/// `backends::spawn` starts it: its own process group (so what the script starts in the
/// background can be stopped with it), no signal blocked (the server blocks HUP, INT and TERM
/// for its `sigwait` thread, and a script would otherwise never see the TERM it is sent),
/// SIGPIPE at its default; with `posix_spawn` where glibc has it (no page-table copy of the
/// server). Exec failures (ENOENT, EACCES, ENOEXEC) come back here as the `Err`; nothing waits
/// for the child — the loop reaps it with its child-exit op.
pub fn spawn(
    interpreter: Option<&Path>,
    script: &Path,
    env: &[(String, String)],
) -> io::Result<Spawned> {
    let l = launch(interpreter, script)?;
    let args = l.arg_refs();
    let c = backends::spawn::spawn(&backends::spawn::Spec {
        program: &l.program,
        args: &args,
        env,
        dir: l.dir.as_deref(),
    })?;
    Ok(Spawned {
        pid: c.pid,
        stdin: c.stdin,
        stdout: c.stdout,
        stderr: c.stderr,
    })
}

/// What starting a script runs: the program (the interpreter, or the script itself), its
/// arguments and its working directory (the script's). The server loop builds a
/// `backends::spawn::Spec` from it for `Backend::spawn` (contract invariant 12: a simulated
/// backend runs its own children).
pub struct Launch {
    pub program: std::path::PathBuf,
    pub args: Vec<std::ffi::OsString>,
    pub dir: Option<std::path::PathBuf>,
}

impl Launch {
    /// The arguments as the `Spec` takes them.
    pub fn arg_refs(&self) -> Vec<&std::ffi::OsStr> {
        self.args.iter().map(|a| a.as_os_str()).collect()
    }
}

/// The [`Launch`] for `script` (through `interpreter` when given).
pub fn launch(interpreter: Option<&Path>, script: &Path) -> io::Result<Launch> {
    // The child runs in the script's directory, so a relative script path would no longer
    // name the script there.
    let script = std::path::absolute(script)?;
    let dir = script.parent().map(Path::to_path_buf);
    Ok(match interpreter {
        Some(interp) => Launch {
            program: interp.to_path_buf(),
            args: vec![script.into_os_string()],
            dir,
        },
        None => Launch {
            program: script,
            args: Vec::new(),
            dir,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::io::{Read, Write};
    use std::path::PathBuf;
    use std::time::{Duration, Instant};

    fn temp_dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "webserv-cgi-{tag}-{}-{:?}",
            std::process::id(),
            Instant::now()
        ));
        fs::create_dir_all(&d).unwrap();
        d
    }

    /// Read a non-blocking fd to EOF, sleeping briefly on WouldBlock.
    fn read_to_end(fd: OwnedFd) -> Vec<u8> {
        let mut f = fs::File::from(fd);
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match f.read(&mut buf) {
                Ok(0) => return out,
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    assert!(Instant::now() < deadline, "script did not finish");
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) => panic!("{e}"),
            }
        }
    }

    #[test]
    fn runs_script_with_env_stdin_and_cwd() {
        let dir = temp_dir("spawn");
        let script = dir.join("t.sh");
        fs::write(
            &script,
            "printf 'Content-Type: text/plain\\r\\n\\r\\n'\n\
             echo \"method=$REQUEST_METHOD\"\n\
             echo \"home=${HOME:-unset}\"\n\
             echo \"cwd=$(pwd -P)\"\n\
             echo \"arg=$0\"\n\
             cat\n",
        )
        .unwrap();
        let env = vec![
            ("REQUEST_METHOD".to_owned(), "POST".to_owned()),
            ("PATH".to_owned(), crate::cgi::env::DEFAULT_PATH.to_owned()),
        ];
        let sp = spawn(Some(Path::new("/bin/sh")), &script, &env).unwrap();
        let mut stdin = fs::File::from(sp.stdin);
        stdin.write_all(b"body\x00bytes\n").unwrap();
        drop(stdin);
        let out = read_to_end(sp.stdout);
        let out = String::from_utf8_lossy(&out);
        let cwd = fs::canonicalize(&dir).unwrap();
        let want = format!(
            "Content-Type: text/plain\r\n\r\nmethod=POST\nhome=unset\ncwd={}\narg={}\nbody\0bytes\n",
            cwd.display(),
            script.display()
        );
        assert_eq!(out, want);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn public_spawn_returns_nonblocking_pipes() {
        let dir = temp_dir("spawn2");
        let script = dir.join("run.cgi");
        fs::write(&script, "#!/bin/sh\necho hi\n").unwrap();
        fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(check_script(&script, None), Ok(()));
        let sp = spawn(None, &script, &[]).unwrap();
        assert_eq!(read_to_end(sp.stdout), b"hi\n");
        // The pid is real; the loop would reap it. Here a zombie is left for the test harness.
        assert!(Path::new(&format!("/proc/{}", sp.pid)).exists() || cfg!(not(target_os = "linux")));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn check_script_statuses() {
        let dir = temp_dir("check");
        let plain = dir.join("plain.py");
        fs::write(&plain, "print()\n").unwrap();
        fs::set_permissions(&plain, fs::Permissions::from_mode(0o644)).unwrap();
        let sh = Path::new("/bin/sh");
        assert_eq!(check_script(&dir.join("missing.py"), Some(sh)), Err(404));
        assert_eq!(check_script(&plain.join("sub"), Some(sh)), Err(404));
        assert_eq!(check_script(&dir, Some(sh)), Err(403));
        assert_eq!(check_script(&plain, None), Err(403));
        assert_eq!(check_script(&plain, Some(sh)), Ok(()));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn exec_failure_is_an_error() {
        let e = spawn(None, Path::new("/nonexistent/webserv/x.cgi"), &[]).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
    }
}
