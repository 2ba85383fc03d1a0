//! MULTI, EXEC and DISCARD. Between MULTI and EXEC a connection's commands are queued, not run:
//! each is checked for its name and arity (an error there fails the whole transaction: EXEC
//! answers EXECABORT, as in Redis) and parsed; a parse error is kept as that command's reply in
//! EXEC's. EXEC sends the parsed commands to the engine as one request (`Request::Exec`): they
//! run with nothing in between and their writes share one batch.

use super::connection::{Transaction, TransactionPart};
use super::{ClientId, Server};
use crate::command::table::{CommandSpec, Handler};
use crate::command::{parse_command, Reply, Request};

/// Commands one transaction may queue: a bound on a connection's memory (the engine refuses a
/// transaction whose writes do not fit one batch anyway).
const TRANSACTION_COMMANDS_MAX: usize = 16 * 1024;

impl Server {
    pub(super) fn multi(&mut self, client: ClientId) -> Reply {
        let Some(connection) = self.connections.get_mut(&client) else { return Reply::ok() };
        if connection.transaction.is_some() {
            return Reply::error("ERR MULTI calls can not be nested");
        }
        connection.transaction = Some(Transaction::default());
        Reply::ok()
    }

    /// DISCARD drops the queue and, as UNWATCH, the watches; the engine answers (OK), after
    /// the client's earlier commands (a WATCH among them).
    pub(super) fn discard(&mut self, client: ClientId) -> Option<Reply> {
        let connection = self.connections.get_mut(&client)?;
        if connection.transaction.take().is_none() {
            return Some(Reply::error("ERR DISCARD without MULTI"));
        }
        connection.push_engine(crate::command::ReplyShape::AsIs);
        self.engine.submit(client, Request::Unwatch);
        None
    }

    /// EXEC: the reply comes from the engine, unless the transaction failed or ran nothing.
    pub(super) fn exec(&mut self, client: ClientId) -> Option<Reply> {
        let connection = self.connections.get_mut(&client)?;
        let Some(transaction) = connection.transaction.take() else {
            return Some(Reply::error("ERR EXEC without MULTI"));
        };
        if transaction.failed {
            return Some(Reply::error("EXECABORT Transaction discarded because of previous errors."));
        }
        if transaction.requests.is_empty() {
            let replies = transaction.parts.into_iter().map(|part| match part {
                TransactionPart::Refused(reply) => reply,
                TransactionPart::Engine(_) => unreachable!("every engine part has its request"),
            });
            return Some(Reply::Array(Some(replies.collect())));
        }
        connection.push_transaction(transaction.parts);
        self.engine.submit(client, Request::Exec { commands: transaction.requests });
        None
    }

    /// A command sent between MULTI and EXEC: queued (`+QUEUED`), or refused.
    pub(super) fn queue_in_transaction(
        &mut self,
        client: ClientId,
        spec: Option<&'static CommandSpec>,
        arguments: &mut [Vec<u8>],
    ) -> Reply {
        if spec.is_some_and(|spec| spec.name == "watch") {
            return Reply::error("ERR WATCH inside MULTI is not allowed"); // the transaction goes on
        }
        let refusal = match spec {
            None => Some(crate::command::parse::unknown_command(&arguments[0], &arguments[1..])),
            Some(spec) if !spec.arity_allows(arguments.len()) => Some(super::admin::wrong_arguments(spec.name)),
            Some(CommandSpec { handler: Handler::Server(_), name, .. }) => Some(Reply::error(format!(
                "ERR {} is not allowed inside MULTI in QuillKV (only commands on keys, and PING)",
                name.to_uppercase()
            ))),
            Some(_) => None,
        };
        let Some(transaction) =
            self.connections.get_mut(&client).and_then(|connection| connection.transaction.as_mut())
        else {
            return Reply::ok();
        };
        if let Some(refusal) = refusal {
            transaction.failed = true;
            return refusal;
        }
        if transaction.parts.len() >= TRANSACTION_COMMANDS_MAX {
            transaction.failed = true;
            return Reply::error(format!("ERR a transaction holds at most {TRANSACTION_COMMANDS_MAX} commands"));
        }
        match parse_command(arguments) {
            Ok((request, _)) if !request.allowed_in_transaction() => {
                transaction.failed = true;
                Reply::error(format!(
                    "ERR {} is not allowed inside MULTI in QuillKV (only commands on keys, and PING)",
                    request.name().to_uppercase()
                ))
            }
            Ok((request, shape)) => {
                transaction.parts.push(TransactionPart::Engine(shape));
                transaction.requests.push(request);
                Reply::Simple("QUEUED".into())
            }
            Err(reply) => {
                transaction.parts.push(TransactionPart::Refused(reply));
                Reply::Simple("QUEUED".into())
            }
        }
    }
}
