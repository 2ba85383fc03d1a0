//! Bounds that keep one client from exhausting server memory.

/// Protocol limits, with Redis's defaults.
///
/// Each one exists so that a hostile or broken client is cut off before the
/// server buffers or allocates more than these amounts on its behalf.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest accepted bulk string (Redis `proto-max-bulk-len`).
    pub bulk_bytes_max: usize,
    /// Largest accepted multibulk argument count (Redis 6's hard limit).
    pub arguments_max: usize,
    /// Longest inline request line, and longest `*N` / `$N` header line
    /// (Redis `PROTO_INLINE_MAX_SIZE`).
    pub inline_bytes_max: usize,
    /// Most bytes held for incomplete commands (Redis
    /// `client-query-buffer-limit`).
    pub query_buffer_bytes_max: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            bulk_bytes_max: 512 * 1024 * 1024,
            arguments_max: 1024 * 1024,
            inline_bytes_max: 64 * 1024,
            query_buffer_bytes_max: 1024 * 1024 * 1024,
        }
    }
}
