//! `quill serve`: a Redis-protocol (RESP2) server over a QuillKV volume. Every acknowledged
//! write is durable (appendfsync always, in Redis terms).

use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use quill_core::server::ServerConfig;
use quill_io_real::{config_for_volume, open_volume, serve, IoChoice, VolumeOptions};

#[derive(clap::Args)]
pub struct ServeArgs {
    /// The data file (created if missing) or block device.
    #[arg(long, default_value = "quill.data")]
    path: PathBuf,
    /// The data file's size when it is created.
    #[arg(long, default_value_t = 1 << 30)]
    size: u64,
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
    #[arg(long, default_value = "uring")]
    io: String,
}

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

pub fn run(args: ServeArgs) -> u8 {
    let io = match args.io.as_str() {
        "uring" => IoChoice::Uring,
        "sync" => IoChoice::Sync,
        other => {
            eprintln!("quill serve: --io must be uring or sync, not {other:?}");
            return 2;
        }
    };
    let options = VolumeOptions { create_size_bytes: Some(args.size), ..VolumeOptions::default() };
    let volume = match open_volume(&args.path, &options) {
        Ok(volume) => volume,
        Err(error) => {
            eprintln!("quill serve: {error}");
            return 1;
        }
    };
    let listener = match TcpListener::bind((args.bind.as_str(), args.port)) {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!("quill serve: cannot listen on {}:{}: {error}", args.bind, args.port);
            return 1;
        }
    };
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
    let on_ready = || eprintln!("quill serve: ready, listening on {address} ({})", args.path.display());
    match serve(&volume, config, io, server_config, listener, stop, on_ready) {
        Ok(()) => 0,
        Err(error) => {
            eprintln!("quill serve: {error}");
            1
        }
    }
}
