//! The wall clock, read where the engine's contract asks for Unix time (expiry, TIME).

/// Wall-clock time, Unix milliseconds (0 if the clock is before 1970).
pub fn unix_time_ms() -> u64 {
    let since_epoch = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    u64::try_from(since_epoch.as_millis()).unwrap_or(u64::MAX)
}
