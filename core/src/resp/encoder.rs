//! RESP2 reply encoding.

use crate::command::Reply;

/// Appends the RESP2 encoding of `reply` to `out`.
///
/// Writes straight into `out` so a connection can batch many replies into one
/// write buffer without per-reply allocations. Nested arrays recurse; their
/// depth is chosen by the server, never by client input.
pub fn encode_reply(reply: &Reply, out: &mut Vec<u8>) {
    match reply {
        Reply::Simple(text) => push_line(out, b'+', text),
        Reply::Error(text) => push_line(out, b'-', text),
        Reply::Integer(value) => {
            out.push(b':');
            push_i64(out, *value);
            out.extend_from_slice(b"\r\n");
        }
        Reply::Bulk(bytes) => encode_bulk(bytes.as_deref(), out),
        Reply::Array(None) => out.extend_from_slice(b"*-1\r\n"),
        Reply::Array(Some(items)) => {
            push_header(out, b'*', items.len());
            for item in items {
                encode_reply(item, out);
            }
        }
    }
}

/// Appends a bulk string reply (`None`: the null bulk string), copying the bytes once.
pub fn encode_bulk(bytes: Option<&[u8]>, out: &mut Vec<u8>) {
    let Some(bytes) = bytes else {
        out.extend_from_slice(b"$-1\r\n");
        return;
    };
    out.reserve(bytes.len() + 16);
    push_header(out, b'$', bytes.len());
    out.extend_from_slice(bytes);
    out.extend_from_slice(b"\r\n");
}

/// Appends a command as a client sends it: an array of bulk strings (for clients written in
/// Rust: the simulator's, benchmarks, tests).
pub fn encode_command<A: AsRef<[u8]>>(arguments: &[A], out: &mut Vec<u8>) {
    push_header(out, b'*', arguments.len());
    for argument in arguments {
        let argument = argument.as_ref();
        push_header(out, b'$', argument.len());
        out.extend_from_slice(argument);
        out.extend_from_slice(b"\r\n");
    }
}

/// Writes a `+`/`-` line. CR and LF become spaces, as Redis's
/// `addReplyErrorFormat` does, because a raw line break inside a status or
/// error would desynchronise the client's parser.
fn push_line(out: &mut Vec<u8>, prefix: u8, text: &str) {
    out.reserve(text.len() + 3);
    out.push(prefix);
    out.extend(text.bytes().map(|b| match b {
        b'\r' | b'\n' => b' ',
        other => other,
    }));
    out.extend_from_slice(b"\r\n");
}

/// Writes `<prefix><len>\r\n`, the header of a bulk string or array.
fn push_header(out: &mut Vec<u8>, prefix: u8, len: usize) {
    out.push(prefix);
    push_u64(out, len as u64);
    out.extend_from_slice(b"\r\n");
}

/// Formats a signed integer without going through `fmt` machinery.
fn push_i64(out: &mut Vec<u8>, value: i64) {
    if value < 0 {
        out.push(b'-');
    }
    push_u64(out, value.unsigned_abs());
}

/// Formats an unsigned integer into a stack buffer (20 digits fit `u64::MAX`).
fn push_u64(out: &mut Vec<u8>, mut value: u64) {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[start..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(reply: &Reply) -> Vec<u8> {
        let mut out = Vec::new();
        encode_reply(reply, &mut out);
        out
    }

    #[test]
    fn simple_and_error() {
        assert_eq!(enc(&Reply::Simple("OK".into())), b"+OK\r\n");
        assert_eq!(enc(&Reply::Error("ERR unknown command".into())), b"-ERR unknown command\r\n");
    }

    #[test]
    fn line_breaks_in_lines_are_neutralised() {
        assert_eq!(enc(&Reply::Error("ERR a\r\nb".into())), b"-ERR a  b\r\n");
    }

    #[test]
    fn integers() {
        assert_eq!(enc(&Reply::Integer(0)), b":0\r\n");
        assert_eq!(enc(&Reply::Integer(42)), b":42\r\n");
        assert_eq!(enc(&Reply::Integer(-7)), b":-7\r\n");
        assert_eq!(enc(&Reply::Integer(i64::MIN)), b":-9223372036854775808\r\n");
        assert_eq!(enc(&Reply::Integer(i64::MAX)), b":9223372036854775807\r\n");
    }

    #[test]
    fn bulks() {
        assert_eq!(enc(&Reply::Bulk(None)), b"$-1\r\n");
        assert_eq!(enc(&Reply::Bulk(Some(Vec::new()))), b"$0\r\n\r\n");
        assert_eq!(enc(&Reply::Bulk(Some(b"a\r\n\0b".to_vec()))), b"$5\r\na\r\n\0b\r\n");
    }

    #[test]
    fn arrays() {
        assert_eq!(enc(&Reply::Array(None)), b"*-1\r\n");
        assert_eq!(enc(&Reply::Array(Some(Vec::new()))), b"*0\r\n");
        let nested = Reply::Array(Some(vec![
            Reply::Integer(1),
            Reply::Array(Some(vec![Reply::Bulk(Some(b"foo".to_vec())), Reply::Bulk(None)])),
            Reply::Simple("OK".into()),
        ]));
        assert_eq!(enc(&nested), b"*3\r\n:1\r\n*2\r\n$3\r\nfoo\r\n$-1\r\n+OK\r\n");
    }

    #[test]
    fn appends_to_existing_output() {
        let mut out = b"+A\r\n".to_vec();
        encode_reply(&Reply::Integer(5), &mut out);
        assert_eq!(out, b"+A\r\n:5\r\n");
    }
}
