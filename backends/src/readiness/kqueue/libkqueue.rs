//! Linux under the `libkqueue` feature: the kqueue(2)/kevent(2) API from libkqueue (user space,
//! over epoll, timerfd, eventfd and pidfd), declared here by hand from its installed
//! `sys/event.h` (version 2.7.0) — `libc` declares kqueue only for the BSDs. Linked statically
//! by `build.rs` from `$LIBKQUEUE_DIR/lib/libkqueue.a`.
//!
//! This proves the kqueue shim's logic on Linux, not a BSD kernel's behaviour: see the README
//! ("kqueue on Linux through libkqueue") for where libkqueue differs.

#![allow(non_camel_case_types)]

use std::io;
use std::os::fd::RawFd;

/// `struct kevent` as libkqueue's `sys/event.h` lays it out on Linux (the pre-FreeBSD-12 and
/// macOS layout: no `ext[4]`; 32 bytes on LP64).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct kevent {
    pub ident: libc::uintptr_t,
    pub filter: libc::c_short,
    pub flags: libc::c_ushort,
    pub fflags: libc::c_uint,
    pub data: libc::intptr_t,
    pub udata: *mut libc::c_void,
}

extern "C" {
    pub fn kqueue() -> libc::c_int;
    pub fn kevent(
        kq: libc::c_int,
        changelist: *const kevent,
        nchanges: libc::c_int,
        eventlist: *mut kevent,
        nevents: libc::c_int,
        timeout: *const libc::timespec,
    ) -> libc::c_int;
}

// Filters (sys/event.h "Filters"; only those this shim uses).
pub const EVFILT_READ: i16 = -1;
pub const EVFILT_WRITE: i16 = -2;
pub const EVFILT_PROC: i16 = -5;
pub const EVFILT_TIMER: i16 = -7;
pub const EVFILT_USER: i16 = -11;

// Actions and flags.
pub const EV_ADD: u16 = 0x0001;
pub const EV_DELETE: u16 = 0x0002;
pub const EV_ONESHOT: u16 = 0x0010;
pub const EV_CLEAR: u16 = 0x0020;
pub const EV_ERROR: u16 = 0x4000;
pub const EV_EOF: u16 = 0x8000;

// Filter flags.
pub const NOTE_TRIGGER: u32 = 0x0100_0000;
pub const NOTE_EXIT: u32 = 0x8000_0000;
pub const NOTE_USECONDS: u32 = 0x0000_0002;

/// libkqueue cannot see a close(2) (its BUGS.md: "If a file descriptor outside of kqueue is
/// closed, the internal kqueue state is not cleaned up"), so a knote outlives its fd, and an
/// `EV_ADD` for a new file that reuses the number only modifies the dead knote: no events ever
/// come. A kernel kqueue drops knotes on close. The shim deletes before it adds.
pub const STALE_KNOTES: bool = true;

/// Linux has `MSG_NOSIGNAL` (and no `SO_NOSIGPIPE`).
pub const SEND_FLAGS: libc::c_int = libc::MSG_NOSIGNAL;
/// Linux has `sendfile(2)`.
pub const SENDFILE: bool = true;

/// Nothing to do on an accepted socket: sends carry `MSG_NOSIGNAL`.
pub fn no_sigpipe(_fd: RawFd) -> io::Result<()> {
    Ok(())
}

/// Linux `sendfile(2)`: returns what was sent; EAGAIN only when nothing was.
pub fn sendfile(sock: RawFd, file: RawFd, offset: u64, len: usize) -> io::Result<usize> {
    let mut off = offset as libc::off_t;
    // SAFETY: plain fds and a pointer to a live off_t.
    crate::sys::cvt_size(unsafe { libc::sendfile(sock, file, &mut off, len) })
}

// The layout above must match the C header's on LP64 (checked at compile time).
#[cfg(target_pointer_width = "64")]
const _: () = {
    assert!(std::mem::size_of::<kevent>() == 32);
    assert!(std::mem::offset_of!(kevent, filter) == 8);
    assert!(std::mem::offset_of!(kevent, flags) == 10);
    assert!(std::mem::offset_of!(kevent, fflags) == 12);
    assert!(std::mem::offset_of!(kevent, data) == 16);
    assert!(std::mem::offset_of!(kevent, udata) == 24);
};
