//! Recording requests with the checker and checking every reply against it.

use crate::trace::TraceEvent;
use quill_core::{Reply, Request};

use crate::checker::{family, Family, Status, ValueId};
use crate::runner::{written_keys, Outstanding, Sim};

pub fn describe_request(request: &Request) -> String {
    let text = |bytes: &[u8]| String::from_utf8_lossy(&bytes[..bytes.len().min(24)]).into_owned();
    match request {
        Request::Get { key } | Request::StrLen { key } => format!("{} {}", request.name(), text(key)),
        Request::Set { key, value, .. } => format!("set {} ({} bytes)", text(key), value.len()),
        Request::Append { key, value } => format!("append {} {}", text(key), text(value)),
        Request::IncrBy { key, delta } => format!("incrby {} {delta}", text(key)),
        Request::Del { keys } | Request::Exists { keys } | Request::MGet { keys } => {
            format!("{} {}", request.name(), keys.iter().map(|key| text(key)).collect::<Vec<_>>().join(" "))
        }
        Request::MSet { pairs } => {
            format!("mset {}", pairs.iter().map(|(key, _)| text(key)).collect::<Vec<_>>().join(" "))
        }
        Request::SetExpiring { .. }
        | Request::Expire { .. }
        | Request::Persist { .. }
        | Request::GetEx { .. }
        | Request::Ttl { .. } => {
            crate::network::arguments(request).iter().map(|argument| text(argument)).collect::<Vec<_>>().join(" ")
        }
        Request::Exec { commands } => {
            format!("exec [{}]", commands.iter().map(describe_request).collect::<Vec<_>>().join("; "))
        }
        Request::GetSet { key, value, .. } => format!("getset {} ({} bytes)", text(key), value.len()),
        Request::GetDel { key } => format!("getdel {}", text(key)),
        Request::Copy { source, destination, replace } => {
            format!("copy {} {}{}", text(source), text(destination), if *replace { " replace" } else { "" })
        }
        Request::Rename { source, destination, only_if_absent } => {
            format!("rename{} {} {}", if *only_if_absent { "nx" } else { "" }, text(source), text(destination))
        }
        Request::MSetNx { pairs } => {
            format!("msetnx {}", pairs.iter().map(|(key, _)| text(key)).collect::<Vec<_>>().join(" "))
        }
        Request::Watch { keys } => format!("watch {}", keys.iter().map(|key| text(key)).collect::<Vec<_>>().join(" ")),
        other => other.name().to_string(),
    }
}

fn describe_reply(reply: &Reply) -> String {
    match reply {
        Reply::Bulk(Some(value)) => format!("{} bytes #{:016x}", value.len(), crate::trace::digest(value)),
        Reply::Array(Some(items)) => format!("[{}]", items.iter().map(describe_reply).collect::<Vec<_>>().join(", ")),
        other => format!("{other:?}"),
    }
}

fn reply_word(reply: &Reply) -> u64 {
    match reply {
        Reply::Simple(text) => crate::trace::digest(text.as_bytes()),
        Reply::Error(text) => crate::trace::digest(text.as_bytes()),
        Reply::Integer(value) => *value as u64,
        Reply::Bulk(Some(value)) => crate::trace::digest(value),
        Reply::Bulk(None) | Reply::Array(None) => 0,
        Reply::Array(Some(items)) => items.iter().map(reply_word).fold(0, |hash, word| hash.rotate_left(7) ^ word),
    }
}

/// What an error reply means for the request it answers.
pub(crate) enum ErrorMeaning {
    /// Not applied (refused before anything was written).
    NotApplied,
    /// Maybe applied: it was written but never made durable.
    Unknown,
    /// A read that failed on a fault the simulator injected.
    ReadFault,
}

impl Sim {
    pub(crate) fn begin_in_checker(&mut self, op_id: u64, request: &Request, invoked: u64) {
        if crate::runner::transfers::is_transfer_request(request) {
            self.know_keys(request);
            return self.checker.begin_read(invoked);
        }
        if matches!(request, Request::Watch { .. }) {
            return self.checker.begin_read(invoked);
        }
        if crate::runner::watches::watched_exec_key(request).is_some() {
            return self.begin_watched_exec(op_id, request, invoked);
        }
        if let Some(key) = crate::runner::domains::domain_request_key(request) {
            // Judged by its owner's exact model (domains.rs); known to the final verification.
            self.checker.keys.entry(key.to_vec()).or_default();
            return self.domain_command_sent(key, op_id);
        }
        if matches!(request, Request::FlushAll) {
            self.domain_flush_sent();
            return self.checker.begin_flush(op_id, invoked);
        }
        let keys = written_keys(request);
        if keys.is_empty() || self.judges_history(request) {
            // A conditional SET also reads: it judges the state it meets, so the history it
            // may have met must not be pruned before its reply.
            self.checker.begin_read(invoked);
        }
        if keys.is_empty() {
            return;
        }
        for key in keys {
            let (value, amount) = match request {
                Request::Set { value, .. } | Request::GetSet { value, .. } => (Some(ValueId::of(value)), 0),
                Request::MSet { pairs } | Request::MSetNx { pairs } => {
                    let value = pairs.iter().rev().find(|(candidate, _)| *candidate == key).map(|(_, value)| value);
                    (value.map(|value| ValueId::of(value)), 0)
                }
                Request::IncrBy { delta, .. } => (None, *delta),
                Request::Append { value, .. } => {
                    (None, i64::from_str_radix(&String::from_utf8_lossy(&value[..7]), 16).unwrap_or(-1))
                }
                _ => (None, 0),
            };
            self.checker.begin_write(key, op_id, value, amount, invoked);
        }
    }

    pub(crate) fn on_reply(&mut self, client: usize, reply: Reply) {
        if let Some(front) = self.clients[client].outstanding.front_mut().filter(|front| front.framing_replies > 0) {
            // MULTI's +OK, then +QUEUED for each command: the EXEC's reply comes after them.
            let expected = if let Request::Exec { commands } = &front.request {
                if front.framing_replies == commands.len() + 1 {
                    "OK"
                } else {
                    "QUEUED"
                }
            } else {
                unreachable!("only an EXEC over a connection has framing replies")
            };
            front.framing_replies -= 1;
            if reply != Reply::Simple(expected.into()) {
                let got = format!("{reply:?}");
                self.checker.fail("MULTI or a queued command got an unexpected reply", b"", expected.into(), got);
            }
            return;
        }
        let Some(outstanding) = self.clients[client].outstanding.pop_front() else {
            return self.checker.fail(
                "a reply for a client with nothing outstanding",
                b"",
                "no reply".into(),
                format!("{reply:?}"),
            );
        };
        let responded = self.checker.now();
        let op_id = outstanding.op_id;
        self.trace.record(self.tick, &[TraceEvent::Reply.word(), client as u64, op_id, reply_word(&reply)], |line| {
            line.push_str(&format!("client {client} gets op {op_id}: {}", describe_reply(&reply)))
        });
        if crate::runner::isolation::is_isolation_request(&outstanding.request) {
            return self.on_isolation_reply(&outstanding, reply, responded);
        }
        if crate::runner::domains::domain_request_key(&outstanding.request).is_some() {
            return self.on_domain_reply(&outstanding, &reply, responded);
        }
        if crate::runner::transfers::is_transfer_request(&outstanding.request) {
            return self.on_transfer_reply(&outstanding, &reply, responded);
        }
        if matches!(outstanding.request, Request::Watch { .. }) {
            return self.on_watch_reply(client, &outstanding, &reply, responded);
        }
        if crate::runner::watches::watched_exec_key(&outstanding.request).is_some() {
            return self.on_watched_exec_reply(client, &outstanding, &reply, responded);
        }
        let keys = written_keys(&outstanding.request);
        if let Reply::Error(text) = &reply {
            if text.starts_with("ERR Protocol error") {
                self.clients[client].expect_close = true;
            }
            if text.starts_with("OOM disk full") {
                self.on_disk_full_reply(&outstanding.request);
            }
            if matches!(outstanding.request, Request::Scan { .. }) {
                self.abandon_scan(client, false);
            }
            return self.on_error_reply(&outstanding, &keys, text, responded);
        }
        if matches!(outstanding.request, Request::Scan { .. } | Request::Keys { .. } | Request::RandomKey) {
            return self.on_keyset_reply(client, &outstanding, &reply, responded);
        }
        if matches!(outstanding.request, Request::FlushAll) {
            self.domain_flush_ended(false);
            self.check_write_reply(&outstanding, &reply, responded);
            return self.checker.end_flush(op_id, Status::Acknowledged, responded);
        }
        if keys.is_empty() {
            self.check_read(&outstanding, &reply, responded);
            self.checker.end_read(outstanding.invoked);
            return;
        }
        if let Request::Set { key, condition, .. } = &outstanding.request {
            if *condition != quill_core::command::SetCondition::Always {
                return self.on_conditional_set_reply(&outstanding, key, *condition, &reply, responded);
            }
        }
        if matches!(outstanding.request, Request::GetSet { .. } | Request::GetDel { .. } | Request::MSetNx { .. }) {
            return self.on_reading_write_reply(&outstanding, &reply, responded);
        }
        self.check_write_reply(&outstanding, &reply, responded);
        if self.judges_history(&outstanding.request) {
            self.checker.end_read(outstanding.invoked);
        }
        for key in &keys {
            self.checker.end_write(key, op_id, Status::Acknowledged, responded);
        }
    }

    /// Whether the write's reply is judged against the history of its window, which must then
    /// stay unpruned until the reply: a write that reads, and a plain SET while the index has
    /// a limit (`check_index_limit` asks whether the key was certainly absent; seed 5685 judged
    /// it on a history pruned of the SETs that made it present).
    pub(crate) fn judges_history(&self, request: &Request) -> bool {
        let limited = self.knobs.index_bytes_max < quill_core::engine::INDEX_BYTES_LIMIT;
        reads_before_writing(request) || (limited && matches!(request, Request::Set { .. }))
    }

    fn on_conditional_set_reply(
        &mut self,
        outstanding: &Outstanding,
        key: &[u8],
        condition: quill_core::command::SetCondition,
        reply: &Reply,
        responded: u64,
    ) {
        let wants_absent = condition == quill_core::command::SetCondition::IfAbsent;
        let wrote = match reply {
            Reply::Simple(text) if text == "OK" => true,
            Reply::Bulk(None) => false,
            other => return self.mismatch(key, "OK or nil", other),
        };
        let (op_id, invoked) = (outstanding.op_id, outstanding.invoked);
        self.checker.check_conditional_set(key, op_id, wants_absent, wrote, invoked, responded);
        self.checker.end_read(invoked);
        let status = if wrote { Status::Acknowledged } else { Status::Failed };
        self.checker.end_write(key, op_id, status, responded);
    }

    /// GETSET and GETDEL reply the value they replaced, a read at the moment they wrote;
    /// MSETNX replies whether every key was absent.
    fn on_reading_write_reply(&mut self, outstanding: &Outstanding, reply: &Reply, responded: u64) {
        use quill_core::command::SetCondition;
        let (op_id, invoked) = (outstanding.op_id, outstanding.invoked);
        match (&outstanding.request, reply) {
            (Request::GetSet { key, condition, .. }, Reply::Bulk(old)) => {
                let old_id = old.as_deref().map(ValueId::of);
                self.checker.check_register_excluding(key, old_id, invoked, responded, Some(op_id));
                let wrote = match condition {
                    SetCondition::Always => true,
                    SetCondition::IfAbsent => old.is_none(),
                    SetCondition::IfPresent => old.is_some(),
                };
                let status = if wrote { Status::Acknowledged } else { Status::Failed };
                self.checker.end_write(key, op_id, status, responded);
            }
            (Request::GetDel { key }, Reply::Bulk(old)) => {
                let old_id = old.as_deref().map(ValueId::of);
                self.checker.check_register_excluding(key, old_id, invoked, responded, Some(op_id));
                self.checker.end_write(key, op_id, Status::Acknowledged, responded);
            }
            (Request::MSetNx { pairs }, Reply::Integer(1)) => {
                for (key, _) in pairs {
                    self.checker.check_register_excluding(key, None, invoked, responded, Some(op_id));
                    self.checker.end_write(key, op_id, Status::Acknowledged, responded);
                }
            }
            (Request::MSetNx { pairs }, Reply::Integer(0)) => {
                // Nothing written: some key must have been present (its own writes set aside).
                let mut any_present = false;
                for (key, _) in pairs {
                    let excluded = Some(op_id);
                    any_present |= self.checker.register_possibilities_excluding(key, invoked, responded, excluded).1;
                    self.checker.end_write(key, op_id, Status::Failed, responded);
                }
                if !any_present {
                    let key = pairs[0].0.clone();
                    self.checker.fail("MSETNX refused while every key was absent", &key, "1".into(), "0".into());
                }
            }
            (request, other) => return self.mismatch(request_key(request), "the command's reply", other),
        }
        self.checker.end_read(invoked);
    }

    fn on_error_reply(&mut self, outstanding: &Outstanding, keys: &[&[u8]], text: &str, responded: u64) {
        let meaning = match self.classify_error(text, &outstanding.request, outstanding.invoked, responded) {
            Some(meaning) => meaning,
            None if text.starts_with("OOM disk full") => {
                let key = keys.first().map(|key| key.to_vec()).unwrap_or_default();
                let got = format!("{text}; {}", self.fullness_report(outstanding.invoked, responded));
                return self.checker.fail(
                    "a disk-full refusal while the live data fits (deleted space never came back)",
                    &key,
                    "the write accepted".into(),
                    got,
                );
            }
            None => {
                let key = keys.first().map(|key| key.to_vec()).unwrap_or_default();
                return self.checker.fail(
                    "an error reply no injected fault explains",
                    &key,
                    "a value".into(),
                    text.to_string(),
                );
            }
        };
        let status = match meaning {
            ErrorMeaning::NotApplied => Status::Failed,
            ErrorMeaning::Unknown | ErrorMeaning::ReadFault => Status::Indeterminate,
        };
        if matches!(outstanding.request, Request::FlushAll) {
            self.domain_flush_ended(status == Status::Indeterminate);
            return self.checker.end_flush(outstanding.op_id, status, responded);
        }
        if keys.is_empty() || self.judges_history(&outstanding.request) {
            self.checker.end_read(outstanding.invoked);
        }
        if keys.is_empty() {
            return;
        }
        for key in keys {
            self.checker.end_write(key, outstanding.op_id, status, responded);
        }
    }

    /// Which error replies the faults injected so far can explain.
    pub(crate) fn classify_error(
        &self,
        text: &str,
        request: &Request,
        invoked: u64,
        responded: u64,
    ) -> Option<ErrorMeaning> {
        use crate::faults::FaultKind;
        let write_faults =
            self.faults.ledger.count(FaultKind::WriteError) + self.faults.ledger.count(FaultKind::SyncError) > 0;
        let read_faults = self.faults.ledger.count(FaultKind::ReadError) > 0;
        let value_limit_small = self.knobs.value_bytes_max < crate::knobs::VALUE_BYTES_MAX_DEFAULT;
        let pipeline_overfull = self.knobs.pipeline_depth > self.knobs.client_pipeline_max;
        // An MSET of four large values can exceed a small batch (the engine refuses it whole).
        let batch_payload_bytes = self.knobs.batch_blocks_max as usize * quill_core::BLOCK_BYTES - 64;
        let value_bytes_max = self.knobs.value_bytes_large_max.max(self.knobs.value_bytes_small_max);
        let command_may_exceed_batch = 4 * (value_bytes_max + 64) > batch_payload_bytes;
        // (prefix, explained by the faults so far, meaning)
        let table = [
            ("ERR not durable", write_faults, ErrorMeaning::Unknown),
            ("READONLY", write_faults || self.opened_read_only, ErrorMeaning::NotApplied),
            (
                "OOM disk full",
                text.starts_with("OOM disk full") && self.disk_full_explained(invoked, responded, 0),
                ErrorMeaning::NotApplied,
            ),
            (
                "OOM index full",
                text.starts_with("OOM index full") && self.index_full_explained(request, invoked, responded),
                ErrorMeaning::NotApplied,
            ),
            // Judged when the recovery ends (see crash.rs): a detection or a bug.
            ("ERR QuillKV could not open", true, ErrorMeaning::NotApplied),
            ("ERR I/O error reading", read_faults, ErrorMeaning::ReadFault),
            ("ERR data corrupt", self.faults.ledger.beyond_budget, ErrorMeaning::ReadFault),
            ("ERR too many commands in flight", pipeline_overfull, ErrorMeaning::NotApplied),
            ("ERR value too large", value_limit_small, ErrorMeaning::NotApplied),
            ("ERR command too large", command_may_exceed_batch, ErrorMeaning::NotApplied),
            // Over a connection, a bulk above the engine's value limit is refused by the parser,
            // which then closes the connection, as Redis does.
            (
                "ERR Protocol error: invalid bulk length",
                value_limit_small && self.knobs.network,
                ErrorMeaning::NotApplied,
            ),
        ];
        table
            .into_iter()
            .find(|(prefix, explained, _)| *explained && text.starts_with(prefix))
            .map(|(_, _, meaning)| meaning)
    }

    fn check_read(&mut self, outstanding: &Outstanding, reply: &Reply, responded: u64) {
        let invoked = outstanding.invoked;
        match (&outstanding.request, reply) {
            (Request::Get { key }, Reply::Bulk(value)) => self.check_value(key, value.as_deref(), invoked, responded),
            (Request::MGet { keys }, Reply::Array(Some(values))) if values.len() == keys.len() => {
                for (key, value) in keys.iter().zip(values) {
                    match value {
                        Reply::Bulk(value) => self.check_value(key, value.as_deref(), invoked, responded),
                        other => self.mismatch(key, "a bulk string", other),
                    }
                }
            }
            (Request::Exists { keys }, Reply::Integer(count)) => self.check_exists(keys, *count, invoked, responded),
            (Request::StrLen { key }, Reply::Integer(length)) => self.check_strlen(key, *length, invoked, responded),
            (Request::DbSize, Reply::Integer(count)) => {
                let known = self.checker.keys.len() as i64;
                if *count < 0 || *count > known {
                    let got = count.to_string();
                    self.checker.fail(
                        "DBSIZE counted more keys than were ever written",
                        b"",
                        format!("0..={known}"),
                        got,
                    );
                }
            }
            (Request::Ping { message: None }, Reply::Simple(text)) if text == "PONG" => {}
            (Request::Ping { message: Some(message) }, Reply::Bulk(Some(echoed))) if echoed == message => {}
            (request, other) => self.mismatch(request_key(request), "a reply of the request's type", other),
        }
    }

    pub(crate) fn check_value(&mut self, key: &[u8], value: Option<&[u8]>, invoked: u64, responded: u64) {
        match family(key) {
            Some(Family::Register) => self.checker.check_register(key, value.map(ValueId::of), invoked, responded),
            Some(Family::Counter) => {
                let parsed = value.map_or(Some(0), |bytes| String::from_utf8_lossy(bytes).parse::<i64>().ok());
                match parsed {
                    Some(number) => self.checker.check_counter(key, number, invoked, responded),
                    None => self.checker.fail(
                        "a counter holds a non-integer",
                        key,
                        "an integer".into(),
                        format!("{value:?}"),
                    ),
                }
            }
            Some(Family::Append) => self.checker.check_appends(key, value.unwrap_or_default(), invoked, responded),
            // Value-domain keys are read only alone, by GET, and judged in domains.rs.
            Some(Family::Domain | Family::Transfer | Family::Shared) | None => {
                self.checker.fail("a key outside the workload's families", key, "k, c or a keys".into(), String::new())
            }
        }
    }

    fn check_exists(&mut self, keys: &[Vec<u8>], count: i64, invoked: u64, responded: u64) {
        let (mut low, mut high) = (0, 0);
        for key in keys {
            let (may_be_absent, may_be_present) = self.checker.register_possibilities(key, invoked, responded);
            low += i64::from(!may_be_absent);
            high += i64::from(may_be_present);
        }
        if count < low || count > high {
            let key = keys.first().cloned().unwrap_or_default();
            self.checker.fail(
                "EXISTS counted keys the history does not allow",
                &key,
                format!("{low}..={high}"),
                count.to_string(),
            );
        }
    }

    fn check_strlen(&mut self, key: &[u8], length: i64, invoked: u64, responded: u64) {
        let lengths = self.checker.register_lengths(key, invoked, responded);
        if !lengths.contains(&(length as usize)) {
            self.checker.fail(
                "STRLEN returned a length no allowed value has",
                key,
                format!("one of {lengths:?}"),
                length.to_string(),
            );
        }
    }

    fn check_write_reply(&mut self, outstanding: &Outstanding, reply: &Reply, responded: u64) {
        let request = &outstanding.request;
        match (request, reply) {
            (Request::Set { key, .. }, Reply::Simple(text)) if text == "OK" => {
                self.check_index_limit(key, outstanding.op_id, outstanding.invoked, responded);
            }
            (Request::MSet { .. } | Request::FlushAll, Reply::Simple(text)) if text == "OK" => {}
            (Request::Del { keys }, Reply::Integer(count)) if *count >= 0 && *count as usize <= keys.len() => {}
            (Request::IncrBy { key, .. }, Reply::Integer(value)) => {
                self.checker.check_counter(key, *value, outstanding.invoked, responded);
            }
            (Request::Append { key, .. }, Reply::Integer(length)) => {
                self.checker.check_append_length(key, *length, outstanding.invoked, responded);
            }
            (request, other) => self.mismatch(request_key(request), "the write's success reply", other),
        }
    }

    /// A SET of a key certainly new, acknowledged while keys certainly durable already filled
    /// the index's limit (with it): the engine must have refused it (`OOM index full`).
    fn check_index_limit(&mut self, key: &[u8], op_id: u64, invoked: u64, responded: u64) {
        let limit = self.knobs.index_bytes_max;
        let register = crate::checker::family(key) == Some(crate::checker::Family::Register);
        if limit >= quill_core::engine::INDEX_BYTES_LIMIT
            || !register
            || !self.checker.certainly_absent(key, op_id, invoked, responded)
        {
            return;
        }
        let held = self.checker.durable_index_bytes_lower(invoked, responded, key);
        let entry = quill_core::engine::index_entry_bytes(key.len());
        if held + entry > limit {
            let expected =
                format!("OOM index full: at least {held} bytes of durable keys, {entry} more, limit {limit}");
            self.checker.fail("the index took a key beyond its limit", key, expected, "OK".into());
        }
    }

    fn mismatch(&mut self, key: &[u8], expected: &str, got: &Reply) {
        self.checker.fail("a reply of the wrong shape", key, expected.to_string(), format!("{got:?}"));
    }
}

/// Whether the request also reads the key it writes (a conditional SET judges the state it
/// meets; GETSET and GETDEL reply it; MSETNX judges every key's): the history it may have met
/// must not be pruned before its reply.
pub(crate) fn reads_before_writing(request: &Request) -> bool {
    match request {
        Request::Set { condition, .. } => *condition != quill_core::command::SetCondition::Always,
        Request::GetSet { .. } | Request::GetDel { .. } | Request::MSetNx { .. } => true,
        _ => false,
    }
}

/// The first key the request names (for a violation's report), or none.
fn request_key(request: &Request) -> &[u8] {
    let mut first: &[u8] = &[];
    request.any_key(|key| {
        first = key;
        true
    });
    first
}
