//! std's `Command` (fork and exec) with a `pre_exec` step that clears the signal mask, for
//! platforms without glibc's `posix_spawn_file_actions_addchdir_np`.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use super::{Child, Spec};

pub fn spawn(spec: &Spec<'_>) -> io::Result<Child> {
    let mut cmd = Command::new(spec.program);
    cmd.args(spec.args)
        .env_clear()
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    if let Some(d) = spec.dir {
        cmd.current_dir(d);
    }
    crate::util::unblock_signals_in_child(&mut cmd);
    let mut child = cmd.spawn()?;
    let missing = || io::Error::other("child pipe missing");
    let stdin: OwnedFd = child.stdin.take().ok_or_else(missing)?.into();
    let stdout: OwnedFd = child.stdout.take().ok_or_else(missing)?.into();
    let stderr: OwnedFd = child.stderr.take().ok_or_else(missing)?.into();
    for fd in [&stdin, &stdout, &stderr] {
        crate::util::set_nonblocking(fd.as_raw_fd())?;
    }
    // Dropping a `Child` neither waits nor kills: the caller reaps it.
    Ok(Child {
        pid: child.id(),
        stdin,
        stdout,
        stderr,
    })
}
