//! Replies to clients, released in the order each client sent its requests: a write waits for
//! its entry to commit and apply, a read for its ReadIndex, so they finish out of order.

use std::collections::{BTreeMap, VecDeque};

use quill_core::engine::ClientId;
use quill_core::Reply;

#[derive(Default)]
struct ClientOrder {
    assigned_next: u64,
    released_next: u64,
    parked: BTreeMap<u64, Reply>,
}

#[derive(Default)]
pub struct Outbox {
    clients: BTreeMap<ClientId, ClientOrder>,
    ready: VecDeque<(ClientId, Reply)>,
}

/// Where a reply goes: the client and the place of its request among the client's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplyTo {
    pub client: ClientId,
    pub sequence: u64,
}

impl Outbox {
    pub fn assign(&mut self, client: ClientId) -> ReplyTo {
        let order = self.clients.entry(client).or_default();
        let sequence = order.assigned_next;
        order.assigned_next += 1;
        ReplyTo { client, sequence }
    }

    /// A reply for a client that has gone is dropped.
    pub fn reply(&mut self, to: ReplyTo, reply: Reply) {
        let Some(order) = self.clients.get_mut(&to.client) else { return };
        assert!(to.sequence >= order.released_next && to.sequence < order.assigned_next, "a reply twice");
        let fresh = order.parked.insert(to.sequence, reply).is_none();
        assert!(fresh, "a reply twice");
        while let Some(reply) = order.parked.remove(&order.released_next) {
            order.released_next += 1;
            self.ready.push_back((to.client, reply));
        }
    }

    pub fn disconnect(&mut self, client: ClientId) {
        self.clients.remove(&client);
    }

    pub fn poll(&mut self) -> Option<(ClientId, Reply)> {
        self.ready.pop_front()
    }
}
