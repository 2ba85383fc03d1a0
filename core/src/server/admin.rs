//! Parsing a connection's commands and answering the connection-level ones (AUTH, HELLO, QUIT,
//! SELECT, ECHO, CLIENT, COMMAND, CONFIG, INFO) without the engine.

use super::{ClientId, Server};
use crate::command::pattern::glob_match;
use crate::command::table::{lookup, CommandSpec, Handler, ServerCommand, COMMANDS};
use crate::command::{parse_command, Reply};
use crate::engine::Engine;
use crate::resp::{Arguments, Frame};

/// A rejected EXEC inside MULTI (EXEC's only rejection is its arity), in Redis's words.
const EXEC_REJECTED: &str = "EXECABORT Transaction discarded because of: wrong number of arguments for 'exec' command";

/// Commands parsed per call for one connection, so one client cannot monopolize a loop turn.
const COMMANDS_PER_TURN_MAX: usize = 4096;

impl Server {
    /// Parses and dispatches every complete command the connection has, within its limits.
    pub(super) fn process_commands(&mut self, client: ClientId) {
        for _ in 0..COMMANDS_PER_TURN_MAX {
            let Some(connection) = self.connections.get_mut(&client) else { return };
            if connection.stopped
                || connection.engine_in_flight >= self.config.commands_in_flight_max
                || connection.output.len() >= self.config.output_bytes_pause
            {
                break;
            }
            let at_once = connection.answers_at_once();
            match connection.decoder.next_frame() {
                Ok(None) => break,
                Ok(Some(Frame::Lent(arguments))) => {
                    self.stats.commands_processed += 1;
                    if at_once && get_at_once(&mut self.engine, client, arguments, &mut connection.output) {
                        connection.last_command = "get";
                        continue;
                    }
                    // Copied into buffers kept from earlier commands: the request takes what
                    // it keeps (a key, a value), and the rest are reused.
                    let mut scratch = std::mem::take(&mut self.argument_scratch);
                    arguments.copy_into(&mut scratch);
                    self.dispatch(client, &mut scratch);
                    self.argument_scratch = scratch;
                }
                Ok(Some(Frame::Owned(mut arguments))) => {
                    self.stats.commands_processed += 1;
                    self.dispatch(client, &mut arguments);
                }
                Err(error) => {
                    self.stats.protocol_errors += 1;
                    if error.sends_reply() {
                        connection.push_local(error.to_reply());
                    }
                    connection.push_close();
                    break;
                }
            }
        }
        self.flush_ready(client);
    }

    fn dispatch(&mut self, client: ClientId, arguments: &mut [Vec<u8>]) {
        // Command names are case-insensitive: lowered on the stack, not copied (no allocation).
        let mut lowered = [0u8; crate::command::parse::COMMAND_NAME_BYTES_MAX];
        let name =
            crate::command::parse::lowercase_name(arguments.first().map_or(&[][..], Vec::as_slice), &mut lowered);
        let spec = crate::command::table::lookup(name);
        // One look at the connection per command: authenticated, inside MULTI, last command.
        let Some(connection) = self.connections.get_mut(&client) else { return };
        if !connection.authenticated && !spec.is_some_and(|spec| spec.before_auth) {
            return self.reply_local(client, Reply::error("NOAUTH Authentication required."));
        }
        if let Some(spec) = spec {
            connection.last_command = spec.name;
        }
        let in_transaction = connection.transaction.is_some();
        let transaction_control = matches!(
            spec,
            Some(CommandSpec {
                handler: Handler::Server(
                    ServerCommand::Multi | ServerCommand::Exec | ServerCommand::Discard | ServerCommand::Quit
                ),
                ..
            })
        );
        if !transaction_control && in_transaction {
            let reply = self.queue_in_transaction(client, spec, arguments);
            return self.reply_local(client, reply);
        }
        let Some(spec @ CommandSpec { handler: Handler::Server(command), .. }) = spec else {
            return self.submit_to_engine(client, arguments);
        };
        if !spec.arity_allows(arguments.len()) {
            // Inside MULTI, as in Redis, a rejected command fails the transaction, and a rejected
            // EXEC discards it at once.
            if let Some(connection) = self.connections.get_mut(&client) {
                if *command == ServerCommand::Exec && connection.transaction.take().is_some() {
                    // Discarding also forgets the watches: UNWATCH, answered with the abort.
                    connection.push_engine(crate::command::ReplyShape::ErrorInstead(EXEC_REJECTED));
                    return self.engine.submit(client, crate::command::Request::Unwatch);
                }
                if let Some(transaction) = connection.transaction.as_mut() {
                    transaction.failed = true;
                }
            }
            return self.reply_local(client, wrong_arguments(spec.name));
        }
        let reply = match command {
            ServerCommand::Quit => {
                self.reply_local(client, Reply::ok());
                if let Some(connection) = self.connections.get_mut(&client) {
                    connection.push_close();
                }
                return;
            }
            ServerCommand::Auth => self.auth(client, &arguments[1..]),
            ServerCommand::Hello => self.hello(client, &arguments[1..]),
            ServerCommand::Select => select(&arguments[1..]),
            // The arity check above leaves exactly the message.
            ServerCommand::Echo => Reply::Bulk(Some(arguments[1].clone())),
            ServerCommand::Client => self.client_command(client, &arguments[1..]),
            ServerCommand::Command => command_command(&arguments[1..]),
            ServerCommand::Config => self.config_command(&arguments[1..]),
            ServerCommand::Info => Reply::Bulk(Some(self.info(arguments.get(1)).into_bytes())),
            ServerCommand::Multi => self.multi(client),
            ServerCommand::Discard => match self.discard(client) {
                Some(reply) => reply,
                None => return, // the engine answers
            },
            ServerCommand::Exec => match self.exec(client) {
                Some(reply) => reply,
                None => return, // the engine answers
            },
            ServerCommand::Time => {
                let (seconds, micros) = (self.unix_time_ms / 1000, self.unix_time_ms % 1000 * 1000);
                let part = |number: u64| Reply::Bulk(Some(number.to_string().into_bytes()));
                Reply::Array(Some(vec![part(seconds), part(micros)]))
            }
            ServerCommand::Save => {
                self.engine.checkpoint_now();
                Reply::ok()
            }
            ServerCommand::BgSave => self.background_save(&arguments[1..]),
            ServerCommand::LastSave => Reply::Integer(self.last_save_unix_s as i64),
            ServerCommand::Shutdown => match self.shutdown_command(&arguments[1..]) {
                // No reply: the connection closes as the server exits, as Redis's does.
                Ok(()) => return,
                Err(error) => error,
            },
        };
        self.reply_local(client, reply);
    }

    fn submit_to_engine(&mut self, client: ClientId, arguments: &mut [Vec<u8>]) {
        match parse_command(arguments) {
            Ok((request, shape)) => {
                if let Some(connection) = self.connections.get_mut(&client) {
                    connection.push_engine(shape);
                }
                self.engine.submit(client, request);
            }
            Err(reply) => self.reply_local(client, reply),
        }
    }

    fn reply_local(&mut self, client: ClientId, reply: Reply) {
        if let Some(connection) = self.connections.get_mut(&client) {
            connection.push_local(reply);
        }
    }

    fn background_save(&mut self, arguments: &[Vec<u8>]) -> Reply {
        match arguments {
            [] => {}
            [option] if option.eq_ignore_ascii_case(b"schedule") => {}
            _ => return Reply::error("ERR syntax error"),
        }
        self.engine.checkpoint_now();
        Reply::Simple("Background saving started".into())
    }

    /// SHUTDOWN [NOSAVE|SAVE] [NOW] [FORCE] [ABORT]: asks the driver to stop (see
    /// [`Server::shutdown_requested`]) and stops reading every connection meanwhile.
    fn shutdown_command(&mut self, arguments: &[Vec<u8>]) -> Result<(), Reply> {
        let mut checkpoint = true;
        let (mut save, mut no_save) = (false, false);
        for option in arguments {
            match option.to_ascii_lowercase().as_slice() {
                b"nosave" => no_save = true,
                b"save" => save = true,
                b"now" | b"force" => {}
                b"abort" => return Err(Reply::error("ERR No shutdown in progress.")),
                _ => return Err(Reply::error("ERR syntax error")),
            }
        }
        if save && no_save {
            return Err(Reply::error("ERR syntax error"));
        }
        if no_save {
            checkpoint = false;
        }
        self.shutdown = Some(if checkpoint { super::Shutdown::Checkpoint } else { super::Shutdown::NoCheckpoint });
        for connection in self.connections.values_mut() {
            connection.stopped = true;
        }
        Ok(())
    }

    fn auth(&mut self, client: ClientId, arguments: &[Vec<u8>]) -> Reply {
        let password = match arguments {
            [password] | [_, password] => password,
            _ => return wrong_arguments("auth"),
        };
        let Some(expected) = &self.config.requirepass else {
            return Reply::error(
                "ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?",
            );
        };
        if !constant_time_equal(password, expected) {
            return Reply::error("WRONGPASS invalid username-password pair or user is disabled.");
        }
        if let Some(connection) = self.connections.get_mut(&client) {
            connection.authenticated = true;
        }
        Reply::ok()
    }

    /// HELLO speaks RESP2 only: version 3 is refused as Redis does without RESP3.
    fn hello(&mut self, client: ClientId, arguments: &[Vec<u8>]) -> Reply {
        let mut rest = arguments;
        if let Some((version, tail)) = rest.split_first() {
            match crate::command::parse::parse_integer(version) {
                Some(2) => rest = tail,
                Some(3) => return Reply::error("NOPROTO sorry, this protocol version is not supported."),
                Some(_) => return Reply::error("NOPROTO sorry, this protocol version is not supported."),
                None => return Reply::error("ERR Protocol version is not an integer or out of range"),
            }
        }
        while let Some((option, tail)) = rest.split_first() {
            match (option.to_ascii_lowercase().as_slice(), tail) {
                (b"auth", [user, password, more @ ..]) => {
                    let reply = self.auth(client, &[user.clone(), password.clone()]);
                    if reply.is_error() {
                        return reply;
                    }
                    rest = more;
                }
                (b"setname", [name, more @ ..]) => {
                    if let Some(connection) = self.connections.get_mut(&client) {
                        connection.name = Some(name.clone());
                    }
                    rest = more;
                }
                _ => {
                    return Reply::error(format!(
                        "ERR Syntax error in HELLO option '{}'",
                        String::from_utf8_lossy(option)
                    ))
                }
            }
        }
        if !self.connections.get(&client).is_some_and(|connection| connection.authenticated) {
            return Reply::error("NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time");
        }
        let bulk = |text: &str| Reply::Bulk(Some(text.as_bytes().to_vec()));
        Reply::Array(Some(vec![
            bulk("server"),
            bulk("redis"),
            bulk("version"),
            bulk(super::info::REDIS_COMPATIBLE_VERSION),
            bulk("proto"),
            Reply::Integer(2),
            bulk("id"),
            Reply::Integer(client as i64),
            bulk("mode"),
            bulk("standalone"),
            bulk("role"),
            bulk("master"),
            bulk("modules"),
            Reply::Array(Some(Vec::new())),
        ]))
    }

    fn client_command(&mut self, client: ClientId, arguments: &[Vec<u8>]) -> Reply {
        let Some((sub, rest)) = arguments.split_first() else { return wrong_arguments("client") };
        let connection = self.connections.get_mut(&client);
        match (sub.to_ascii_lowercase().as_slice(), rest, connection) {
            (b"setname", [name], Some(connection)) => {
                if name.iter().any(|byte| *byte <= b' ' || *byte > b'~') {
                    return Reply::error("ERR Client names cannot contain spaces, newlines or special characters.");
                }
                connection.name = (!name.is_empty()).then(|| name.clone());
                Reply::ok()
            }
            (b"getname", [], Some(connection)) => Reply::Bulk(connection.name.clone()),
            (b"id", [], _) => Reply::Integer(client as i64),
            (b"setinfo", [_, _], _) => Reply::ok(),
            (b"info", [], Some(_)) => Reply::Bulk(Some(self.client_line(client).into_bytes())),
            (b"list", filters, _) => self.client_list(filters),
            (b"kill", filters, _) => self.client_kill(client, filters),
            _ => Reply::error(format!("ERR unknown subcommand '{}'. Try CLIENT HELP.", String::from_utf8_lossy(sub))),
        }
    }

    fn config_command(&mut self, arguments: &[Vec<u8>]) -> Reply {
        let Some((sub, rest)) = arguments.split_first() else { return wrong_arguments("config") };
        match sub.to_ascii_lowercase().as_slice() {
            b"get" if !rest.is_empty() => {
                let mut pairs = Vec::new();
                for (key, value) in self.config_values() {
                    if rest.iter().any(|pattern| glob_match(&pattern.to_ascii_lowercase(), key.as_bytes())) {
                        pairs.push(Reply::Bulk(Some(key.as_bytes().to_vec())));
                        pairs.push(Reply::Bulk(Some(value.into_bytes())));
                    }
                }
                Reply::Array(Some(pairs))
            }
            b"set" if !rest.is_empty() && rest.len().is_multiple_of(2) => self.config_set(rest),
            b"set" => wrong_arguments("config|set"),
            b"resetstat" => Reply::ok(),
            b"get" => wrong_arguments("config|get"),
            _ => Reply::error(format!("ERR unknown subcommand '{}'. Try CONFIG HELP.", String::from_utf8_lossy(sub))),
        }
    }

    /// CONFIG SET for the settings that may change while serving: maxclients, timeout (seconds;
    /// 0: never) and requirepass (empty: none; connections made before keep their state). All
    /// pairs are checked before any applies, as Redis does.
    fn config_set(&mut self, pairs: &[Vec<u8>]) -> Reply {
        let mut changes = Vec::new();
        for pair in pairs.chunks_exact(2) {
            let name = String::from_utf8_lossy(&pair[0]).to_ascii_lowercase();
            let value = &pair[1];
            let failed = |why: &str| {
                Reply::error(format!("ERR CONFIG SET failed (possibly related to argument '{name}') - {why}"))
            };
            let integer = crate::command::parse::parse_integer(value);
            let change = match name.as_str() {
                "maxclients" => match integer {
                    None => return failed("argument couldn't be parsed into an integer"),
                    Some(clients) if !(1..=i64::from(u32::MAX)).contains(&clients) => {
                        return failed("argument must be between 1 and 4294967295 inclusive")
                    }
                    Some(clients) => ConfigChange::ClientsMax(clients as usize),
                },
                "timeout" => match integer {
                    None => return failed("argument couldn't be parsed into an integer"),
                    Some(seconds) if !(0..=i64::from(i32::MAX)).contains(&seconds) => {
                        return failed("argument must be between 0 and 2147483647 inclusive")
                    }
                    Some(seconds) => ConfigChange::TimeoutSeconds(seconds as u64),
                },
                "requirepass" => ConfigChange::Password(value.clone()),
                _ => {
                    return Reply::error(format!(
                        "ERR Unknown option or number of arguments for CONFIG SET - '{}'",
                        String::from_utf8_lossy(&pair[0])
                    ))
                }
            };
            changes.push(change);
        }
        for change in changes {
            match change {
                ConfigChange::ClientsMax(clients) => self.config.clients_max = clients,
                ConfigChange::TimeoutSeconds(0) => self.config.idle_timeout_ms = None,
                ConfigChange::TimeoutSeconds(seconds) => self.config.idle_timeout_ms = Some(seconds * 1000),
                ConfigChange::Password(password) => {
                    self.config.requirepass = (!password.is_empty()).then_some(password);
                }
            }
        }
        Reply::ok()
    }

    fn config_values(&self) -> Vec<(&'static str, String)> {
        let timeout_s = self.config.idle_timeout_ms.map_or(0, |timeout_ms| timeout_ms / 1000);
        vec![
            ("save", String::new()),
            ("appendonly", "yes".into()),
            ("appendfsync", "always".into()),
            ("databases", "1".into()),
            ("maxclients", self.config.clients_max.to_string()),
            ("maxmemory", "0".into()),
            ("proto-max-bulk-len", self.config.limits.bulk_bytes_max.to_string()),
            ("timeout", timeout_s.to_string()),
        ]
    }
}

fn select(arguments: &[Vec<u8>]) -> Reply {
    match arguments {
        [index] => match crate::command::parse::parse_integer(index) {
            Some(0) => Reply::ok(),
            Some(_) => Reply::error("ERR DB index is out of range"),
            None => Reply::error("ERR value is not an integer or out of range"),
        },
        _ => wrong_arguments("select"),
    }
}

/// One setting CONFIG SET changes (see `config_set`).
enum ConfigChange {
    ClientsMax(usize),
    TimeoutSeconds(u64),
    Password(Vec<u8>),
}

/// COMMAND, COMMAND COUNT, COMMAND DOCS (empty: no docs) and COMMAND INFO, from the command
/// table.
fn command_command(arguments: &[Vec<u8>]) -> Reply {
    let entry = |spec: &CommandSpec| {
        let (first_key, last_key, step) = spec.keys;
        let flags = spec.flags.iter().map(|flag| Reply::Simple((*flag).into())).collect();
        Reply::Array(Some(vec![
            Reply::Bulk(Some(spec.name.as_bytes().to_vec())),
            Reply::Integer(spec.arity),
            Reply::Array(Some(flags)),
            Reply::Integer(first_key),
            Reply::Integer(last_key),
            Reply::Integer(step),
        ]))
    };
    match arguments.split_first() {
        None => Reply::Array(Some(COMMANDS.iter().map(entry).collect())),
        Some((sub, rest)) => match sub.to_ascii_lowercase().as_slice() {
            b"count" => Reply::Integer(COMMANDS.len() as i64),
            b"docs" => Reply::Array(Some(Vec::new())),
            b"info" => Reply::Array(Some(
                rest.iter().map(|name| lookup(&name.to_ascii_lowercase()).map_or(Reply::Array(None), entry)).collect(),
            )),
            _ => Reply::error(format!("ERR unknown subcommand '{}'. Try COMMAND HELP.", String::from_utf8_lossy(sub))),
        },
    }
}

pub(super) fn wrong_arguments(name: &str) -> Reply {
    Reply::error(format!("ERR wrong number of arguments for '{name}' command"))
}

/// Compares without an early exit, so timing does not reveal how much of a password matched.
fn constant_time_equal(given: &[u8], expected: &[u8]) -> bool {
    let mut difference = given.len() ^ expected.len();
    for (index, byte) in expected.iter().enumerate() {
        difference |= usize::from(byte ^ given.get(index).copied().unwrap_or(0));
    }
    difference == 0
}

#[cfg(test)]
mod tests {
    use crate::command::pattern::glob_match;

    #[test]
    fn glob_matches_like_redis() {
        assert!(glob_match(b"*", b"save"));
        assert!(glob_match(b"app*", b"appendonly"));
        assert!(glob_match(b"*only", b"appendonly"));
        assert!(glob_match(b"s?ve", b"save"));
        assert!(!glob_match(b"save", b"saved"));
        assert!(!glob_match(b"x*", b"save"));
        assert!(!glob_match(&[b'*'; 200].iter().chain(b"z").copied().collect::<Vec<u8>>(), &[b'a'; 200]));
    }
}

/// The hot path of a GET whose value is in memory: answered from the request's bytes in the
/// decoder's buffer straight into the connection's output, with no allocation. Returns false
/// (nothing done) when the command is not such a GET; it then takes the full path.
fn get_at_once(engine: &mut Engine, client: ClientId, arguments: Arguments<'_>, output: &mut Vec<u8>) -> bool {
    let (Some(name), Some(key), 2) = (arguments.get(0), arguments.get(1), arguments.len()) else { return false };
    if !name.eq_ignore_ascii_case(b"get") {
        return false;
    }
    let Some(value) = engine.get_at_once(client, key) else { return false };
    crate::resp::encode_bulk(value.as_deref(), output);
    true
}
