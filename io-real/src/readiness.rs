//! Which sockets `quill serve`'s loop should serve this turn: epoll, level-triggered, so the
//! loop's logic is poll(2)'s, without poll's cost of looking at every connection every turn
//! (21 % of an unpipelined GET benchmark's time was poll over 50 sockets). Each connection's
//! interest (read, write, or neither) is registered once and changed only when it changes.

use std::collections::BTreeMap;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// Events handed back per wait at most; more wait for the next turn (level-triggered).
const EVENTS_PER_WAIT_MAX: usize = 1024;
/// Listener tokens: the top of the token space, far above any connection id.
const LISTENER_TOKEN_BASE: u64 = u64::MAX - 1024;

/// What a wait found: a listener with a connection waiting, and (id, readable, writable) per
/// connection with events.
pub(crate) struct Ready {
    pub listener: bool,
    pub connections: Vec<(u64, bool, bool)>,
}

pub(crate) struct Readiness {
    epoll: OwnedFd,
    /// Each registered connection's events as last told to the kernel.
    interest: BTreeMap<u64, u32>,
    events: Vec<libc::epoll_event>,
}

impl Readiness {
    pub fn new() -> io::Result<Readiness> {
        // SAFETY: a plain syscall; the descriptor it returns is owned below.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh descriptor nothing else owns.
        let epoll = unsafe { OwnedFd::from_raw_fd(fd) };
        let events = vec![libc::epoll_event { events: 0, u64: 0 }; EVENTS_PER_WAIT_MAX];
        Ok(Readiness { epoll, interest: BTreeMap::new(), events })
    }

    /// Watches listener `index` for connections waiting.
    pub fn watch_listener(&mut self, fd: RawFd, index: usize) -> io::Result<()> {
        assert!(index < 1024, "a handful of listeners");
        self.control(libc::EPOLL_CTL_ADD, fd, libc::EPOLLIN as u32, LISTENER_TOKEN_BASE + index as u64)
    }

    /// Wants `read` and `write` readiness of connection `id` (on `fd`): registers it the first
    /// time, and tells the kernel again only when the interest changed.
    pub fn want(&mut self, id: u64, fd: RawFd, read: bool, write: bool) -> io::Result<()> {
        debug_assert!(id < LISTENER_TOKEN_BASE, "connection ids stay below the listeners' tokens");
        let events = if read { libc::EPOLLIN as u32 } else { 0 } | if write { libc::EPOLLOUT as u32 } else { 0 };
        match self.interest.get(&id) {
            Some(&current) if current == events => Ok(()),
            Some(_) => {
                self.control(libc::EPOLL_CTL_MOD, fd, events, id)?;
                self.interest.insert(id, events);
                Ok(())
            }
            None => {
                self.control(libc::EPOLL_CTL_ADD, fd, events, id)?;
                self.interest.insert(id, events);
                Ok(())
            }
        }
    }

    /// Forgets connections that are gone (closing a socket removes it from the epoll set).
    pub fn retain(&mut self, mut alive: impl FnMut(u64) -> bool) {
        self.interest.retain(|id, _| alive(*id));
    }

    /// Waits up to `timeout_ms` for readiness (interrupted: nothing ready).
    pub fn wait(&mut self, timeout_ms: i32) -> io::Result<Ready> {
        let capacity = i32::try_from(self.events.len()).expect("a small event buffer");
        // SAFETY: `events` holds `capacity` entries the kernel may fill.
        let count = unsafe { libc::epoll_wait(self.epoll.as_raw_fd(), self.events.as_mut_ptr(), capacity, timeout_ms) };
        let mut ready = Ready { listener: false, connections: Vec::new() };
        if count < 0 {
            let error = io::Error::last_os_error();
            return if error.kind() == io::ErrorKind::Interrupted { Ok(ready) } else { Err(error) };
        }
        let hangup = (libc::EPOLLHUP | libc::EPOLLERR) as u32;
        for event in &self.events[..count as usize] {
            let (token, flags) = (event.u64, event.events);
            if token >= LISTENER_TOKEN_BASE {
                ready.listener = true;
                continue;
            }
            let readable = flags & (libc::EPOLLIN as u32 | hangup) != 0;
            ready.connections.push((token, readable, flags & libc::EPOLLOUT as u32 != 0));
        }
        Ok(ready)
    }

    fn control(&self, operation: i32, fd: RawFd, events: u32, token: u64) -> io::Result<()> {
        let mut event = libc::epoll_event { events, u64: token };
        // SAFETY: `event` lives across the call; `fd` is a descriptor the caller holds open.
        let result = unsafe { libc::epoll_ctl(self.epoll.as_raw_fd(), operation, fd, &mut event) };
        if result < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}
