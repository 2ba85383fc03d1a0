//! `quill serve`: a Redis-protocol (RESP2) server over a QuillKV volume. Every acknowledged
//! write is durable (appendfsync always, in Redis terms).
//!
//! Safe on a network as Redis is: with no password, protected mode (on by default) serves
//! loopback clients only and answers others `-DENIED` (`quill_core::server`); TLS listens beside
//! (or instead of) plain TCP; the password is compared in constant time and never printed.

use std::net::{IpAddr, TcpListener};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use quill_core::server::ServerConfig;
use quill_io_real::{config_for_volume, open_volume, serve, Listeners, TlsFiles, VolumeOptions};

use super::common::{size_notice, IoArg, PreallocateArg, EXIT_FAILURE, EXIT_USAGE, SIZE_DEFAULT_BYTES};

#[derive(clap::Args)]
pub struct ServeArgs {
    /// The data file (created if missing) or block device.
    #[arg(long, default_value = "quill.data")]
    pub(super) path: PathBuf,
    /// The data file's size when this start creates it (default 1 GiB); ignored, with a
    /// notice, for a volume that exists.
    #[arg(long)]
    pub(super) size: Option<u64>,
    /// The address to listen on (plain and TLS).
    #[arg(long, default_value = "127.0.0.1")]
    pub(super) bind: String,
    /// The plain TCP port. 0 with --tls-port: no plain listener (TLS only); 0 without it: a port
    /// the system picks (the ready line says which).
    #[arg(long, default_value_t = 6379)]
    pub(super) port: u16,
    /// Also listen for TLS on this port (0: a port the system picks); needs --tls-cert-file and
    /// --tls-key-file.
    #[arg(long, requires_all = ["tls_cert_file", "tls_key_file"])]
    pub(super) tls_port: Option<u16>,
    /// The server's certificate chain, PEM.
    #[arg(long)]
    tls_cert_file: Option<PathBuf>,
    /// The server's private key, PEM.
    #[arg(long)]
    tls_key_file: Option<PathBuf>,
    /// Clients must present a certificate this CA (PEM) signed.
    #[arg(long)]
    tls_ca_cert_file: Option<PathBuf>,
    /// Clients must AUTH with this password first. It shows in the process list: prefer
    /// --requirepass-file.
    #[arg(long, conflicts_with = "requirepass_file")]
    pub(super) requirepass: Option<String>,
    /// Read the password from this file (its first line).
    #[arg(long)]
    pub(super) requirepass_file: Option<PathBuf>,
    /// With no password, serve loopback clients only (Redis's protected mode): yes or no.
    #[arg(long, default_value = "yes", value_parser = ["yes", "no"])]
    protected_mode: String,
    /// Connections at most; more get Redis's "max number of clients reached" and are closed.
    #[arg(long, default_value_t = 10_000)]
    maxclients: usize,
    /// Close connections idle this many seconds (0: never).
    #[arg(long, default_value_t = 0)]
    timeout: u64,
    /// Close a connection whose unread replies pass this many bytes (a reader too slow).
    #[arg(long, default_value_t = 64 << 20)]
    client_output_buffer_limit: usize,
    /// The value cache's size in bytes.
    #[arg(long, default_value_t = 256 << 20)]
    pub(super) cache_bytes: usize,
    /// The I/O driver.
    #[arg(long, value_enum, default_value_t = IoArg::Uring)]
    pub(super) io: IoArg,
    /// Batches in flight at once (default 2; 1 commits one batch at a time). The volume
    /// bounds it: 2 needs four mirror slots (formats 6 and 7).
    #[arg(long)]
    commit_pipeline_depth: Option<u32>,
    /// Let records of at most a block cross block boundaries. By default (format 7) such a
    /// record starts on a fresh block, so that an uncached GET reads one block; the padding
    /// costs log space and write bandwidth (about a quarter of the bytes for 1 KB values,
    /// 1.5 % for 100-byte ones: docs/benchmarks.md). Takes effect on every start.
    #[arg(long)]
    records_cross_blocks: bool,
    /// Split the index into this many partitions (default 1); with more than one, a restart
    /// fills them on as many worker threads while the engine reads the log. Measured no faster
    /// on two processors (docs/benchmarks.md); meant for machines with cores to spare.
    #[arg(long)]
    index_partitions: Option<u32>,
    /// Format the volume even though it is not blank: a block device without a QuillKV
    /// superblock, or a QuillKV volume whose data is then lost. A file holding other data is
    /// still refused.
    #[arg(long)]
    pub(super) reformat: bool,
    /// With --reformat: format a block device even though it holds a filesystem, partition
    /// table or other known signature (its data is lost).
    #[arg(long, requires = "reformat")]
    pub(super) force: bool,
    /// How a new data file is laid out.
    #[arg(long, value_enum, default_value_t = PreallocateArg::Write)]
    pub(super) preallocate: PreallocateArg,
    /// This replica's id in a cluster (with --peers): 1, 2, 3, …
    #[arg(long, requires = "peers")]
    pub(super) node_id: Option<u64>,
    /// Every replica's client address, this one's included: 1=HOST:PORT,2=HOST:PORT,3=HOST:PORT.
    /// Replicas talk to each other on each client port + 10,000; clients see a Redis Cluster
    /// whose leader is master of every slot (docs/replication.md).
    #[arg(long, requires = "node_id", value_parser = parse_peers)]
    pub(super) peers: Option<Peers>,
    /// With --node-id: the replica's Raft log volume (default: the data file's path with
    /// `.raft-log` appended), the same size as the data file when created.
    #[arg(long, requires = "node_id")]
    pub(super) raft_log_path: Option<PathBuf>,
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

/// A failed start: what to print and the exit code.
pub(super) struct Refused(pub String, pub u8);

pub fn run(args: ServeArgs) -> u8 {
    start_logging(args.log_level);
    match start(args) {
        Ok(code) => code,
        Err(Refused(message, code)) => {
            eprintln!("quill serve: {message}");
            code
        }
    }
}

/// The replicas of a cluster, as --peers lists them.
#[derive(Clone, Debug)]
pub(super) struct Peers(pub Vec<(u64, std::net::SocketAddr)>);

fn parse_peers(text: &str) -> Result<Peers, String> {
    let mut peers = Vec::new();
    for entry in text.split(',') {
        let (id, address) = entry.split_once('=').ok_or(format!("{entry:?} is not ID=HOST:PORT"))?;
        let id: u64 = id.trim().parse().map_err(|_| format!("{id:?} is not a replica id"))?;
        if id == 0 || peers.iter().any(|(known, _)| *known == id) {
            return Err(format!("replica id {id} is 0 or given twice"));
        }
        let address = std::net::ToSocketAddrs::to_socket_addrs(address.trim())
            .map_err(|error| format!("{address:?}: {error}"))?
            .next()
            .ok_or(format!("{address:?} resolves to no address"))?;
        if address.port() > u16::MAX - 10_000 {
            return Err(format!("port {} leaves no room for its bus port (+10,000)", address.port()));
        }
        peers.push((id, address));
    }
    Ok(Peers(peers))
}

fn start(args: ServeArgs) -> Result<u8, Refused> {
    if let (Some(node_id), Some(peers)) = (args.node_id, args.peers.clone()) {
        return super::serve_cluster::start(&args, node_id, peers.0);
    }
    let server_config = server_config(&args)?;
    // Listen first: a start that fails on a port must not have created a data file.
    let listeners = listen(&args)?;
    warn_if_exposed(&args, &server_config);
    let create_size_bytes = Some(args.size.unwrap_or(SIZE_DEFAULT_BYTES));
    let options = VolumeOptions {
        create_size_bytes,
        reformat: args.reformat,
        preallocate: args.preallocate.layout(),
        force: args.force,
        ..VolumeOptions::default()
    };
    let volume = open_volume(&args.path, &options).map_err(|error| Refused(error.to_string(), EXIT_FAILURE))?;
    size_notice("serve", args.size, &volume);
    let stop = stop_on_signals();
    let mut config = config_for_volume(&volume, Some(args.cache_bytes));
    if let Some(depth) = args.commit_pipeline_depth {
        config.commit_pipeline_depth = depth.max(1);
    }
    config.small_records_whole = !args.records_cross_blocks;
    if let Some(partitions) = args.index_partitions {
        config.index_partitions = partitions;
        config.hand_out_index_work = partitions > 1;
    }
    let addresses = describe(&listeners);
    let mut ready = false;
    let on_ready = || {
        ready = true;
        tracing::info!("quill serve: ready, listening on {addresses} ({})", args.path.display());
    };
    match serve(&volume, config, args.io.choice(), server_config, listeners, stop, on_ready) {
        Ok(()) => Ok(0),
        Err(error) => {
            eprintln!("quill serve: {error}");
            // A format that never finished leaves a file the next start would refuse.
            if !ready && volume.remove_if_created() {
                eprintln!("quill serve: removed {}, which this start had created", args.path.display());
            }
            Ok(EXIT_FAILURE)
        }
    }
}

fn server_config(args: &ServeArgs) -> Result<ServerConfig, Refused> {
    let requirepass = match (&args.requirepass, &args.requirepass_file) {
        (Some(password), _) => Some(password.clone().into_bytes()),
        (None, Some(path)) => Some(read_password(path)?),
        (None, None) => None,
    };
    if requirepass.as_ref().is_some_and(|password| password.is_empty()) {
        return Err(Refused("the password is empty".into(), EXIT_USAGE));
    }
    Ok(ServerConfig {
        requirepass,
        clients_max: args.maxclients,
        idle_timeout_ms: (args.timeout > 0).then_some(args.timeout * 1000),
        output_bytes_max: args.client_output_buffer_limit,
        protected_mode: args.protected_mode == "yes",
        ..ServerConfig::default()
    })
}

/// The first line of the file, without its line end. The error names the file, never its text.
fn read_password(path: &std::path::Path) -> Result<Vec<u8>, Refused> {
    let text = std::fs::read(path)
        .map_err(|error| Refused(format!("cannot read the password file {}: {error}", path.display()), EXIT_FAILURE))?;
    let line = text.split(|byte| *byte == b'\n').next().unwrap_or_default();
    Ok(line.strip_suffix(b"\r").unwrap_or(line).to_vec())
}

fn listen(args: &ServeArgs) -> Result<Listeners, Refused> {
    let bind = |port: u16| {
        TcpListener::bind((args.bind.as_str(), port))
            .map_err(|error| Refused(format!("cannot listen on {}:{port}: {error}", args.bind), EXIT_FAILURE))
    };
    let tls = match (args.tls_port, &args.tls_cert_file, &args.tls_key_file) {
        (Some(port), Some(cert_file), Some(key_file)) => {
            let files = TlsFiles {
                cert_file: cert_file.clone(),
                key_file: key_file.clone(),
                ca_cert_file: args.tls_ca_cert_file.clone(),
            };
            let config = quill_io_real::tls_server_config(&files)
                .map_err(|error| Refused(format!("TLS: {error}"), EXIT_FAILURE))?;
            Some((bind(port)?, config))
        }
        _ => None,
    };
    let plain = if args.port == 0 && tls.is_some() { None } else { Some(bind(args.port)?) };
    Ok(Listeners { plain, tls })
}

fn describe(listeners: &Listeners) -> String {
    let address = |listener: &TcpListener| listener.local_addr().map_or_else(|_| "?".into(), |a| a.to_string());
    let plain = listeners.plain.as_ref().map(&address);
    let tls = listeners.tls.as_ref().map(|(listener, _)| format!("{} (TLS)", address(listener)));
    plain.into_iter().chain(tls).collect::<Vec<_>>().join(", ")
}

/// Says so when the server answers beyond this machine, and how.
fn warn_if_exposed(args: &ServeArgs, config: &ServerConfig) {
    let loopback = args.bind.parse::<IpAddr>().map_or(args.bind == "localhost", |address| address.is_loopback());
    if loopback || config.requirepass.is_some() {
        return;
    }
    if config.protected_mode {
        tracing::warn!(
            "listening on {} with no password: protected mode serves loopback clients only and answers others DENIED; \
             set --requirepass-file to serve them, or --protected-mode no on a network you trust",
            args.bind
        );
    } else {
        tracing::warn!(
            "listening on {} with no password and protected mode off: anyone who can reach the port can read and erase every key",
            args.bind
        );
    }
}

pub(super) fn stop_on_signals() -> Arc<AtomicBool> {
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
    stop
}
