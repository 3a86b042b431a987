//! Starting a child process the way a server must: its own process group, no signal blocked
//! (the server blocks HUP, INT and TERM for its `sigwait` thread, and a child would inherit
//! that), SIGPIPE at its default, stdin/stdout/stderr on fresh pipes whose server ends are
//! non-blocking and close-on-exec, a given working directory and exactly the given environment.
//!
//! Where glibc provides it (`posix_spawn` with `posix_spawn_file_actions_addchdir_np`), the child
//! is started with `posix_spawn`: vfork semantics, no copy of the server's page tables (which
//! include the receive-buffer pool). Elsewhere std's `Command` forks, with a `pre_exec` step that
//! clears the signal mask. The platform is chosen once, here.

use std::ffi::OsStr;
use std::io;
use std::os::fd::OwnedFd;
use std::path::Path;

#[cfg_attr(all(target_os = "linux", target_env = "gnu"), path = "posix.rs")]
#[cfg_attr(not(all(target_os = "linux", target_env = "gnu")), path = "command.rs")]
mod imp;

/// What to start.
pub struct Spec<'a> {
    /// The program (a path; no PATH search).
    pub program: &'a Path,
    /// Arguments after argv[0] (argv[0] is `program`).
    pub args: &'a [&'a OsStr],
    /// The whole environment.
    pub env: &'a [(String, String)],
    /// The working directory.
    pub dir: Option<&'a Path>,
}

/// A started child: the server's ends of its pipes (non-blocking, close-on-exec). Nothing here
/// waits for it: the caller reaps it (the backends' child-exit op).
#[derive(Debug)]
pub struct Child {
    pub pid: u32,
    pub stdin: OwnedFd,
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
}

/// Start `spec`; exec failures (ENOENT, EACCES, ENOEXEC) are the `Err`.
pub fn spawn(spec: &Spec<'_>) -> io::Result<Child> {
    imp::spawn(spec)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn set_blocking(fd: &OwnedFd) {
        use std::os::fd::AsRawFd;
        // SAFETY: fcntl flag calls on an fd this test owns.
        unsafe {
            let fl = libc::fcntl(fd.as_raw_fd(), libc::F_GETFL);
            libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, fl & !libc::O_NONBLOCK);
        }
    }

    fn read_all(fd: OwnedFd) -> String {
        set_blocking(&fd);
        let mut s = String::new();
        std::fs::File::from(fd).read_to_string(&mut s).unwrap();
        s
    }

    /// Environment, argv, working directory, its own group, no signal blocked (even when the
    /// spawning thread blocks TERM), stdin and stderr wired.
    #[test]
    fn spawns_with_the_promised_state() {
        let out = std::thread::spawn(|| {
            // SAFETY: plain sigset operations on a local set, for this thread only.
            unsafe {
                let mut set: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut set);
                libc::sigaddset(&mut set, libc::SIGTERM);
                libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
            }
            let script = "echo \"$X $1 $(pwd)\"; ps -o pgid= -p $$ | tr -d ' '; echo $$; \
                          grep SigBlk /proc/self/status || echo SigBlk: none; cat; echo err >&2";
            let args = [
                OsStr::new("-c"),
                OsStr::new(script),
                OsStr::new("zero"),
                OsStr::new("one"),
            ];
            let env = [
                ("X".to_string(), "x-value".to_string()),
                ("PATH".to_string(), "/usr/bin:/bin".to_string()),
            ];
            let c = spawn(&Spec {
                program: Path::new("/bin/sh"),
                args: &args,
                env: &env,
                dir: Some(Path::new("/tmp")),
            })
            .unwrap();
            set_blocking(&c.stdin);
            let mut w = std::fs::File::from(c.stdin);
            std::io::Write::write_all(&mut w, b"from-stdin\n").unwrap();
            drop(w);
            (c.pid, read_all(c.stdout), read_all(c.stderr))
        })
        .join()
        .unwrap();
        let (pid, stdout, stderr) = out;
        let lines: Vec<&str> = stdout.lines().collect();
        assert_eq!(lines[0], "x-value one /tmp", "{stdout}");
        assert_eq!(lines[1], pid.to_string(), "its own process group: {stdout}");
        assert_eq!(lines[2], pid.to_string(), "{stdout}");
        if cfg!(target_os = "linux") {
            // grep is a new exec of the shell's child: it shows the mask the shell was given.
            assert_eq!(lines[3], "SigBlk:\t0000000000000000", "{stdout}");
        }
        assert_eq!(lines[4], "from-stdin", "{stdout}");
        assert_eq!(stderr, "err\n");
        // SAFETY: waitpid on our own child.
        unsafe { libc::waitpid(pid as libc::pid_t, std::ptr::null_mut(), 0) };
    }

    #[test]
    fn exec_failure_is_an_error() {
        let e = spawn(&Spec {
            program: Path::new("/nonexistent/webserv/x.cgi"),
            args: &[],
            env: &[],
            dir: None,
        })
        .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
    }
}
