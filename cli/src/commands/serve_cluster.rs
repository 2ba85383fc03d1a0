//! `quill serve --node-id N --peers 1=HOST:PORT,…`: one replica of a cluster (quill-replica,
//! over io-real's drivers and sockets). Two volumes: the keyspace at --path and the Raft log at
//! --raft-log-path.

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;

use quill_io_real::{config_for_volume, open_volume, serve_replica, ClusterServeOptions, VolumeOptions};

use super::common::{size_notice, EXIT_FAILURE, EXIT_USAGE, SIZE_DEFAULT_BYTES};
use super::serve::{stop_on_signals, Refused, ServeArgs};

pub(super) fn start(args: &ServeArgs, node_id: u64, peers: Vec<(u64, SocketAddr)>) -> Result<u8, Refused> {
    let Some((_, own)) = peers.iter().find(|(id, _)| *id == node_id) else {
        return Err(Refused(format!("--peers does not list this replica's id {node_id}"), EXIT_USAGE));
    };
    if args.tls_port.is_some() || args.requirepass.is_some() || args.requirepass_file.is_some() {
        return Err(Refused("a replicated server has no TLS or password yet (docs/replication.md)".into(), EXIT_USAGE));
    }
    let bind = |port: u16| {
        TcpListener::bind((args.bind.as_str(), port))
            .map_err(|error| Refused(format!("cannot listen on {}:{port}: {error}", args.bind), EXIT_FAILURE))
    };
    let port = if args.port == 6379 { own.port() } else { args.port };
    let listener = bind(port)?;
    let bus_listener = bind(port + 10_000)?;
    let options = VolumeOptions {
        create_size_bytes: Some(args.size.unwrap_or(SIZE_DEFAULT_BYTES)),
        reformat: args.reformat,
        preallocate: args.preallocate.layout(),
        force: args.force,
        ..VolumeOptions::default()
    };
    let log_path = args.raft_log_path.clone().unwrap_or_else(|| {
        let mut path = args.path.clone().into_os_string();
        path.push(".raft-log");
        PathBuf::from(path)
    });
    let open = |path: &std::path::Path| open_volume(path, &options).map_err(|e| Refused(e.to_string(), EXIT_FAILURE));
    let state_volume = open(&args.path)?;
    let log_volume = open(&log_path)?;
    size_notice("serve", args.size, &state_volume);
    let state_config = config_for_volume(&state_volume, Some(args.cache_bytes));
    // The log engine's cache holds recent entries, which followers ask for again.
    let log_config = config_for_volume(&log_volume, Some(16 << 20));
    let stop = stop_on_signals();
    let options = ClusterServeOptions { node_id, peers, io: args.io.choice() };
    let address = listener.local_addr().map_or_else(|_| "?".into(), |address| address.to_string());
    let on_ready = || tracing::info!("quill serve: replica {node_id} ready, listening on {address} (bus +10000)");
    match serve_replica(
        &log_volume,
        &state_volume,
        log_config,
        state_config,
        options,
        listener,
        bus_listener,
        stop,
        on_ready,
    ) {
        Ok(()) => Ok(0),
        Err(error) => {
            eprintln!("quill serve: {error}");
            Ok(EXIT_FAILURE)
        }
    }
}
