//! CLIENT LIST, CLIENT INFO and CLIENT KILL: the connections as Redis describes them.

use super::{ClientId, Server};
use crate::command::parse::parse_integer;
use crate::command::Reply;

impl Server {
    /// One connection in CLIENT LIST's format: Redis's fields, those QuillKV has (no `laddr`,
    /// `fd` or memory figures but `omem`, the unsent output).
    pub(super) fn client_line(&self, client: ClientId) -> String {
        let Some(connection) = self.connections.get(&client) else { return String::new() };
        let seconds = |since: u64| self.now.saturating_sub(since) / 1000;
        let name = connection.name.as_deref().map(String::from_utf8_lossy).unwrap_or_default();
        format!(
            "id={client} addr={} name={name} age={} idle={} flags=N db=0 sub=0 psub=0 ssub=0 multi=-1 qbuf={} \
             obl=0 oll=0 omem={} events=r cmd={} user=default redir=-1 resp=2\n",
            connection.peer,
            seconds(connection.created),
            seconds(connection.last_active),
            connection.decoder.buffered_bytes(),
            connection.output.len(),
            connection.last_command,
        )
    }

    /// CLIENT LIST [TYPE normal|master|replica|pubsub] [ID id …].
    pub(super) fn client_list(&self, filters: &[Vec<u8>]) -> Reply {
        let mut only: Option<Vec<ClientId>> = None;
        match filters {
            [] => {}
            [kind, value] if kind.eq_ignore_ascii_case(b"type") => match value.to_ascii_lowercase().as_slice() {
                b"normal" => {}
                b"master" | b"replica" | b"slave" | b"pubsub" => only = Some(Vec::new()),
                _ => return Reply::error(format!("ERR Unknown client type '{}'", String::from_utf8_lossy(value))),
            },
            [kind, ids @ ..] if kind.eq_ignore_ascii_case(b"id") && !ids.is_empty() => {
                let mut wanted = Vec::with_capacity(ids.len());
                for id in ids {
                    match parse_integer(id).filter(|id| *id > 0) {
                        Some(id) => wanted.push(id as ClientId),
                        None => return Reply::error("ERR Invalid client ID"),
                    }
                }
                only = Some(wanted);
            }
            _ => return Reply::error("ERR syntax error"),
        }
        let text: String = self
            .connections
            .keys()
            .filter(|id| only.as_ref().is_none_or(|wanted| wanted.contains(id)))
            .map(|id| self.client_line(*id))
            .collect();
        Reply::Bulk(Some(text.into_bytes()))
    }

    /// CLIENT KILL ip:port (OK, or an error if no such client), or CLIENT KILL with filters
    /// (ID, ADDR, SKIPME, TYPE), replying how many connections it closed.
    pub(super) fn client_kill(&mut self, caller: ClientId, filters: &[Vec<u8>]) -> Reply {
        if let [address] = filters {
            let found =
                self.connections.iter().find(|(_, connection)| connection.peer.to_string().as_bytes() == address);
            let Some(id) = found.map(|(id, _)| *id) else { return Reply::error("ERR No such client") };
            self.kill(id);
            return Reply::ok();
        }
        if filters.is_empty() || !filters.len().is_multiple_of(2) {
            return Reply::error("ERR syntax error");
        }
        let (mut id, mut address, mut skip_me, mut any_type) = (None, None, true, true);
        for pair in filters.chunks_exact(2) {
            let value = &pair[1];
            match pair[0].to_ascii_lowercase().as_slice() {
                b"id" => match parse_integer(value).filter(|id| *id > 0) {
                    Some(number) => id = Some(number as ClientId),
                    None => return Reply::error("ERR client-id should be greater than 0"),
                },
                b"addr" => address = Some(value.clone()),
                b"skipme" => match value.to_ascii_lowercase().as_slice() {
                    b"yes" => skip_me = true,
                    b"no" => skip_me = false,
                    _ => return Reply::error("ERR syntax error"),
                },
                b"type" => match value.to_ascii_lowercase().as_slice() {
                    b"normal" => any_type = true,
                    b"master" | b"replica" | b"slave" | b"pubsub" => any_type = false,
                    _ => return Reply::error(format!("ERR Unknown client type '{}'", String::from_utf8_lossy(value))),
                },
                _ => return Reply::error("ERR syntax error"),
            }
        }
        let doomed: Vec<ClientId> = self
            .connections
            .iter()
            .filter(|(candidate, connection)| {
                any_type
                    && id.is_none_or(|id| id == **candidate)
                    && address.as_ref().is_none_or(|address| connection.peer.to_string().as_bytes() == address)
                    && !(skip_me && **candidate == caller)
            })
            .map(|(candidate, _)| *candidate)
            .collect();
        for candidate in &doomed {
            self.kill(*candidate);
        }
        Reply::Integer(doomed.len() as i64)
    }

    /// Closes a connection once the output it has is written; it reads no more commands.
    fn kill(&mut self, client: ClientId) {
        if let Some(connection) = self.connections.get_mut(&client) {
            connection.stopped = true;
        }
        self.close_after_output(client);
    }
}
