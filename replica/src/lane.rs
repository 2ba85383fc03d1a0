//! A lane: one internal client of an engine. Its requests go in the order they were pushed and
//! their replies come back in that order (the engine answers a client in order); at most
//! `limit` are in the engine at once, since the engine refuses a client past its pipeline limit.

use std::collections::VecDeque;

use quill_core::engine::ClientId;
use quill_core::{Engine, Request};

pub struct Lane<T> {
    pub client: ClientId,
    limit: usize,
    in_engine: VecDeque<T>,
    waiting: VecDeque<(T, Request)>,
}

impl<T> Lane<T> {
    pub fn new(client: ClientId, limit: usize) -> Lane<T> {
        assert!(limit > 0);
        Lane { client, limit, in_engine: VecDeque::new(), waiting: VecDeque::new() }
    }

    pub fn push(&mut self, engine: &mut Engine, tag: T, request: Request) {
        self.waiting.push_back((tag, request));
        self.feed(engine);
    }

    /// The reply to the oldest request in the engine has come: its tag. `None`: a reply nobody
    /// asked for (a bug in the engine's per-client order).
    pub fn on_reply(&mut self, engine: &mut Engine) -> Option<T> {
        let tag = self.in_engine.pop_front()?;
        self.feed(engine);
        Some(tag)
    }

    fn feed(&mut self, engine: &mut Engine) {
        while self.in_engine.len() < self.limit {
            let Some((tag, request)) = self.waiting.pop_front() else { break };
            self.in_engine.push_back(tag);
            engine.submit(self.client, request);
        }
    }
}
