//! INFO: server, clients, memory, persistence, stats and keyspace sections with real figures.

use std::fmt::Write;

use super::Server;

/// The Redis version clients are told (for features they probe), with QuillKV's own below it.
pub const REDIS_COMPATIBLE_VERSION: &str = "7.0.0";

impl Server {
    pub(super) fn info(&self, section: Option<&Vec<u8>>) -> String {
        let wanted = section.map(|name| String::from_utf8_lossy(&name.to_ascii_lowercase()).into_owned());
        let all = matches!(wanted.as_deref(), None | Some("all") | Some("everything") | Some("default"));
        let mut out = String::new();
        let sections: [(&str, fn(&Server, &mut String)); 6] = [
            ("server", Server::info_server),
            ("clients", Server::info_clients),
            ("memory", Server::info_memory),
            ("persistence", Server::info_persistence),
            ("stats", Server::info_stats),
            ("keyspace", Server::info_keyspace),
        ];
        for (name, write) in sections {
            if all || wanted.as_deref() == Some(name) {
                let mut title = name.to_string();
                title[..1].make_ascii_uppercase();
                let _ = write!(out, "# {title}\r\n");
                write(self, &mut out);
                out.push_str("\r\n");
            }
        }
        out
    }

    fn info_server(&self, out: &mut String) {
        let uptime_s = self.now.saturating_sub(self.started_at) / 1000;
        let _ = write!(
            out,
            "redis_version:{REDIS_COMPATIBLE_VERSION}\r\nquillkv_version:{}\r\nredis_mode:standalone\r\nuptime_in_seconds:{uptime_s}\r\n",
            env!("CARGO_PKG_VERSION")
        );
    }

    fn info_clients(&self, out: &mut String) {
        let waiting = self.connections.values().filter(|connection| connection.engine_in_flight > 0).count();
        let _ = write!(
            out,
            "connected_clients:{}\r\nmaxclients:{}\r\nblocked_clients:{waiting}\r\n",
            self.connections.len(),
            self.config.clients_max
        );
    }

    fn info_memory(&self, out: &mut String) {
        let (keys, key_bytes) = self
            .engine
            .durable_index()
            .fold((0u64, 0u64), |(count, bytes), (key, _)| (count + 1, bytes + key.len() as u64));
        // The index holds a 24-byte location and the key per entry; the B-tree's own overhead
        // is not counted here (docs/benchmarks.md measures it).
        let index_bytes = keys * 24 + key_bytes;
        let cache_bytes = self.engine.cache_bytes() as u64;
        let _ = write!(
            out,
            "used_memory:{}\r\nindex_bytes:{index_bytes}\r\nvalue_cache_bytes:{cache_bytes}\r\nmaxmemory:0\r\n",
            index_bytes + cache_bytes
        );
    }

    fn info_persistence(&self, out: &mut String) {
        let stats = self.engine.stats();
        let _ = write!(
            out,
            "loading:{}\r\naof_enabled:1\r\nappendfsync:always\r\ndurable_sequence:{}\r\nbatches_committed:{}\r\nrecords_committed:{}\r\nsyncs:{}\r\nread_only:{}\r\nepoch:{}\r\n",
            u8::from(!self.engine.is_ready()),
            self.engine.durable_sequence(),
            stats.batches_committed,
            stats.records_committed,
            stats.syncs,
            u8::from(self.engine.read_only_reason().is_some()),
            self.engine.epoch()
        );
        let space = self.engine.space();
        let _ = write!(
            out,
            "log_capacity_bytes:{}\r\nlog_used_bytes:{}\r\nlive_bytes:{}\r\ncompaction:{:?}\r\ncompaction_records_moved:{}\r\ncompaction_tail_advances:{}\r\ncheckpoints_written:{}\r\nrestarted_from_checkpoint:{}\r\n",
            space.log_capacity_bytes,
            space.log_used_bytes,
            space.live_bytes,
            self.engine.compaction_state(),
            stats.records_moved,
            stats.tail_advances,
            stats.checkpoints_written,
            u8::from(stats.checkpoint_loaded)
        );
        if let Some(reason) = self.engine.compaction_halted() {
            let _ = write!(out, "compaction_halted:{reason}\r\n");
        }
    }

    fn info_stats(&self, out: &mut String) {
        let engine = self.engine.stats();
        let server = &self.stats;
        let _ = write!(
            out,
            "total_connections_received:{}\r\nrejected_connections:{}\r\ntotal_commands_processed:{}\r\ntotal_net_input_bytes:{}\r\ntotal_net_output_bytes:{}\r\nprotocol_errors:{}\r\ndisk_reads:{}\r\ndisk_writes:{}\r\ndisk_bytes_read:{}\r\ndisk_bytes_written:{}\r\nchecksum_failures:{}\r\n",
            server.connections_received,
            server.connections_rejected,
            server.commands_processed,
            server.bytes_received,
            server.bytes_sent,
            server.protocol_errors,
            engine.reads,
            engine.writes,
            engine.bytes_read,
            engine.bytes_written,
            engine.checksum_failures
        );
    }

    fn info_keyspace(&self, out: &mut String) {
        let keys = self.engine.key_count();
        if keys > 0 {
            // Durable keys with an expiry time; avg_ttl is not tracked (Redis's is a sample too).
            let expires = self.engine.expiring_key_count();
            let _ = write!(out, "db0:keys={keys},expires={expires},avg_ttl=0\r\n");
        }
    }
}
