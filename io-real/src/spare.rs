//! Large buffers the engine has finished with (`Engine::poll_spare_buffer`), kept to return
//! the next large read's bytes in: a fresh multi-MiB allocation is fresh pages the kernel
//! zeroes on first touch, which was 43 % of a restart's CPU time (docs/benchmarks.md).

/// Buffers kept at most: recovery has a chunk and one read-ahead at a time.
const SPARES_MAX: usize = 4;

#[derive(Default)]
pub struct SpareBuffers {
    buffers: Vec<Vec<u8>>,
}

impl SpareBuffers {
    /// Keeps `buffer` if there is room; otherwise it is freed.
    pub fn give(&mut self, buffer: Vec<u8>) {
        if self.buffers.len() < SPARES_MAX {
            self.buffers.push(buffer);
        }
    }

    /// Frees every spare buffer.
    pub fn clear(&mut self) {
        self.buffers = Vec::new();
    }

    /// `bytes` in a spare buffer of about their size (at most twice: a large buffer is not
    /// spent on a small read), or in a new one.
    pub fn copy_of(&mut self, bytes: &[u8]) -> Vec<u8> {
        let fits = |buffer: &Vec<u8>| (bytes.len()..=bytes.len().saturating_mul(2)).contains(&buffer.capacity());
        let Some(index) = self.buffers.iter().position(fits) else { return bytes.to_vec() };
        let mut buffer = self.buffers.swap_remove(index);
        buffer.clear();
        buffer.extend_from_slice(bytes);
        buffer
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spare_of_about_the_size_is_reused_and_a_much_larger_one_is_not() {
        let mut spares = SpareBuffers::default();
        let large = Vec::with_capacity(1 << 20);
        let address = large.as_ptr();
        spares.give(large);
        assert_ne!(spares.copy_of(&[7; 1000]).as_ptr(), address, "a small read gets its own buffer");
        let reused = spares.copy_of(&[7; 600 << 10]);
        assert_eq!((reused.as_ptr(), reused.len()), (address, 600 << 10));
        assert!(reused.iter().all(|&byte| byte == 7));
        for _ in 0..10 {
            spares.give(Vec::with_capacity(1 << 20));
        }
        assert_eq!(spares.buffers.len(), SPARES_MAX, "bounded");
    }
}
