//! `quill`: the simulator, the benchmark, the server and the volume checker.
//!
//! Exit codes (`commands::common`): 0 success; 1 a failure found (a failing seed, a corrupt
//! volume) or an environment failure (a file missing or in use, a port taken, an I/O error);
//! 2 a usage error.

mod commands;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "quill", version, about = "QuillKV: a deterministic-simulation-tested key-value engine")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a seeded simulation swarm.
    Sim(commands::sim::SimArgs),
    /// Merge the `--json` summaries of a sharded swarm into its totals and failing seeds.
    SimReport(commands::sim_report::SimReportArgs),
    /// Re-run one seed and print its event trace.
    Replay(commands::sim::ReplayArgs),
    /// Find a smaller reproduction of a failing seed.
    Shrink(commands::sim::ShrinkArgs),
    /// Benchmark the engine on a real file or block device.
    Bench(commands::bench::BenchArgs),
    /// Serve the Redis protocol (RESP2).
    Serve(commands::serve::ServeArgs),
    /// Verify a data file: superblocks and every record's checksum.
    Check(commands::check::CheckArgs),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            let code = if error.use_stderr() { 2 } else { 0 };
            let _ = error.print();
            return ExitCode::from(code);
        }
    };
    if !matches!(cli.command, Command::Serve(_)) {
        // Printing commands end quietly when their reader goes away (`quill replay --trace | head`).
        // SAFETY: restoring the default action for SIGPIPE before any output.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    }
    let code = match cli.command {
        Command::Sim(args) => commands::sim::run(args),
        Command::SimReport(args) => commands::sim_report::run(args),
        Command::Replay(args) => commands::sim::replay(args),
        Command::Shrink(args) => commands::sim::shrink(args),
        Command::Bench(args) => commands::bench::run(args),
        Command::Serve(args) => commands::serve::run(args),
        Command::Check(args) => commands::check::run(args),
    };
    ExitCode::from(code)
}
