//! Running commands: the engine's own work, and one of the few `impl Engine` blocks outside
//! engine/mod.rs. Executing a command coordinates subsystems that never call one another: it
//! takes the client's next command from the client slots, looks keys up in the keyspace,
//! appends records to the log, queues reads with the read scheduler, and puts the reply back
//! in the slot. Replies leave the slots (`release_replies`) once their batch is durable.

mod active_expiry;
mod commands;
mod expiry;
mod iteration;
mod reads;
mod transaction;

use super::clients::Executed;
use super::{ClientId, Engine, Phase};
use crate::command::Reply;

impl Engine {
    /// Executes the client's queued commands in order until one blocks or stalls. Not
    /// re-entrant for one client: a run reached from inside its own run (a seal waking the
    /// stalled clients) leaves the work to the run under way.
    pub(super) fn run_client(&mut self, client_id: ClientId) {
        if !self.clients.enter(client_id) {
            return;
        }
        self.run_client_entered(client_id);
        self.clients.leave(client_id);
    }

    fn run_client_entered(&mut self, client_id: ClientId) {
        let open_error = match &self.phase {
            Phase::Ready => None,
            Phase::Failed(error) => Some(format!("ERR QuillKV could not open its volume: {error}")),
            Phase::Formatting | Phase::Recovering(_) => return,
        };
        if open_error.is_none() && !self.retry_ready_read_modify_write(client_id) {
            return;
        }
        // Each turn executes one slot (or stops): bounded by the client's backlog.
        for _ in 0..self.clients.backlog(client_id) {
            let Some(next) = self.clients.next_command(client_id) else { break };
            if let Some(text) = &open_error {
                self.clients.finish(client_id, next.slot_id, Reply::error(text.clone()), 0);
                self.clients.executed(client_id, false);
                continue;
            }
            match self.execute(client_id, next.slot_id, next.request) {
                Executed::Ran => self.clients.executed(client_id, false),
                Executed::Blocked => {
                    self.clients.executed(client_id, true);
                    break;
                }
                Executed::Stalled => {
                    self.clients.mark_stalled(client_id);
                    break;
                }
            }
        }
        self.release_replies(client_id);
    }

    /// A blocked client whose read-modify-write has its value but waited for batch room tries
    /// again. Returns whether the client may run further commands.
    fn retry_ready_read_modify_write(&mut self, client_id: ClientId) -> bool {
        if !self.clients.is_blocked(client_id) {
            return true;
        }
        let Some((slot_id, request, current)) = self.clients.take_ready_read_modify_write(client_id) else {
            return false;
        };
        let key = commands::request_key(&request).to_vec();
        match self.finish_read_modify_write(client_id, slot_id, request, current) {
            Executed::Stalled => {
                self.clients.mark_stalled(client_id);
                false
            }
            Executed::Ran | Executed::Blocked => {
                self.clients.unblock(client_id, &key);
                self.wake_stalled();
                true
            }
        }
    }

    pub(super) fn run_all_clients(&mut self) {
        for id in self.clients.ids() {
            self.run_client(id);
        }
    }

    /// Retries every stalled client once, in id order.
    pub(super) fn wake_stalled(&mut self) {
        for id in self.clients.take_stalled() {
            self.run_client(id);
        }
    }

    /// Sends the client's finished replies whose batch is durable (or failed).
    pub(super) fn release_replies(&mut self, client_id: ClientId) {
        let durable = self.log.durable_sequence;
        self.clients.release(client_id, durable, self.shared.read_only.as_ref());
    }

    pub(super) fn release_all_replies(&mut self) {
        let durable = self.log.durable_sequence;
        self.clients.release_all(durable, self.shared.read_only.as_ref());
    }
}
