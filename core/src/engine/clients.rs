//! The client slots: per-client queues of commands, the clients waiting to retry, the keys a
//! read-modify-write holds, and the replies ready for the driver. A client's commands run in
//! the order sent and are answered in that order; a command blocked on I/O holds back only its
//! own client. This subsystem stores and releases; running commands is the engine's (execute/).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use super::reasons::ReadOnlyReason;
use super::ClientId;
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
    /// A transaction (EXEC) waiting for its keys' values from disk; `locked` are the keys it
    /// locked for those reads, `failure` the first read that failed.
    ExecReading {
        commands: Vec<Request>,
        /// One command run this way for its view (RENAME, COPY), not an EXEC: its own reply,
        /// and WATCH plays no part.
        single: bool,
        values: std::collections::BTreeMap<Vec<u8>, Option<Arc<[u8]>>>,
        locked: Vec<Vec<u8>>,
        reads_outstanding: u32,
        failure: Option<Reply>,
        /// The newest batch whose state the view took from memory: if it fails while the
        /// reads are out, the view saw state that never became durable.
        view_sequence: u64,
    },
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
            SlotState::ExecReading { reads_outstanding, .. } => format!("exec reading ({reads_outstanding} reads)"),
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

/// Every client's slots, and what waits on them.
#[derive(Default)]
pub struct ClientTable {
    clients: BTreeMap<ClientId, Client>,
    /// Clients whose front command could not run yet (a locked key, a full batch, no space).
    stalled: BTreeSet<ClientId>,
    /// Keys whose read-modify-write waits on a read: nothing else touches them meanwhile.
    locked_keys: BTreeSet<Box<[u8]>>,
    /// Replies released in order, for `Engine::poll_reply`.
    replies_out: VecDeque<(ClientId, Reply)>,
    /// Clients whose commands are being run now: a write seals a batch, which wakes stalled
    /// clients, which may include the one running (seed 5753). It must not run twice at once.
    running: BTreeSet<ClientId>,
}

/// The next command of a client to execute.
pub struct NextCommand {
    pub slot_id: u64,
    pub request: Request,
}

impl ClientTable {
    /// Queues a request, or its refusal when the client's pipeline is full.
    pub fn enqueue(&mut self, client_id: ClientId, request: Request, pipeline_max: usize) {
        let client = self.clients.entry(client_id).or_default();
        let slot = if client.slots.len() >= pipeline_max {
            Slot { state: SlotState::Done(Reply::error(PIPELINE_FULL)), wait_sequence: 0, write_failed: false }
        } else {
            Slot { state: SlotState::Queued(request), wait_sequence: 0, write_failed: false }
        };
        client.slots.push_back(slot);
    }

    /// Marks the client as running; false if it already is (the caller then leaves it to the
    /// run under way, which goes on to its next command).
    pub fn enter(&mut self, client_id: ClientId) -> bool {
        self.running.insert(client_id)
    }

    pub fn leave(&mut self, client_id: ClientId) {
        let was_running = self.running.remove(&client_id);
        assert!(was_running, "a client leaves only a run it entered");
    }

    /// Takes the client's next queued command, skipping slots refused at submit. `None`: the
    /// client is blocked, or has nothing left to execute.
    pub fn next_command(&mut self, client_id: ClientId) -> Option<NextCommand> {
        let client = self.clients.get_mut(&client_id)?;
        let slots = client.slots.len();
        for _ in 0..slots {
            if client.blocked || client.executed >= client.slots.len() {
                return None;
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
            return Some(NextCommand { slot_id, request });
        }
        None
    }

    /// The command taken by `next_command` ran: the next one may go.
    pub fn executed(&mut self, client_id: ClientId, blocked: bool) {
        let client = self.client_mut(client_id);
        client.executed += 1;
        client.blocked = blocked;
        debug_assert!(client.executed <= client.slots.len());
    }

    /// The read-modify-write that blocks the client, if its value is known and it waits only
    /// for room in the batch.
    pub fn take_ready_read_modify_write(&mut self, client_id: ClientId) -> Option<(u64, Request, Option<Arc<[u8]>>)> {
        let client = self.clients.get_mut(&client_id)?;
        if !client.blocked {
            return None;
        }
        let slot_id = client.first_slot_id + client.executed as u64 - 1;
        let slot = client.slot_mut(slot_id);
        if !matches!(slot.state, SlotState::ReadModifyWriteReady(..)) {
            return None;
        }
        let SlotState::ReadModifyWriteReady(request, current) =
            std::mem::replace(&mut slot.state, SlotState::Done(Reply::ok()))
        else {
            unreachable!("checked above");
        };
        Some((slot_id, request, current))
    }

    /// The blocked client's last executed command, put back in its slot as not executed (an
    /// EXEC whose values arrived while the batch had no room: it runs again from the start).
    pub fn unexecute_blocked(&mut self, client_id: ClientId, slot_id: u64) {
        let client = self.client_mut(client_id);
        assert!(client.blocked && client.executed > 0, "only a blocked command is put back");
        assert_eq!(slot_id, client.first_slot_id + client.executed as u64 - 1, "the last executed slot");
        assert!(matches!(client.slot_mut(slot_id).state, SlotState::Queued(_)), "put back as queued");
        client.executed -= 1;
        client.blocked = false;
    }

    pub fn is_blocked(&self, client_id: ClientId) -> bool {
        self.clients.get(&client_id).is_some_and(|client| client.blocked)
    }

    /// A read-modify-write appended its record (or failed): its key and its client go on.
    pub fn unblock(&mut self, client_id: ClientId, key: &[u8]) {
        self.locked_keys.remove(key);
        if let Some(client) = self.clients.get_mut(&client_id) {
            client.blocked = false;
        }
    }

    pub fn lock_key(&mut self, key: &[u8]) {
        let inserted = self.locked_keys.insert(key.into());
        assert!(inserted, "a locked key is never locked twice");
    }

    /// Opens a key without unblocking its client (only a planted bug does this).
    pub fn unlock_key(&mut self, key: &[u8]) {
        self.locked_keys.remove(key);
    }

    pub fn any_key_locked(&self) -> bool {
        !self.locked_keys.is_empty()
    }

    pub fn is_locked(&self, key: &[u8]) -> bool {
        self.locked_keys.contains(key)
    }

    pub fn slot_mut(&mut self, client_id: ClientId, slot_id: u64) -> &mut Slot {
        self.client_mut(client_id).slot_mut(slot_id)
    }

    fn client_mut(&mut self, client_id: ClientId) -> &mut Client {
        self.clients.get_mut(&client_id).expect("a client with a command in its slots exists")
    }

    /// The slot's reply is known; it goes out once batch `wait_sequence` is durable.
    pub fn finish(&mut self, client_id: ClientId, slot_id: u64, reply: Reply, wait_sequence: u64) -> Executed {
        let slot = self.slot_mut(client_id, slot_id);
        slot.state = SlotState::Done(reply);
        slot.wait_sequence = slot.wait_sequence.max(wait_sequence);
        Executed::Ran
    }

    /// The command saw state of a batch that failed: its reply is "not durable", as for a
    /// command waiting on that batch when it failed (`fail_waiting`).
    pub fn finish_not_durable(&mut self, client_id: ClientId, slot_id: u64) -> Executed {
        let slot = self.slot_mut(client_id, slot_id);
        slot.state = SlotState::Done(Reply::ok()); // replaced at release
        slot.write_failed = true;
        Executed::Ran
    }

    /// The command cannot run yet: it goes back to its slot as not executed.
    pub fn stall(&mut self, client_id: ClientId, slot_id: u64, request: Request) -> Executed {
        self.slot_mut(client_id, slot_id).state = SlotState::Queued(request);
        Executed::Stalled
    }

    pub fn mark_stalled(&mut self, client_id: ClientId) {
        self.stalled.insert(client_id);
    }

    /// The stalled clients, in id order, each to be retried once.
    pub fn take_stalled(&mut self) -> BTreeSet<ClientId> {
        std::mem::take(&mut self.stalled)
    }

    pub fn ids(&self) -> Vec<ClientId> {
        self.clients.keys().copied().collect()
    }

    /// Fills part `index` of a GET or MGET waiting on reads; the reply is done with the last.
    pub fn fill_part(&mut self, client_id: ClientId, slot_id: u64, index: usize, value: Result<Arc<[u8]>, Reply>) {
        let slot = self.slot_mut(client_id, slot_id);
        let SlotState::Reading { parts, reads_outstanding, multi } = &mut slot.state else {
            unreachable!("a part read completes into a reading slot");
        };
        assert!(*reads_outstanding > 0 && index < parts.len(), "a part read is outstanding");
        parts[index] = match value {
            Ok(value) => Reply::Bulk(Some(value.to_vec())),
            Err(error) => error,
        };
        *reads_outstanding -= 1;
        if *reads_outstanding == 0 {
            let mut parts = std::mem::take(parts);
            let reply = match parts.iter().position(Reply::is_error) {
                Some(failed) => parts.swap_remove(failed),
                None if *multi => Reply::Array(Some(parts)),
                None => parts.pop().expect("one part"),
            };
            slot.state = SlotState::Done(reply);
        }
    }

    /// Sends the client's finished replies from the front of its queue, in order: those whose
    /// batch is durable (`durable`: the highest durable sequence), and those whose batch
    /// failed, as errors naming `read_only`.
    pub fn release(&mut self, client_id: ClientId, durable: u64, read_only: Option<&ReadOnlyReason>) {
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
            let reply = if slot.write_failed { write_failed_reply(read_only) } else { reply };
            if !client.disconnected {
                self.replies_out.push_back((client_id, reply));
            }
        }
        if client.disconnected && client.slots.is_empty() {
            self.clients.remove(&client_id);
        }
    }

    pub fn release_all(&mut self, durable: u64, read_only: Option<&ReadOnlyReason>) {
        for id in self.ids() {
            self.release(id, durable, read_only);
        }
    }

    /// Marks every executed slot that waits on a batch that will never be durable (any after
    /// `durable`).
    pub fn fail_waiting(&mut self, durable: u64) {
        for client in self.clients.values_mut() {
            for slot in client.slots.iter_mut().take(client.executed) {
                if slot.wait_sequence > durable {
                    slot.write_failed = true;
                }
            }
        }
    }

    /// The client has gone: its queued commands still run, their replies are dropped.
    pub fn disconnect(&mut self, client_id: ClientId) {
        if let Some(client) = self.clients.get_mut(&client_id) {
            client.disconnected = true;
        }
    }

    pub fn poll_reply(&mut self) -> Option<(ClientId, Reply)> {
        self.replies_out.pop_front()
    }

    /// Commands the client has submitted that have not been answered yet.
    pub fn backlog(&self, client_id: ClientId) -> usize {
        self.clients.get(&client_id).map_or(0, |client| client.slots.len())
    }

    /// A summary for liveness reports: the counts, and the first client's front slot.
    pub fn debug_state(&self) -> (String, String) {
        let queued: usize = self.clients.values().map(|client| client.slots.len()).sum();
        let blocked = self.clients.values().filter(|client| client.blocked).count();
        let front = self.clients.iter().find_map(|(id, client)| {
            let slot = client.slots.front()?;
            Some(format!(
                "client {id} front slot: {}, waits on batch {}, executed {}",
                slot.state.describe(),
                slot.wait_sequence,
                client.executed
            ))
        });
        let counts = format!(
            "{} clients, {queued} commands queued, {blocked} blocked, {} stalled, {} locked keys",
            self.clients.len(),
            self.stalled.len(),
            self.locked_keys.len(),
        );
        (counts, front.unwrap_or_default())
    }
}

fn write_failed_reply(reason: Option<&ReadOnlyReason>) -> Reply {
    match reason {
        Some(reason) => Reply::error(format!("ERR not durable: {reason}")),
        None => Reply::error("ERR not durable: a write failed"),
    }
}
