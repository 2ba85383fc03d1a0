//! Sans-I/O RESP2 codec: the connection layer feeds received bytes into a
//! [`Decoder`] and writes whatever [`encode_reply`] appended to its output
//! buffer. Nothing here touches sockets, threads or clocks, so every path is
//! testable with plain byte slices.

mod decoder;
mod encoder;
mod limits;
mod whole_frame;

pub use decoder::{Command, Decoder, Frame, ProtocolError};
pub use encoder::{encode_bulk, encode_command, encode_reply};
pub use limits::Limits;
pub use whole_frame::Arguments;
