//! A QuillKV replica: the keyspace's engine, a second engine that keeps the Raft log, and
//! raft-rs's `RawNode` (TiKV's Raft), all sans-I/O. Consensus is raft-rs's; this crate only
//! keeps its storage contract and feeds the engine what commits.
//!
//! # Contract
//!
//! Inputs: [`Replica::submit`] (a client's command, or the commands of one EXEC),
//! [`Replica::step`] (a Raft message from a peer), [`Replica::complete`] (an I/O completion of
//! one of the two volumes), [`Replica::tick`] (time for the engines) and
//! [`Replica::raft_tick`] (one tick of Raft's logical clock; the driver decides when each
//! replica's clock moves). Outputs, drained after each input in this order:
//! [`Replica::poll_io`], [`Replica::poll_message`], [`Replica::poll_reply`]. `submit` and
//! `step` only hand their input to raft-rs (refusals and redirects are answered at once); the
//! turn's Ready is taken at `tick`, so call `tick` at the end of every turn that had input.
//!
//! # The storage contract with raft-rs (`Ready`)
//!
//! - A Ready's entries and hard state go to the log engine (raft_log.rs) and are in raft-rs's
//!   in-memory `MemStorage` at once; its `messages` go out at once (a leader's appends may
//!   precede its own write), its `persisted_messages` (votes, append acknowledgements) only
//!   once the log engine has answered that every write of that Ready is durable, and only
//!   then is raft-rs told (`on_persist_ready`), in Ready order.
//! - Committed entries (raft-rs hands out only those this replica has persisted) are applied
//!   in order, together as one EXEC on the keyspace's engine that also records the last one's
//!   index under a reserved key, one EXEC at a time: a restart neither applies an entry twice
//!   nor skips one. Writes and EXECs are one entry each: a transaction stays atomic across
//!   failover.
//! - Reads are linearizable: ReadIndex (raft-rs's `ReadOnlySafe`: the leader confirms its role
//!   with a quorum), then the read runs once this replica has applied up to that index and up
//!   to every entry its log held when the read arrived.
//! - The log is truncated by an entry the leader proposes (truncate.rs), never past what every
//!   replica has persisted; no snapshot is sent (docs/replication.md says what that leaves out).
//!
//! # Replies a client can get instead of a result
//!
//! `MOVED <slot> <leader>`, `CLUSTERDOWN …`, `TRYAGAIN not committed: …` and `ERR …`: nothing
//! happened. `TRYAGAIN outcome unknown: …`: the write may or may not commit.

mod apply;
mod config;
pub mod front;
mod lane;
mod load;
mod outbox;
pub mod proposal;
pub mod raft_log;
mod ready;
mod replica;
mod requests;
pub mod slot;
mod truncate;

pub use config::{ClusterBug, ReplicaConfig};
pub use front::Front;
pub use proposal::Command;
pub use raft::eraftpb::Message;
pub use replica::{Replica, Role, Volume};

/// The key under which the keyspace's engine records the last Raft index applied. Clients may
/// not name keys with this prefix.
pub const RESERVED_KEY_PREFIX: &[u8] = b"\xffquill/";
pub const APPLIED_INDEX_KEY: &[u8] = b"\xffquill/raft-applied-index";
