//! What several subcommands share: the I/O driver flag, the volume size flag, the exit codes.

use quill_io_real::{IoChoice, Volume};

/// Exit codes, the same for every subcommand: 0 success; 1 a failure found (a failing seed, a
/// corrupt volume) or an environment failure (a file missing or in use, a port taken, an I/O
/// error); 2 a usage error (bad flags or values).
pub const EXIT_FAILURE: u8 = 1;
pub const EXIT_USAGE: u8 = 2;

/// The I/O driver: `--io uring|sync`.
#[derive(Clone, Copy, Debug, Default, clap::ValueEnum)]
pub enum IoArg {
    /// io_uring (falls back to sync, with a notice, where the kernel refuses it).
    #[default]
    Uring,
    /// Portable blocking pread/pwrite/fdatasync.
    Sync,
}

impl IoArg {
    pub fn choice(self) -> IoChoice {
        match self {
            IoArg::Uring => IoChoice::Uring,
            IoArg::Sync => IoChoice::Sync,
        }
    }
}

/// How a new data file is laid out: `--preallocate write|fallocate`.
#[derive(Clone, Copy, Debug, Default, clap::ValueEnum)]
pub enum PreallocateArg {
    /// Write zeros over it once (slower to create; durable writes then skip extent conversions).
    #[default]
    Write,
    /// fallocate only (instant; each block's first durable write converts its extent).
    Fallocate,
}

impl PreallocateArg {
    pub fn layout(self) -> quill_io_real::Preallocate {
        match self {
            PreallocateArg::Write => quill_io_real::Preallocate::Write,
            PreallocateArg::Fallocate => quill_io_real::Preallocate::Fallocate,
        }
    }
}

/// A new data file's size when `--size` is not given: 1 GiB.
pub const SIZE_DEFAULT_BYTES: u64 = 1 << 30;

/// `--size` only sizes a file this start creates: say so when it was given and ignored.
pub fn size_notice(command: &str, size: Option<u64>, volume: &Volume) {
    if let Some(size) = size.filter(|_| !volume.created) {
        eprintln!(
            "quill {command}: --size {size} ignored: {} already exists ({} bytes)",
            volume.path.display(),
            volume.size_bytes
        );
    }
}
