//! Storage tokens: a slab of I/Os in flight, each slot stamped with a generation so a token
//! cannot be completed twice or forged.

use crate::io::IoToken;
use slab::Slab;

pub struct TokenTable<T> {
    slots: Slab<(u32, T)>,
    generation_next: u32,
}

impl<T> TokenTable<T> {
    pub fn new() -> TokenTable<T> {
        TokenTable { slots: Slab::new(), generation_next: 1 }
    }

    pub fn insert(&mut self, purpose: T) -> IoToken {
        let generation = self.generation_next;
        self.generation_next = self.generation_next.wrapping_add(1).max(1);
        let slot = self.slots.insert((generation, purpose));
        IoToken { slot: u32::try_from(slot).expect("fewer than 2^32 I/Os in flight"), generation }
    }

    /// Removes and returns the purpose of `token`, or `None` if it is not in flight.
    pub fn remove(&mut self, token: IoToken) -> Option<T> {
        let slot = token.slot as usize;
        match self.slots.get(slot) {
            Some((generation, _)) if *generation == token.generation => Some(self.slots.remove(slot).1),
            _ => None,
        }
    }

    /// The purposes of every I/O in flight.
    pub fn purposes(&self) -> impl Iterator<Item = &T> + '_ {
        self.slots.iter().map(|(_, (_, purpose))| purpose)
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }
}
