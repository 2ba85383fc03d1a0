//! `quill serve`: a Redis-protocol (RESP2) server over a QuillKV volume. Every acknowledged
//! write is durable (appendfsync always, in Redis terms).

use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use quill_core::server::ServerConfig;
use quill_io_real::{config_for_volume, open_volume, serve, VolumeOptions};

use super::common::{size_notice, IoArg, EXIT_FAILURE, SIZE_DEFAULT_BYTES};

#[derive(clap::Args)]
pub struct ServeArgs {
    /// The data file (created if missing) or block device.
    #[arg(long, default_value = "quill.data")]
    path: PathBuf,
    /// The data file's size when this start creates it (default 1 GiB); ignored, with a
    /// notice, for a volume that exists.
    #[arg(long)]
    size: Option<u64>,
    #[arg(long, default_value = "127.0.0.1")]
    bind: String,
    #[arg(long, default_value_t = 6379)]
    port: u16,
    /// Clients must AUTH with this password first.
    #[arg(long)]
    requirepass: Option<String>,
    #[arg(long, default_value_t = 10_000)]
    maxclients: usize,
    /// Close connections idle this many seconds (0: never).
    #[arg(long, default_value_t = 0)]
    timeout: u64,
    /// The value cache's size in bytes.
    #[arg(long, default_value_t = 256 << 20)]
    cache_bytes: usize,
    /// The I/O driver.
    #[arg(long, value_enum, default_value_t = IoArg::Uring)]
    io: IoArg,
    /// Format the volume even though it is not blank: a block device without a QuillKV
    /// superblock, or a QuillKV volume whose data is then lost. A file holding other data is
    /// still refused.
    #[arg(long)]
    reformat: bool,
    /// What to log on stderr: error, warn, info, debug or trace (`RUST_LOG`, if set, wins).
    #[arg(long, default_value = "info")]
    log_level: tracing::Level,
}

/// Logs go to stderr with their level; `RUST_LOG` (for example `quill_io_real=debug`) overrides
/// `--log-level`.
fn start_logging(level: tracing::Level) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level.as_str()));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

pub fn run(args: ServeArgs) -> u8 {
    start_logging(args.log_level);
    // Listen first: a start that fails on the port must not have created a data file.
    let listener = match TcpListener::bind((args.bind.as_str(), args.port)) {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!("quill serve: cannot listen on {}:{}: {error}", args.bind, args.port);
            return EXIT_FAILURE;
        }
    };
    let create_size_bytes = Some(args.size.unwrap_or(SIZE_DEFAULT_BYTES));
    let options = VolumeOptions { create_size_bytes, reformat: args.reformat, ..VolumeOptions::default() };
    let volume = match open_volume(&args.path, &options) {
        Ok(volume) => volume,
        Err(error) => {
            eprintln!("quill serve: {error}");
            return EXIT_FAILURE;
        }
    };
    size_notice("serve", args.size, &volume);
    let server_config = ServerConfig {
        requirepass: args.requirepass.map(String::into_bytes),
        clients_max: args.maxclients,
        idle_timeout_ticks: (args.timeout > 0).then_some(args.timeout * 1000),
        ticks_per_second: 1000,
        ..ServerConfig::default()
    };
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = Arc::clone(&stop);
    std::thread::spawn(move || loop {
        if STOP.load(Ordering::Relaxed) {
            watcher.store(true, Ordering::Relaxed);
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    });
    let config = config_for_volume(&volume, Some(args.cache_bytes));
    // With --port 0 the system picks the port: the ready line says which.
    let address =
        listener.local_addr().map_or_else(|_| format!("{}:{}", args.bind, args.port), |address| address.to_string());
    let on_ready = || tracing::info!("quill serve: ready, listening on {address} ({})", args.path.display());
    let mut ready = false;
    let on_ready = || {
        ready = true;
        on_ready();
    };
    match serve(&volume, config, args.io.choice(), server_config, listener, stop, on_ready) {
        Ok(()) => 0,
        Err(error) => {
            eprintln!("quill serve: {error}");
            // A format that never finished leaves a file the next start would refuse.
            if !ready && volume.remove_if_created() {
                eprintln!("quill serve: removed {}, which this start had created", args.path.display());
            }
            EXIT_FAILURE
        }
    }
}
