//! `posix_spawn` (glibc): vfork semantics, an empty signal mask, default SIGPIPE, a new
//! process group, the working directory through `posix_spawn_file_actions_addchdir_np`.

use std::ffi::CString;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;

use super::{Child, Spec};

fn cstr(b: &[u8]) -> io::Result<CString> {
    CString::new(b).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

fn check(rc: libc::c_int) -> io::Result<()> {
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(rc))
    }
}

/// posix_spawn's attribute and file-action objects, destroyed on drop.
struct Objects {
    attr: libc::posix_spawnattr_t,
    actions: libc::posix_spawn_file_actions_t,
}

impl Drop for Objects {
    fn drop(&mut self) {
        // SAFETY: both were initialised in `spawn` before this value was made.
        unsafe {
            libc::posix_spawnattr_destroy(&mut self.attr);
            libc::posix_spawn_file_actions_destroy(&mut self.actions);
        }
    }
}

pub fn spawn(spec: &Spec<'_>) -> io::Result<Child> {
    let program = cstr(spec.program.as_os_str().as_bytes())?;
    let mut argv_owned = vec![program.clone()];
    for a in spec.args {
        argv_owned.push(cstr(a.as_bytes())?);
    }
    let mut env_owned = Vec::with_capacity(spec.env.len());
    for (k, v) in spec.env {
        env_owned.push(cstr(format!("{k}={v}").as_bytes())?);
    }
    let dir = match spec.dir {
        Some(d) => Some(cstr(d.as_os_str().as_bytes())?),
        None => None,
    };
    let mut argv: Vec<*mut libc::c_char> =
        argv_owned.iter().map(|c| c.as_ptr() as *mut _).collect();
    argv.push(std::ptr::null_mut());
    let mut envp: Vec<*mut libc::c_char> = env_owned.iter().map(|c| c.as_ptr() as *mut _).collect();
    envp.push(std::ptr::null_mut());

    let (in_r, in_w) = crate::linux::pipe(0)?;
    let (out_r, out_w) = crate::linux::pipe(0)?;
    let (err_r, err_w) = crate::linux::pipe(0)?;

    // SAFETY: zeroed storage for the two objects, initialised by their init calls right below
    // before any other use; `Objects` destroys them on every path out of this function.
    let mut o = unsafe {
        let mut o = Objects {
            attr: std::mem::zeroed(),
            actions: std::mem::zeroed(),
        };
        check(libc::posix_spawnattr_init(&mut o.attr))?;
        if let Err(e) = check(libc::posix_spawn_file_actions_init(&mut o.actions)) {
            libc::posix_spawnattr_destroy(&mut o.attr);
            return Err(e);
        }
        o
    };
    // SAFETY: the objects are initialised; every pointer passed is to a live local (the sets,
    // the C strings) that outlives the posix_spawn call; the fds are open. dup2 onto 0/1/2 in
    // the child clears close-on-exec on the copies only.
    unsafe {
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        let mut defaults: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut defaults);
        for s in [
            libc::SIGPIPE,
            libc::SIGHUP,
            libc::SIGINT,
            libc::SIGTERM,
            libc::SIGQUIT,
        ] {
            libc::sigaddset(&mut defaults, s);
        }
        check(libc::posix_spawnattr_setsigmask(&mut o.attr, &empty))?;
        check(libc::posix_spawnattr_setsigdefault(&mut o.attr, &defaults))?;
        check(libc::posix_spawnattr_setpgroup(&mut o.attr, 0))?;
        let flags = libc::POSIX_SPAWN_SETSIGMASK
            | libc::POSIX_SPAWN_SETSIGDEF
            | libc::POSIX_SPAWN_SETPGROUP;
        check(libc::posix_spawnattr_setflags(
            &mut o.attr,
            flags as libc::c_short,
        ))?;
        check(libc::posix_spawn_file_actions_adddup2(
            &mut o.actions,
            in_r.as_raw_fd(),
            0,
        ))?;
        check(libc::posix_spawn_file_actions_adddup2(
            &mut o.actions,
            out_w.as_raw_fd(),
            1,
        ))?;
        check(libc::posix_spawn_file_actions_adddup2(
            &mut o.actions,
            err_w.as_raw_fd(),
            2,
        ))?;
        if let Some(d) = &dir {
            check(libc::posix_spawn_file_actions_addchdir_np(
                &mut o.actions,
                d.as_ptr(),
            ))?;
        }
        let mut pid: libc::pid_t = 0;
        check(libc::posix_spawn(
            &mut pid,
            program.as_ptr(),
            &o.actions,
            &o.attr,
            argv.as_ptr(),
            envp.as_ptr(),
        ))?;
        drop(o);
        // The child has its copies: the server keeps only its own ends.
        drop((in_r, out_w, err_w));
        for fd in [&in_w, &out_r, &err_r] {
            crate::util::set_nonblocking(fd.as_raw_fd())?;
        }
        Ok(Child {
            pid: pid as u32,
            stdin: in_w,
            stdout: out_r,
            stderr: err_r,
        })
    }
}
