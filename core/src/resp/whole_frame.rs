//! The decoder's fast path: a multibulk request that has arrived whole is parsed in one pass
//! and its arguments are lent as ranges of the decoder's buffer, with no copy and no
//! allocation. Anything unusual (a partial request, an error, an oversized header) is left to
//! the incremental state machine, which then decides, so both paths accept the same requests
//! and reject the rest with the same errors.

use std::ops::Range;

use super::limits::Limits;

/// Arguments lent by the fast path at most; a request with more takes the incremental path.
pub const WHOLE_FRAME_ARGUMENTS_MAX: usize = 64;

/// Largest argument buffer [`Arguments::copy_into`] reuses.
const REUSED_ARGUMENT_BYTES_MAX: usize = 4096;

/// Longest `*N` or `$N` header line the fast path looks at, terminator included; longer ones
/// (never produced by a well-behaved client for requests this path takes) go the long way.
const HEADER_BYTES_MAX: usize = 24;

/// The arguments of one request, borrowed from the bytes they arrived in.
#[derive(Clone, Copy, Debug)]
pub struct Arguments<'a> {
    bytes: &'a [u8],
    ranges: &'a [Range<usize>],
}

impl<'a> Arguments<'a> {
    pub(super) fn new(bytes: &'a [u8], ranges: &'a [Range<usize>]) -> Arguments<'a> {
        debug_assert!(ranges.iter().all(|range| range.start <= range.end && range.end <= bytes.len()));
        Arguments { bytes, ranges }
    }

    pub fn len(&self) -> usize {
        self.ranges.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// Argument `index` (the command name is 0).
    pub fn get(&self, index: usize) -> Option<&'a [u8]> {
        self.ranges.get(index).and_then(|range| self.bytes.get(range.clone()))
    }

    /// Copies the arguments out, for a command that keeps them.
    pub fn to_command(&self) -> Vec<Vec<u8>> {
        let mut command = Vec::new();
        self.copy_into(&mut command);
        command
    }

    /// Copies the arguments into `into`, reusing the buffers it holds (up to a small size: a
    /// large argument's buffer is not kept for the next command) instead of allocating.
    pub fn copy_into(&self, into: &mut Vec<Vec<u8>>) {
        into.truncate(self.len());
        for index in 0..self.len() {
            let argument = self.get(index).unwrap_or_default();
            match into.get_mut(index) {
                Some(buffer) if buffer.capacity() <= REUSED_ARGUMENT_BYTES_MAX => {
                    buffer.clear();
                    buffer.extend_from_slice(argument);
                }
                Some(buffer) => *buffer = argument.to_vec(),
                None => into.push(argument.to_vec()),
            }
        }
        debug_assert_eq!(into.len(), self.len());
    }
}

/// Parses the multibulk request at the start of `bytes` if all of it is there and it is
/// well-formed within `limits`: fills `ranges` (relative to `bytes`) and returns the request's
/// length in bytes; adds the bytes it looked at to `examined`. `None` leaves the decision to the
/// incremental parser. Like Redis, the two bytes after each `\r` of a header and after each
/// payload are skipped unchecked.
pub fn parse_whole_frame(
    bytes: &[u8],
    limits: &Limits,
    ranges: &mut Vec<Range<usize>>,
    examined: &mut usize,
) -> Option<usize> {
    ranges.clear();
    if bytes.first() != Some(&b'*') {
        return None;
    }
    let (count, mut at) = header(bytes, 0, limits, examined)?;
    let count = usize::try_from(count).ok().filter(|&count| count >= 1)?;
    if count > WHOLE_FRAME_ARGUMENTS_MAX || count > limits.arguments_max {
        return None;
    }
    for _ in 0..count {
        if bytes.get(at) != Some(&b'$') {
            return None;
        }
        let (length, payload_start) = header(bytes, at, limits, examined)?;
        let length = usize::try_from(length).ok().filter(|&length| length <= limits.bulk_bytes_max)?;
        let payload_end = payload_start.checked_add(length)?;
        let next = payload_end.checked_add(2).filter(|&next| next <= bytes.len())?;
        *examined += length;
        ranges.push(payload_start..payload_end);
        at = next;
    }
    debug_assert_eq!(ranges.len(), count);
    Some(at)
}

/// The integer of the header line starting at `start` (its type byte) and where the line ends
/// (after `\r` and the byte following it).
fn header(bytes: &[u8], start: usize, limits: &Limits, examined: &mut usize) -> Option<(i64, usize)> {
    let window_end = bytes.len().min(start + HEADER_BYTES_MAX.min(limits.inline_bytes_max));
    let line = bytes.get(start..window_end)?;
    let found = line.iter().position(|&byte| byte == b'\r');
    *examined += found.map_or(line.len(), |offset| offset + 1);
    let carriage_return = found?;
    let end = start + carriage_return + 2;
    if end > bytes.len() {
        return None;
    }
    let value = super::decoder::parse_redis_int(line.get(1..carriage_return)?)?;
    Some((value, end))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(bytes: &[u8]) -> Option<(usize, Vec<Vec<u8>>)> {
        let mut ranges = Vec::new();
        let length = parse_whole_frame(bytes, &Limits::default(), &mut ranges, &mut 0)?;
        Some((length, Arguments::new(bytes, &ranges).to_command()))
    }

    #[test]
    fn a_whole_request_is_lent() {
        let bytes = b"*2\r\n$3\r\nGET\r\n$3\r\nkey\r\n*1";
        let (length, arguments) = parse(bytes).expect("whole");
        assert_eq!(length, bytes.len() - 2);
        assert_eq!(arguments, vec![b"GET".to_vec(), b"key".to_vec()]);
    }

    #[test]
    fn partial_requests_are_left_to_the_incremental_parser() {
        let bytes = b"*2\r\n$3\r\nGET\r\n$3\r\nkey\r\n";
        for end in 0..bytes.len() {
            assert_eq!(parse(&bytes[..end]), None, "prefix of {end} bytes");
        }
    }

    #[test]
    fn anything_unusual_is_left_to_the_incremental_parser() {
        for bytes in [
            &b"*0\r\n"[..],
            b"*-1\r\n",
            b"*1\r\n:3\r\nGET\r\n",
            b"*1\r\n$-1\r\n",
            b"*01\r\n$3\r\nGET\r\n",
            b"*1\r\n$00000000000000000000000003\r\nGET\r\n",
            b"PING\r\n",
            b"*65\r\n",
        ] {
            assert_eq!(parse(bytes), None, "{:?}", String::from_utf8_lossy(bytes));
        }
    }

    #[test]
    fn limits_hold_on_the_fast_path() {
        let limits = Limits { bulk_bytes_max: 2, arguments_max: 1, ..Limits::default() };
        let mut ranges = Vec::new();
        assert_eq!(parse_whole_frame(b"*1\r\n$3\r\nGET\r\n", &limits, &mut ranges, &mut 0), None);
        assert_eq!(parse_whole_frame(b"*2\r\n$1\r\nA\r\n$1\r\nB\r\n", &limits, &mut ranges, &mut 0), None);
        assert!(parse_whole_frame(b"*1\r\n$2\r\nAB\r\n", &limits, &mut ranges, &mut 0).is_some());
    }
}
