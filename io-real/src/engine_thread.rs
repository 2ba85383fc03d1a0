//! The loop a [`crate::Db`]'s engine thread runs: take requests from the channel, run the driver,
//! deliver replies. It blocks on the channel only when no I/O is pending; otherwise it blocks on
//! the driver, so a request that arrives meanwhile waits at most one I/O completion.

use std::collections::HashMap;
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};

use futures::channel::oneshot;
use quill_core::{Reply, Request};

use std::sync::Arc;

use crate::read_view::ReadView;
use crate::runner::EngineRunner;
use crate::DriverError;

pub enum Message {
    Request(Request, oneshot::Sender<Reply>),
    Close,
}

/// Messages taken from the channel per loop turn at most, so completions keep flowing.
const MESSAGES_PER_TURN_MAX: usize = 4096;

struct Clients {
    /// Each request runs as its own engine client; its reply goes to this sender.
    waiting: HashMap<u64, oneshot::Sender<Reply>>,
    client_next: u64,
    /// The published cache that callers read on their own threads (see `read_view.rs`).
    view: Option<Arc<ReadView>>,
}

/// Runs until closed (or every `Db` handle is gone) and every request in flight is answered.
pub fn engine_thread(
    mut runner: EngineRunner,
    receiver: Receiver<Message>,
    view: Option<Arc<ReadView>>,
) -> Result<(), DriverError> {
    let mut clients = Clients { waiting: HashMap::new(), client_next: 0, view };
    let mut closing = false;
    loop {
        if !closing {
            closing = take_messages(&mut runner, &receiver, &mut clients);
        }
        deliver_replies(&mut runner, &mut clients);
        if closing && clients.waiting.is_empty() && runner.io_pending() == 0 {
            // A clean shutdown: the next open reads a checkpoint instead of the whole log.
            return runner.checkpoint_and_wait();
        }
        if runner.io_pending() > 0 {
            runner.turn(true)?;
            deliver_replies(&mut runner, &mut clients);
        }
    }
}

/// Submits waiting messages; blocks for the first only if nothing else can wake the loop.
/// Returns whether the handle asked to close (or is gone).
fn take_messages(runner: &mut EngineRunner, receiver: &Receiver<Message>, clients: &mut Clients) -> bool {
    if runner.io_pending() == 0 {
        // Nothing in flight: wait for a message, or until the engine's next timer (a key's
        // expiry time), after which the loop ticks it.
        let message = match runner.wake_in() {
            Some(wait) => match receiver.recv_timeout(wait) {
                Ok(message) => Some(message),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => return true,
            },
            None => Some(match receiver.recv() {
                Ok(message) => message,
                Err(_) => return true,
            }),
        };
        if let Some(message) = message {
            if handle(runner, message, clients) {
                return true;
            }
        }
    }
    for _ in 0..MESSAGES_PER_TURN_MAX {
        match receiver.try_recv() {
            Ok(message) => {
                if handle(runner, message, clients) {
                    return true;
                }
            }
            Err(TryRecvError::Empty) => return false,
            Err(TryRecvError::Disconnected) => return true,
        }
    }
    false
}

fn handle(runner: &mut EngineRunner, message: Message, clients: &mut Clients) -> bool {
    match message {
        Message::Request(request, reply_sender) => {
            let client = clients.client_next;
            clients.client_next += 1;
            clients.waiting.insert(client, reply_sender);
            runner.submit(client, request);
            false
        }
        Message::Close => true,
    }
}

fn deliver_replies(runner: &mut EngineRunner, clients: &mut Clients) {
    // First the cache changes, then the replies that follow them (linearizability).
    if let Some(view) = &clients.view {
        runner.publish_cache(view);
    }
    while let Some((client, reply)) = runner.poll_reply() {
        if let Some(reply_sender) = clients.waiting.remove(&client) {
            // The caller may have dropped its future; the request ran all the same.
            let _ = reply_sender.send(reply);
        }
        // One request per client: forget the client so the engine frees its state.
        runner.disconnect(client);
    }
}
