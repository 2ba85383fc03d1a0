//! A perfect memory disk for the replica's tests: every I/O completes at once, nothing is lost.

use quill_core::{IoCompletion, IoKind, IoRequest};

/// Performs `request` on `disk` and returns its completion.
pub fn perform(disk: &mut [u8], request: IoRequest) -> IoCompletion {
    let result = match request.kind {
        IoKind::Read { offset_bytes, length_bytes } => {
            Ok(disk[offset_bytes as usize..][..length_bytes as usize].to_vec())
        }
        IoKind::Write { offset_bytes, data } | IoKind::WriteDurable { offset_bytes, data } => {
            disk[offset_bytes as usize..][..data.len()].copy_from_slice(&data);
            Ok(Vec::new())
        }
        IoKind::Sync => Ok(Vec::new()),
    };
    IoCompletion { token: request.token, result }
}
