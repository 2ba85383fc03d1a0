//! QuillKV's real I/O: the engine from `quill-core` driven over a data file or a block device.
//!
//! * [`open_volume`]: create and preallocate a data file, or open a raw block device (exclusively),
//!   with O_DIRECT where the filesystem allows; refuses paths holding foreign data, and a data file
//!   another open holds ([`VolumeError::Locked`]: one writer, or readers only).
//! * [`Driver`]: [`UringDriver`] (io_uring, batched submission) and [`SyncDriver`] (portable
//!   pread/pwrite), chosen with [`open_driver`]; io_uring falls back to the portable driver with a
//!   notice where it cannot be set up.
//! * [`EngineRunner`]: an engine joined to a driver (the loop `quill bench` and `quill check` run).
//! * [`Db`]: the embedded, thread-safe handle with blocking and async calls.

mod aligned;
mod clock;
mod cluster_bus;
mod cluster_loop;
mod db;
mod driver;
mod engine_thread;
mod errors;
mod index_workers;
mod lock;
mod peer;
mod read_view;
mod recording;
mod runner;
mod server_loop;
mod signatures;
mod spare;
mod sync_driver;
mod tls;
mod uring;
mod volume;

pub use aligned::{AlignedBuffer, BufferPool, ALIGNMENT_BYTES};
pub use cluster_loop::{serve_replica, ClusterServeOptions, RAFT_TICK_MS};
pub use db::{Db, DbOptions, Keys, Ttl, WriteOp};
pub use driver::{open_driver, Driver, IoChoice, RING_ENTRIES};
pub use errors::{CommandError, CommandErrorKind, DbError, DriverError, VolumeError};
pub use lock::{LockHolder, VolumeAccess};
/// The engine's request and reply types, for [`Db::execute`], so embedders need not depend on
/// `quill-core` themselves.
pub use quill_core::command::SetCondition;
pub use quill_core::{Reply, Request};
pub use recording::{IoRecorder, RecordingDriver};
pub use runner::{config_for_volume, EngineRunner};
pub use server_loop::{serve, Listeners, ServeError};
pub use sync_driver::SyncDriver;
pub use tls::{server_config as tls_server_config, TlsError, TlsFiles};
pub use uring::{uring_available, UringDriver};
pub use volume::{
    open_volume, random_volume_id, Preallocate, Volume, VolumeKind, VolumeOptions, VolumeState, VOLUME_BYTES_MIN,
};
