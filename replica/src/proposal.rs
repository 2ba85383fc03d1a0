//! What a Raft entry carries: the commands of one client request (one command, or the
//! commands of one EXEC), as the argument lists the client sent. Every replica parses them
//! again when it applies the entry, with the same parser, so the entry is small and the
//! encoding never has to follow the engine's request types.
//!
//! Layout, little-endian: `u32` command count, then per command a `u32` argument count, then
//! per argument a `u32` length and its bytes.

/// One command as the client sent it: its name and arguments.
pub type Command = Vec<Vec<u8>>;

/// Commands in one entry at most (a limit on every loop that reads an entry).
pub const COMMANDS_PER_ENTRY_MAX: usize = 1024;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("entry data ends inside a length")]
    Truncated,
    #[error("entry data has {0} commands, above the limit")]
    TooManyCommands(usize),
    #[error("entry data has {0} bytes after its last command")]
    TrailingBytes(usize),
}

pub fn encode(commands: &[Command]) -> Vec<u8> {
    assert!(!commands.is_empty() && commands.len() <= COMMANDS_PER_ENTRY_MAX);
    let bytes: usize = commands.iter().flatten().map(|argument| argument.len() + 4).sum();
    let mut out = Vec::with_capacity(4 + 4 * commands.len() + bytes);
    out.extend_from_slice(&(commands.len() as u32).to_le_bytes());
    for command in commands {
        out.extend_from_slice(&(command.len() as u32).to_le_bytes());
        for argument in command {
            out.extend_from_slice(&(argument.len() as u32).to_le_bytes());
            out.extend_from_slice(argument);
        }
    }
    out
}

pub fn decode(data: &[u8]) -> Result<Vec<Command>, DecodeError> {
    let mut reader = Reader { data };
    let count = reader.length()?;
    if count > COMMANDS_PER_ENTRY_MAX {
        return Err(DecodeError::TooManyCommands(count));
    }
    let mut commands = Vec::with_capacity(count);
    for _ in 0..count {
        let arguments = reader.length()?;
        // Each argument takes at least its 4-byte length: a count beyond that is corrupt.
        if arguments > reader.data.len() / 4 {
            return Err(DecodeError::Truncated);
        }
        let mut command = Vec::with_capacity(arguments);
        for _ in 0..arguments {
            let length = reader.length()?;
            command.push(reader.take(length)?.to_vec());
        }
        commands.push(command);
    }
    match reader.data.len() {
        0 => Ok(commands),
        left => Err(DecodeError::TrailingBytes(left)),
    }
}

struct Reader<'a> {
    data: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, length: usize) -> Result<&'a [u8], DecodeError> {
        if self.data.len() < length {
            return Err(DecodeError::Truncated);
        }
        let (taken, rest) = self.data.split_at(length);
        self.data = rest;
        Ok(taken)
    }

    fn length(&mut self) -> Result<usize, DecodeError> {
        let bytes = self.take(4)?;
        Ok(u32::from_le_bytes(bytes.try_into().expect("four bytes")) as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_every_truncation_is_refused() {
        let commands = vec![
            vec![b"SET".to_vec(), b"k".to_vec(), b"v".to_vec()],
            vec![b"APPEND".to_vec(), b"".to_vec(), b"\r\n".to_vec()],
        ];
        let data = encode(&commands);
        assert_eq!(decode(&data), Ok(commands));
        for length in 0..data.len() {
            assert!(decode(&data[..length]).is_err(), "{length} bytes decoded");
        }
        let mut longer = data.clone();
        longer.push(0);
        assert_eq!(decode(&longer), Err(DecodeError::TrailingBytes(1)));
    }
}
