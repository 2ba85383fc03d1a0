//! QuillKV's deterministic simulator.
//!
//! One `u64` seed feeds `rand_chacha` streams for the swarm knobs, the workload, the faults and
//! the latencies. Time is virtual (ticks). The engine under test is the real `quill_core`
//! engine; the disk, the clients and the clock are simulated. A checker holds every key's
//! history and flags any reply linearizability does not allow, any acknowledged write lost in a
//! crash, any value never written, and any request not answered once faults stop.

mod aging;
pub mod checker;
pub mod cluster;
pub mod crash_images;
pub mod disk;
pub mod elle;
pub mod faults;
pub mod history;
pub mod images;
pub mod knobs;
pub mod linearizability;
pub mod network;
pub mod runner;
pub mod seed_list;
pub mod shrink;
pub mod trace;
pub mod variants;
pub mod workload;

pub use checker::Violation;
pub use faults::{FaultKind, FaultLedger, Outcome};
pub use knobs::{Family, FaultLevel, Knobs};
pub use runner::space;
pub use runner::{run_seed, SeedReport, SimOptions};
pub use seed_list::parse_seed_list;
pub use shrink::{reproduce_command, shrink, ShrinkResult};
