//! What the kernel offers: setup flags, opcodes and features, probed once at start.

use std::io;

use io_uring::{opcode, IoUring};

use crate::Options;

/// What the probe found.
#[derive(Clone, Debug, Default)]
pub struct Features {
    pub single_issuer: bool,
    pub defer_taskrun: bool,
    pub multishot_accept: bool,
    pub buf_ring: bool,
    pub cancel_fd: bool,
    pub ext_arg: bool,
    pub nodrop: bool,
    /// `IORING_OP_SPLICE` (5.7): [`crate::Op::SendFile`] through a pipe.
    pub splice: bool,
}

pub(super) fn kernel_at_least(major: u32, minor: u32) -> bool {
    // SAFETY: uname fills a zeroed utsname.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: `u` is a valid out-pointer.
    if unsafe { libc::uname(&mut u) } != 0 {
        return false;
    }
    // SAFETY: uname NUL-terminates `release`.
    let rel = unsafe { std::ffi::CStr::from_ptr(u.release.as_ptr()) }.to_string_lossy();
    let mut parts = rel.split(|c: char| !c.is_ascii_digit());
    let maj: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    let min: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    (maj, min) >= (major, minor)
}

/// Open a ring with the best setup flags the kernel takes, and check it has every opcode we
/// use. `buf_ring` is decided later, by whether a ring registers.
pub(super) fn open_ring(opts: &Options) -> io::Result<(IoUring, Features)> {
    let entries = opts.entries.max(8).next_power_of_two();
    let mut features = Features::default();
    let ring = match IoUring::builder()
        .setup_single_issuer()
        .setup_defer_taskrun()
        .setup_cqsize(entries * 4)
        .build(entries)
    {
        Ok(r) => {
            features.single_issuer = true;
            features.defer_taskrun = true;
            r
        }
        // EINVAL: a kernel before 6.1 that does not know these flags.
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => IoUring::builder()
            .setup_cqsize(entries * 4)
            .build(entries)?,
        Err(e) => return Err(e),
    };
    features.ext_arg = ring.params().is_feature_ext_arg() && !opts.assume_no_ext_arg;
    features.nodrop = ring.params().is_feature_nodrop();
    let mut probe = io_uring::Probe::new();
    ring.submitter().register_probe(&mut probe)?;
    for (code, name) in [
        (opcode::Accept::CODE, "ACCEPT"),
        (opcode::Recv::CODE, "RECV"),
        (opcode::Send::CODE, "SEND"),
        (opcode::SendMsg::CODE, "SENDMSG"),
        (opcode::Read::CODE, "READ"),
        (opcode::Write::CODE, "WRITE"),
        (opcode::Close::CODE, "CLOSE"),
        (opcode::AsyncCancel::CODE, "ASYNC_CANCEL"),
        (opcode::Timeout::CODE, "TIMEOUT"),
        (opcode::PollAdd::CODE, "POLL_ADD"),
        (opcode::OpenAt2::CODE, "OPENAT2"),
        (opcode::RenameAt::CODE, "RENAMEAT"),
        (opcode::UnlinkAt::CODE, "UNLINKAT"),
    ] {
        if !probe.is_supported(code) {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!("io_uring lacks IORING_OP_{name} (kernel too old)"),
            ));
        }
    }
    features.splice = probe.is_supported(opcode::Splice::CODE);
    // Flag-level features are not visible to the opcode probe: the kernel version decides.
    features.multishot_accept = !opts.force_single_shot && kernel_at_least(5, 19);
    features.cancel_fd = kernel_at_least(5, 19);
    Ok((ring, features))
}
