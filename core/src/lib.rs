//! QuillKV's engine: a sans-I/O key-value state machine.
//!
//! The engine never touches a file, socket, clock or random source. A driver (the simulator in
//! `quill-sim`, the io_uring driver in `quill-io-real`) feeds it inputs and drains its outputs:
//!
//! * inputs: [`Engine::submit`] (a client's request), [`Engine::complete`] (an I/O completion),
//!   [`Engine::set_unix_time_ms`] (wall-clock time, for expiry), [`Engine::tick`] (the end of
//!   the driver's loop turn, with the time);
//! * outputs: [`Engine::poll_io`] (an I/O request with its storage token),
//!   [`Engine::poll_reply`] (a client and its reply), [`Engine::poll_timeout`].
//!
//! **Drain order.** After every input the driver calls `poll_io` until it returns `None`, then
//! (with `Config::publish_cache`) `poll_cache_change` until it returns `None`, then
//! `poll_reply` until it returns `None`, then reads `poll_timeout`. Cache changes come before
//! replies so that a copy of the cache kept in that order never lags a released reply. I/O first, so that the disk
//! starts on new work before replies are written to sockets. Neither drain feeds the engine, so
//! the order between them never changes what the engine does, only when the driver does it.
//!
//! **Time.** Time is an input, in milliseconds of a monotonic clock the driver owns: `tick(now_ms)`
//! both ends a loop turn and says what time it is, and `poll_timeout` answers with the time (same
//! clock) at which the engine wants its next `tick`. The engine never reads a clock. The
//! simulator's clock is virtual (one tick of the simulation is one millisecond, and it jumps
//! ahead when nothing is due); `quill_io_real` passes `Instant` time since the engine started.
//! Wall-clock (Unix) time, which expiry needs (a key expires at a Unix time, durable across
//! restarts), is a second input, [`Engine::set_unix_time_ms`], passed before each `tick`; the
//! engine keeps the largest it was given. `poll_timeout` turns the next expiry time into the
//! monotonic clock, so a driver that waits until then ticks in time.

pub mod command;
pub mod engine;
pub mod format;
pub mod history;
pub mod io;
pub mod resp;
pub mod server;

pub use command::{Reply, Request};
pub use engine::{
    CacheChange, CompactionState, Config, Engine, EngineStats, HaltReason, IndexWork, OpenError, ReadOnlyReason,
    SpaceReport,
};
pub use io::{IoCompletion, IoError, IoKind, IoRequest, IoToken};

/// Every I/O offset, length and buffer is a multiple of this many bytes.
pub const BLOCK_BYTES: usize = 4096;
