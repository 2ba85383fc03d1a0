//! Block-aligned buffers for O_DIRECT, and a pool that recycles them.
//!
//! O_DIRECT needs the buffer address, the offset and the length aligned to the device's logical
//! block; 4096 covers both 512-byte and 4096-byte devices. The engine hands out and takes plain
//! `Vec<u8>`s, so drivers copy between them and these buffers.

use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::collections::BTreeMap;
use std::ptr::NonNull;

pub const ALIGNMENT_BYTES: usize = quill_core::BLOCK_BYTES;

/// A heap buffer whose address and length are multiples of [`ALIGNMENT_BYTES`].
pub struct AlignedBuffer {
    pointer: NonNull<u8>,
    length_bytes: usize,
}

// The buffer owns its allocation exclusively, like a `Vec<u8>`.
unsafe impl Send for AlignedBuffer {}

impl AlignedBuffer {
    /// A zeroed buffer of `length_bytes` rounded up to whole blocks (at least one).
    pub fn new(length_bytes: usize) -> AlignedBuffer {
        let length_bytes = length_bytes.max(1).div_ceil(ALIGNMENT_BYTES) * ALIGNMENT_BYTES;
        let layout = Self::layout(length_bytes);
        // SAFETY: the layout has a non-zero size.
        let raw = unsafe { alloc_zeroed(layout) };
        let pointer = NonNull::new(raw).unwrap_or_else(|| std::alloc::handle_alloc_error(layout));
        AlignedBuffer { pointer, length_bytes }
    }

    fn layout(length_bytes: usize) -> Layout {
        Layout::from_size_align(length_bytes, ALIGNMENT_BYTES).expect("a block multiple is a valid layout")
    }

    pub fn len(&self) -> usize {
        self.length_bytes
    }

    pub fn is_empty(&self) -> bool {
        self.length_bytes == 0
    }

    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: the allocation is `length_bytes` long, initialised (zeroed) and owned by self.
        unsafe { std::slice::from_raw_parts(self.pointer.as_ptr(), self.length_bytes) }
    }

    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as above, and `&mut self` makes the access exclusive.
        unsafe { std::slice::from_raw_parts_mut(self.pointer.as_ptr(), self.length_bytes) }
    }

    pub fn as_mut_ptr(&mut self) -> *mut u8 {
        self.pointer.as_ptr()
    }
}

impl Drop for AlignedBuffer {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this very layout.
        unsafe { dealloc(self.pointer.as_ptr(), Self::layout(self.length_bytes)) }
    }
}

/// Free buffers by size, so the hot path does not allocate. Bounded: beyond `retained_bytes_max`
/// returned buffers are freed.
pub struct BufferPool {
    free: BTreeMap<usize, Vec<AlignedBuffer>>,
    retained_bytes: usize,
    retained_bytes_max: usize,
}

impl BufferPool {
    pub fn new(retained_bytes_max: usize) -> BufferPool {
        BufferPool { free: BTreeMap::new(), retained_bytes: 0, retained_bytes_max }
    }

    /// A buffer of exactly `length_bytes` rounded up to whole blocks. Its content is unspecified
    /// (a recycled buffer keeps old bytes): callers overwrite or read into all of it.
    pub fn take(&mut self, length_bytes: usize) -> AlignedBuffer {
        let rounded = length_bytes.max(1).div_ceil(ALIGNMENT_BYTES) * ALIGNMENT_BYTES;
        if let Some(buffers) = self.free.get_mut(&rounded) {
            if let Some(buffer) = buffers.pop() {
                self.retained_bytes -= rounded;
                return buffer;
            }
        }
        AlignedBuffer::new(rounded)
    }

    pub fn give(&mut self, buffer: AlignedBuffer) {
        if self.retained_bytes + buffer.len() > self.retained_bytes_max {
            return;
        }
        self.retained_bytes += buffer.len();
        self.free.entry(buffer.len()).or_default().push(buffer);
    }

    /// A buffer holding a copy of `data`, zero-padded to whole blocks.
    pub fn take_copy_of(&mut self, data: &[u8]) -> AlignedBuffer {
        let mut buffer = self.take(data.len());
        let slice = buffer.as_mut_slice();
        slice[..data.len()].copy_from_slice(data);
        slice[data.len()..].fill(0);
        buffer
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_aligned_and_recycled() {
        let mut pool = BufferPool::new(1 << 20);
        let mut buffer = pool.take(5000);
        assert_eq!(buffer.len(), 8192);
        assert_eq!(buffer.as_mut_ptr() as usize % ALIGNMENT_BYTES, 0);
        let address = buffer.as_mut_ptr() as usize;
        pool.give(buffer);
        let mut again = pool.take(8192);
        assert_eq!(again.as_mut_ptr() as usize, address);
        let copy = pool.take_copy_of(&[7u8; 10]);
        assert_eq!(&copy.as_slice()[..11], &[7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 0]);
    }
}
