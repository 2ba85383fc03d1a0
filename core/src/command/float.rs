//! INCRBYFLOAT's arithmetic, exactly as Redis 7.0 computes it: in C's `long double` (80-bit
//! extended precision on x86-64), which Rust lacks, so the few lines are C
//! (`core/csrc/long_double.c`, compiled by `build.rs`). Pure computation: no state, no I/O.

use super::Reply;

/// Room for any result (Redis's `MAX_LONG_DOUBLE_CHARS`).
const RESULT_BYTES_MAX: usize = 5 * 1024;

extern "C" {
    fn quill_incr_by_float(
        current: *const u8,
        current_len: usize,
        has_current: i32,
        increment: *const u8,
        increment_len: usize,
        out: *mut u8,
        out_cap: usize,
        out_len: *mut usize,
    ) -> i32;
}

/// `current` (absent: 0) plus `increment`, both as Redis reads floats; the new value's text, or
/// Redis's error.
pub fn incr_by_float(current: Option<&[u8]>, increment: &[u8]) -> Result<Vec<u8>, Reply> {
    // On the stack: the result is usually a few bytes, and a heap buffer this size per call
    // costs page clearing.
    let mut out = [0u8; RESULT_BYTES_MAX];
    let mut out_len = 0usize;
    let (current_bytes, has_current) = match current {
        Some(bytes) => (bytes, 1),
        None => (&[][..], 0),
    };
    // SAFETY: every pointer is valid for the length passed with it for the call's duration; the
    // C function writes at most `out.len()` bytes into `out` and one usize into `out_len`.
    let status = unsafe {
        quill_incr_by_float(
            current_bytes.as_ptr(),
            current_bytes.len(),
            has_current,
            increment.as_ptr(),
            increment.len(),
            out.as_mut_ptr(),
            out.len(),
            &mut out_len,
        )
    };
    match status {
        0 => {
            assert!(out_len <= RESULT_BYTES_MAX, "the C side stays within the buffer");
            Ok(out[..out_len].to_vec())
        }
        1 | 2 => Err(Reply::error("ERR value is not a valid float")),
        _ => Err(Reply::error("ERR increment would produce NaN or Infinity")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn add(current: Option<&str>, increment: &str) -> Result<String, Reply> {
        incr_by_float(current.map(str::as_bytes), increment.as_bytes()).map(|bytes| String::from_utf8(bytes).unwrap())
    }

    #[test]
    fn formats_and_refuses_as_redis_does() {
        // Examples from Redis's documentation and test suite (unit/type/incr.tcl).
        assert_eq!(add(Some("10.50"), "0.1"), Ok("10.6".to_string()));
        assert_eq!(add(Some("5.0e3"), "2.0e2"), Ok("5200".to_string()));
        assert_eq!(add(None, "1"), Ok("1".to_string()));
        assert_eq!(add(Some("10"), "-1.1"), Ok("8.9".to_string()));
        assert_eq!(add(Some("0"), "-0"), Ok("0".to_string()));
        assert_eq!(add(Some("0x10"), "0"), Ok("16".to_string()), "strtold reads hexadecimal");
        let not_float = Err(Reply::error("ERR value is not a valid float"));
        assert_eq!(add(Some("abc"), "1"), not_float);
        assert_eq!(add(Some("1"), " 1"), not_float);
        assert_eq!(add(Some("1"), "1 "), not_float);
        assert_eq!(add(Some("1"), ""), not_float);
        assert_eq!(add(Some("1"), "nan"), not_float);
        assert_eq!(add(Some("1\u{0}2"), "1"), not_float, "an embedded NUL");
        assert_eq!(add(Some("1"), "inf"), Err(Reply::error("ERR increment would produce NaN or Infinity")));
    }
}
