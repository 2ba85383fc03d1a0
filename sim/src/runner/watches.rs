//! WATCH: a client watches a register key, and once WATCH is answered sends `EXEC [SET key
//! value]`. The engine must abort that EXEC (a nil reply) if, and only if, the key changed
//! between the two. From the histories' intervals the simulator knows two things:
//! - a value write that began after WATCH was answered and was acknowledged before EXEC was
//!   sent certainly came between them, so EXEC must abort;
//! - an abort needs some write (or FLUSHALL) that may have come between them.
//!
//! Sent to the engine directly, not over simulated connections.

use quill_core::command::SetCondition;
use quill_core::{Reply, Request};

use crate::checker::{family, Family, Status, ValueId};
use crate::runner::{Outstanding, Sim};

/// Ticks at most between sending a WATCH and its EXEC (drawn per WATCH).
const WATCH_TO_EXEC_TICKS_MAX: u64 = 200;

/// A WATCH answered: the key, and when the WATCH was sent and answered.
pub(crate) struct Watched {
    key: Vec<u8>,
    invoked: u64,
    responded: u64,
}

/// The key an `EXEC [SET key value]` sent after a WATCH writes, if the request is one.
pub fn watched_exec_key(request: &Request) -> Option<&[u8]> {
    match request {
        Request::Exec { commands } => match &commands[..] {
            [Request::Set { key, .. }] if family(key) == Some(Family::Register) => Some(key),
            _ => None,
        },
        _ => None,
    }
}

impl Sim {
    /// Now and then, a register SET becomes a WATCH of its key, followed (once answered) by an
    /// EXEC of the SET.
    pub(crate) fn watch_variant(&mut self, client: usize, request: Request) -> Request {
        let state = &self.clients[client];
        let eligible = matches!(&request, Request::Set { condition: SetCondition::Always, .. })
            && !self.knobs.network
            && state.follow_up.is_none()
            && state.watched.is_none();
        if !eligible || !self.variants.chosen() {
            return request;
        }
        let Request::Set { key, value, condition } = request else { unreachable!("checked above") };
        let exec = Request::Exec { commands: vec![Request::Set { key: key.clone(), value, condition }] };
        let delay_ticks = rand::Rng::gen_range(&mut self.variants.rng, 0..=WATCH_TO_EXEC_TICKS_MAX);
        self.clients[client].follow_up = Some((exec, self.tick + delay_ticks));
        Request::Watch { keys: vec![key] }
    }

    /// The watched EXEC is a register write (judged here when answered).
    pub(crate) fn begin_watched_exec(&mut self, op_id: u64, request: &Request, invoked: u64) {
        let Request::Exec { commands } = request else { return };
        if let [Request::Set { key, value, .. }] = &commands[..] {
            self.checker.begin_write(key, op_id, Some(ValueId::of(value)), 0, invoked);
        }
        self.checker.begin_read(invoked);
    }

    pub(crate) fn on_watch_reply(&mut self, client: usize, outstanding: &Outstanding, reply: &Reply, responded: u64) {
        let invoked = outstanding.invoked;
        self.checker.end_read(invoked);
        let Request::Watch { keys } = &outstanding.request else { return };
        match reply {
            Reply::Simple(text) if text == "OK" => {
                self.clients[client].watched = Some(Watched { key: keys[0].clone(), invoked, responded });
            }
            Reply::Error(text) => {
                self.clients[client].follow_up = None; // unwatched, its EXEC would prove nothing
                if self.classify_error(text, &outstanding.request, invoked, responded).is_none() {
                    self.checker.fail("an error reply no injected fault explains", &keys[0], "OK".into(), text.clone());
                }
            }
            other => self.checker.fail("a WATCH reply of the wrong shape", &keys[0], "OK".into(), format!("{other:?}")),
        }
    }

    pub(crate) fn on_watched_exec_reply(
        &mut self,
        client: usize,
        outstanding: &Outstanding,
        reply: &Reply,
        responded: u64,
    ) {
        let (op_id, invoked) = (outstanding.op_id, outstanding.invoked);
        let key = watched_exec_key(&outstanding.request).expect("a watched EXEC").to_vec();
        self.checker.end_read(invoked);
        let watched = self.clients[client].watched.take();
        if watched.as_ref().is_some_and(|watched| watched.key != key) {
            return self.checker.fail("a watched EXEC of another key", &key, "the watched key".into(), String::new());
        }
        let status = match reply {
            Reply::Array(Some(items)) if items.len() == 1 => match &items[0] {
                Reply::Simple(text) if text == "OK" => {
                    if let Some(watched) = &watched {
                        self.check_not_changed(&key, op_id, watched, invoked);
                    }
                    Status::Acknowledged
                }
                Reply::Error(text) => self.error_status(text, &outstanding.request, invoked, responded, &key),
                other => {
                    return self.checker.fail(
                        "an EXEC reply of the wrong shape",
                        &key,
                        "[OK]".into(),
                        format!("{other:?}"),
                    )
                }
            },
            Reply::Array(None) => {
                let Some(watched) = &watched else {
                    return self.checker.fail("an EXEC aborted without a WATCH", &key, "[OK]".into(), "nil".into());
                };
                if !self.checker.may_change_between(&key, op_id, watched.invoked, responded) {
                    let got = "nil (aborted)".to_string();
                    self.checker.fail(
                        "EXEC aborted though no write could change the watched key",
                        &key,
                        "[OK]".into(),
                        got,
                    );
                }
                Status::Failed
            }
            Reply::Error(text) => self.error_status(text, &outstanding.request, invoked, responded, &key),
            other => {
                return self.checker.fail("an EXEC reply of the wrong shape", &key, "[OK]".into(), format!("{other:?}"))
            }
        };
        self.checker.end_write(&key, op_id, status, responded);
    }

    /// EXEC ran: no write may certainly have changed the key between WATCH and EXEC.
    fn check_not_changed(&mut self, key: &[u8], op_id: u64, watched: &Watched, exec_invoked: u64) {
        if let Some(write) = self.checker.certain_change_between(key, op_id, watched.responded, exec_invoked) {
            let got = format!("[OK], after op {write} changed the key between WATCH and EXEC");
            self.checker.fail("EXEC ran though a watched key changed", key, "nil (aborted)".into(), got);
        }
    }

    fn error_status(&mut self, text: &str, request: &Request, invoked: u64, responded: u64, key: &[u8]) -> Status {
        use crate::runner::replies::ErrorMeaning;
        match self.classify_error(text, request, invoked, responded) {
            Some(ErrorMeaning::NotApplied) => Status::Failed,
            Some(ErrorMeaning::Unknown | ErrorMeaning::ReadFault) => Status::Indeterminate,
            None => {
                self.checker.fail("an error reply no injected fault explains", key, "[OK]".into(), text.to_string());
                Status::Indeterminate
            }
        }
    }

    /// A crash or a cut connection: the watch and the EXEC not yet sent are gone.
    pub(crate) fn forget_watch(&mut self, client: usize) {
        self.clients[client].watched = None;
        self.clients[client].follow_up = None;
    }
}
