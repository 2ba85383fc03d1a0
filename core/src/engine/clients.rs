//! Per-client queues. A client's commands run in the order sent and are answered in that order;
//! a command blocked on I/O holds back only its own client.

use std::collections::VecDeque;
use std::sync::Arc;

use super::{ClientId, Engine, Phase};
use crate::command::{Reply, Request};

/// Where one command stands.
pub enum SlotState {
    /// Not executed yet.
    Queued(Request),
    /// Executed; waiting for `reads_outstanding` value reads to fill `parts`.
    Reading { parts: Vec<Reply>, reads_outstanding: u32, multi: bool },
    /// A read-modify-write waiting for the key's current value from disk.
    ReadModifyWrite(Request),
    /// A read-modify-write whose current value is known, waiting for room in the batch.
    ReadModifyWriteReady(Request, Option<Arc<[u8]>>),
    /// The reply, to be sent once batch `wait_sequence` is durable.
    Done(Reply),
}

impl SlotState {
    pub fn describe(&self) -> String {
        match self {
            SlotState::Queued(request) => format!("queued {}", request.name()),
            SlotState::Reading { reads_outstanding, .. } => format!("reading ({reads_outstanding} reads)"),
            SlotState::ReadModifyWrite(request) => format!("read-modify-write {}", request.name()),
            SlotState::ReadModifyWriteReady(request, _) => {
                format!("read-modify-write {} (value known)", request.name())
            }
            SlotState::Done(reply) => format!("done {reply:?}"),
        }
    }
}

pub struct Slot {
    pub state: SlotState,
    /// The batch that must be durable before this reply may go out (0: none).
    pub wait_sequence: u64,
    /// Set when the batch this slot waited on failed; the reply becomes an error.
    pub write_failed: bool,
}

#[derive(Default)]
pub struct Client {
    pub slots: VecDeque<Slot>,
    /// The id of `slots[0]`; ids let I/O completions find their slot after the front moves.
    pub first_slot_id: u64,
    /// Slots before this index have executed.
    pub executed: usize,
    /// A read-modify-write is waiting on disk: later commands must wait.
    pub blocked: bool,
    pub disconnected: bool,
}

impl Client {
    pub fn slot_mut(&mut self, slot_id: u64) -> &mut Slot {
        let index = usize::try_from(slot_id - self.first_slot_id).expect("slot index fits");
        &mut self.slots[index]
    }
}

/// What executing one command did.
pub enum Executed {
    /// Ran (its reply may still wait on reads or durability).
    Ran,
    /// Waits on a read of the key's current value; later commands of this client wait too.
    Blocked,
    /// Cannot run yet (a locked key, a full batch); retried when that changes.
    Stalled,
}

const PIPELINE_FULL: &str = "ERR too many commands in flight for this client";

impl Engine {
    pub(super) fn enqueue_request(&mut self, client_id: ClientId, request: Request) {
        let pipeline_max = self.shared.config.client_pipeline_max;
        let client = self.clients.entry(client_id).or_default();
        let slot = if client.slots.len() >= pipeline_max {
            Slot { state: SlotState::Done(Reply::error(PIPELINE_FULL)), wait_sequence: 0, write_failed: false }
        } else {
            Slot { state: SlotState::Queued(request), wait_sequence: 0, write_failed: false }
        };
        client.slots.push_back(slot);
    }

    /// Executes the client's queued commands in order until one blocks or stalls.
    pub(super) fn run_client(&mut self, client_id: ClientId) {
        let open_error = match &self.phase {
            Phase::Ready => None,
            Phase::Failed(error) => Some(format!("ERR QuillKV could not open its volume: {error}")),
            Phase::Formatting | Phase::Recovering(_) => return,
        };
        if open_error.is_none() && !self.retry_ready_read_modify_write(client_id) {
            return;
        }
        let slot_count = self.clients.get(&client_id).map_or(0, |client| client.slots.len());
        for _ in 0..slot_count {
            let Some(client) = self.clients.get_mut(&client_id) else { return };
            if client.blocked || client.executed >= client.slots.len() {
                break;
            }
            let slot_id = client.first_slot_id + client.executed as u64;
            let slot = &mut client.slots[client.executed];
            if !matches!(slot.state, SlotState::Queued(_)) {
                client.executed += 1; // refused at submit (pipeline full): its reply is set
                continue;
            }
            let SlotState::Queued(request) = std::mem::replace(&mut slot.state, SlotState::Done(Reply::ok())) else {
                unreachable!("checked above");
            };
            if let Some(text) = &open_error {
                slot.state = SlotState::Done(Reply::error(text.clone()));
                client.executed += 1;
                continue;
            }
            match self.execute(client_id, slot_id, request) {
                Executed::Ran => self.clients.get_mut(&client_id).expect("client exists").executed += 1,
                Executed::Blocked => {
                    let client = self.clients.get_mut(&client_id).expect("client exists");
                    client.executed += 1;
                    client.blocked = true;
                    break;
                }
                Executed::Stalled => {
                    self.stalled.insert(client_id);
                    break;
                }
            }
        }
        self.release_replies(client_id);
    }

    /// A blocked client whose read-modify-write has its value but waited for batch room tries
    /// again. Returns whether the client may run further commands.
    fn retry_ready_read_modify_write(&mut self, client_id: ClientId) -> bool {
        let Some(client) = self.clients.get_mut(&client_id) else { return false };
        if !client.blocked {
            return true;
        }
        let slot_id = client.first_slot_id + client.executed as u64 - 1;
        let slot = client.slot_mut(slot_id);
        if !matches!(slot.state, SlotState::ReadModifyWriteReady(..)) {
            return false;
        }
        let SlotState::ReadModifyWriteReady(request, current) =
            std::mem::replace(&mut slot.state, SlotState::Done(Reply::ok()))
        else {
            unreachable!("checked above");
        };
        let key = super::execute::request_key(&request).to_vec();
        match self.finish_read_modify_write(client_id, slot_id, request, current) {
            Executed::Stalled => {
                self.stalled.insert(client_id);
                false
            }
            Executed::Ran | Executed::Blocked => {
                self.locked_keys.remove(key.as_slice());
                self.clients.get_mut(&client_id).expect("client exists").blocked = false;
                self.wake_stalled();
                true
            }
        }
    }

    pub(super) fn run_all_clients(&mut self) {
        let ids: Vec<ClientId> = self.clients.keys().copied().collect();
        for id in ids {
            self.run_client(id);
        }
    }

    /// Retries every stalled client once, in id order.
    pub(super) fn wake_stalled(&mut self) {
        let stalled = std::mem::take(&mut self.stalled);
        for id in stalled {
            self.run_client(id);
        }
    }

    /// Sends the client's finished replies from the front of its queue, in order.
    pub(super) fn release_replies(&mut self, client_id: ClientId) {
        let durable = self.log.durable_sequence;
        let Some(client) = self.clients.get_mut(&client_id) else { return };
        while let Some(slot) = client.slots.front() {
            let ready =
                matches!(slot.state, SlotState::Done(_)) && (slot.wait_sequence <= durable || slot.write_failed);
            if !ready || client.executed == 0 {
                break;
            }
            let slot = client.slots.pop_front().expect("front exists");
            client.first_slot_id += 1;
            client.executed -= 1;
            let SlotState::Done(reply) = slot.state else { unreachable!("checked above") };
            // An error computed from state that never became durable (INCRBY on a value whose
            // SET then failed) would reveal that state: it becomes "not durable" too.
            let reply = if slot.write_failed { write_failed_reply(&self.shared.read_only) } else { reply };
            if !client.disconnected {
                self.replies_out.push_back((client_id, reply));
            }
        }
        if client.disconnected && client.slots.is_empty() {
            self.clients.remove(&client_id);
        }
    }

    pub(super) fn release_all_replies(&mut self) {
        let ids: Vec<ClientId> = self.clients.keys().copied().collect();
        for id in ids {
            self.release_replies(id);
        }
    }

    /// Marks every executed slot that waits on a batch that will never be durable.
    pub(super) fn fail_waiting_slots(&mut self) {
        let durable = self.log.durable_sequence;
        for client in self.clients.values_mut() {
            for slot in client.slots.iter_mut().take(client.executed) {
                if slot.wait_sequence > durable {
                    slot.write_failed = true;
                }
            }
        }
    }
}

fn write_failed_reply(reason: &Option<String>) -> Reply {
    let reason = reason.as_deref().unwrap_or("a write failed");
    Reply::error(format!("ERR not durable: {reason}"))
}
