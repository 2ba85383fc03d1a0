//! The one command table: every command QuillKV answers, with its arity, flags, key positions,
//! who answers it (the engine, through a parser, or the server itself) and how it differs from
//! Redis. The parser, the server's dispatch, `COMMAND` and `docs/commands.md` all read it; a
//! test holds the document to it.

use super::parse;
use super::{Bytes, Reply, ReplyShape, Request};

/// Turns a command's arguments (after its name) into a request; `name` is the name in lower case.
pub type Parser = fn(name: &[u8], arguments: &mut [Bytes]) -> Result<Request, Reply>;

/// Like [`Parser`], with the shape the server gives the engine's reply.
pub type ShapedParser = fn(name: &[u8], arguments: &mut [Bytes]) -> Result<(Request, ReplyShape), Reply>;

/// Who answers a command.
#[derive(Clone, Copy)]
pub enum Handler {
    /// Parsed into a [`Request`] and run by the engine.
    Engine(Parser),
    /// Run by the engine as another request, whose reply the server reshapes (SETNX, TYPE, …).
    Shaped(ShapedParser),
    /// Answered by the server: connection state and introspection, never the keyspace.
    Server(ServerCommand),
}

/// The commands the server answers itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerCommand {
    Quit,
    Auth,
    Hello,
    Select,
    Echo,
    Client,
    Command,
    Config,
    Info,
    Time,
    Save,
    BgSave,
    LastSave,
    Shutdown,
    Multi,
    Exec,
    Discard,
}

/// One command.
pub struct CommandSpec {
    /// In lower case, as `COMMAND` reports it.
    pub name: &'static str,
    /// Redis's arity: `n` exactly n arguments, `-n` at least n, the name included.
    pub arity: i64,
    /// Redis's command flags (`write`, `readonly`, `fast`, …), as `COMMAND` reports them.
    pub flags: &'static [&'static str],
    /// The first and last key argument (`-1`: the last argument) and the step between keys; 0
    /// for commands without keys.
    pub keys: (i64, i64, i64),
    pub handler: Handler,
    /// Allowed before AUTH when a password is set.
    pub before_auth: bool,
    /// What it does, in a line (docs/commands.md).
    pub summary: &'static str,
    /// How it differs from Redis (docs/commands.md); empty when it does not.
    pub differences: &'static str,
}

impl CommandSpec {
    /// Whether `count` arguments (the name included) satisfy the arity.
    pub fn arity_allows(&self, count: usize) -> bool {
        let count = count as i64;
        if self.arity >= 0 {
            count == self.arity
        } else {
            count >= -self.arity
        }
    }
}

const WRITE: &[&str] = &["write", "denyoom"];
const WRITE_FAST: &[&str] = &["write", "denyoom", "fast"];
const READ_FAST: &[&str] = &["readonly", "fast"];
const CONNECTION: &[&str] = &["noscript", "loading", "stale", "fast"];

const fn engine(
    name: &'static str,
    arity: i64,
    flags: &'static [&'static str],
    keys: (i64, i64, i64),
    parser: Parser,
    summary: &'static str,
    differences: &'static str,
) -> CommandSpec {
    CommandSpec { name, arity, flags, keys, handler: Handler::Engine(parser), before_auth: false, summary, differences }
}

const fn shaped(
    name: &'static str,
    arity: i64,
    flags: &'static [&'static str],
    keys: (i64, i64, i64),
    parser: ShapedParser,
    summary: &'static str,
) -> CommandSpec {
    CommandSpec {
        name,
        arity,
        flags,
        keys,
        handler: Handler::Shaped(parser),
        before_auth: false,
        summary,
        differences: "",
    }
}

const fn server(
    name: &'static str,
    arity: i64,
    flags: &'static [&'static str],
    command: ServerCommand,
    before_auth: bool,
    summary: &'static str,
    differences: &'static str,
) -> CommandSpec {
    let handler = Handler::Server(command);
    CommandSpec { name, arity, flags, keys: (0, 0, 0), handler, before_auth, summary, differences }
}

/// Every command, in the order `COMMAND` lists them.
pub const COMMANDS: &[CommandSpec] = &[
    engine("get", 2, READ_FAST, (1, 1, 1), parse::get, "the value of a key", ""),
    engine(
        "set",
        -3,
        WRITE,
        (1, 1, 1),
        parse::set,
        "sets a key's value, with NX, XX, GET, EX, PX, EXAT, PXAT and KEEPTTL",
        "",
    ),
    engine("setex", 4, WRITE, (1, 1, 1), parse::setex, "sets a key's value and its time to live in seconds", ""),
    engine("psetex", 4, WRITE, (1, 1, 1), parse::setex, "sets a key's value and its time to live in ms", ""),
    engine(
        "getex",
        -2,
        WRITE,
        (1, 1, 1),
        parse::getex,
        "a key's value, setting (EX, PX, EXAT, PXAT) or removing (PERSIST) its expiry time",
        "",
    ),
    engine("expire", -3, WRITE_FAST, (1, 1, 1), parse::expire, "sets a key's time to live in seconds", ""),
    engine("pexpire", -3, WRITE_FAST, (1, 1, 1), parse::expire, "sets a key's time to live in ms", ""),
    engine("expireat", -3, WRITE_FAST, (1, 1, 1), parse::expire, "sets a key's expiry time, Unix seconds", ""),
    engine("pexpireat", -3, WRITE_FAST, (1, 1, 1), parse::expire, "sets a key's expiry time, Unix ms", ""),
    engine(
        "incrbyfloat",
        3,
        WRITE_FAST,
        (1, 1, 1),
        parse::incrbyfloat,
        "adds a float to a key's value, in C's long double as Redis does",
        "",
    ),
    engine("persist", 2, WRITE_FAST, (1, 1, 1), parse::persist, "removes a key's expiry time", ""),
    engine("ttl", 2, READ_FAST, (1, 1, 1), parse::ttl, "a key's time to live in seconds (-1: none, -2: no key)", ""),
    engine("pttl", 2, READ_FAST, (1, 1, 1), parse::ttl, "a key's time to live in ms (-1: none, -2: no key)", ""),
    engine("expiretime", 2, READ_FAST, (1, 1, 1), parse::ttl, "a key's expiry time, Unix seconds", ""),
    engine("pexpiretime", 2, READ_FAST, (1, 1, 1), parse::ttl, "a key's expiry time, Unix ms", ""),
    engine("getset", 3, WRITE_FAST, (1, 1, 1), parse::getset, "sets a key's value, replying the old one", ""),
    engine("getdel", 2, WRITE_FAST, (1, 1, 1), parse::getdel, "replies a key's value and deletes the key", ""),
    engine(
        "setrange",
        4,
        WRITE,
        (1, 1, 1),
        parse::setrange,
        "overwrites part of a value from an offset, padding with zero bytes; replies the length",
        "the result is limited by the value limit (`--value-bytes-max`) rather than 512 MB",
    ),
    engine(
        "msetnx",
        -3,
        WRITE,
        (1, -1, 2),
        parse::msetnx,
        "sets several keys at once, atomically, only if none exists; replies 1 or 0",
        "",
    ),
    engine("del", -2, &["write"], (1, -1, 1), parse::del, "deletes keys; replies how many existed", ""),
    engine("unlink", -2, &["write", "fast"], (1, -1, 1), parse::del, "DEL (deletion is never deferred)", ""),
    engine("exists", -2, READ_FAST, (1, -1, 1), parse::exists, "how many of the keys exist (repeats count)", ""),
    engine("mget", -2, READ_FAST, (1, -1, 1), parse::mget, "the values of several keys", ""),
    engine("mset", -3, WRITE, (1, -1, 2), parse::mset, "sets several keys at once, atomically", ""),
    engine("incr", 2, WRITE_FAST, (1, 1, 1), parse::incr, "adds 1 to an integer value", ""),
    engine("decr", 2, WRITE_FAST, (1, 1, 1), parse::decr, "subtracts 1 from an integer value", ""),
    engine("incrby", 3, WRITE_FAST, (1, 1, 1), parse::incrby, "adds an integer to an integer value", ""),
    engine("decrby", 3, WRITE_FAST, (1, 1, 1), parse::decrby, "subtracts an integer", ""),
    engine("append", 3, WRITE, (1, 1, 1), parse::append, "appends to a value; replies the new length", ""),
    engine("strlen", 2, READ_FAST, (1, 1, 1), parse::strlen, "the length of a value", ""),
    engine("dbsize", 1, READ_FAST, (0, 0, 0), parse::dbsize, "the number of keys", ""),
    engine(
        "scan",
        -2,
        &["readonly"],
        (0, 0, 0),
        parse::scan,
        "iterates the keys with a cursor: MATCH, COUNT and TYPE",
        "the cursor is a position in hash order (below 2^32), so every key present for the whole \
         scan is returned exactly once, while the table grows or shrinks; a cursor does not \
         survive a restart",
    ),
    engine("rename", 3, &["write"], (1, 2, 1), parse::rename, "moves a key's value to another key", ""),
    engine(
        "renamenx",
        3,
        &["write", "fast"],
        (1, 2, 1),
        parse::rename,
        "RENAME only if the new key does not exist; replies 1 or 0",
        "",
    ),
    engine(
        "copy",
        -3,
        WRITE,
        (1, 2, 1),
        parse::copy,
        "copies a key's value to another key (REPLACE to overwrite); replies 1 or 0",
        "only DB 0 exists: another DB is an error",
    ),
    engine("keys", 2, &["readonly"], (0, 0, 0), parse::keys, "every key matching a glob pattern", ""),
    engine("randomkey", 1, &["readonly"], (0, 0, 0), parse::randomkey, "some key, or nil", ""),
    shaped("setnx", 3, WRITE_FAST, (1, 1, 1), parse::setnx, "SET NX, replying 1 if it set the key, else 0"),
    shaped(
        "getrange",
        4,
        &["readonly"],
        (1, 1, 1),
        parse::getrange,
        "a substring of a value (negative indexes from the end)",
    ),
    shaped("substr", 4, &["readonly"], (1, 1, 1), parse::getrange, "GETRANGE"),
    shaped("type", 2, READ_FAST, (1, 1, 1), parse::type_of, "the type of a key: string, or none"),
    shaped("touch", -2, READ_FAST, (1, -1, 1), parse::touch, "how many of the keys exist (nothing tracks access)"),
    engine("ping", -1, &["fast"], (0, 0, 0), parse::ping, "PONG, or the message", ""),
    engine(
        "flushall",
        -1,
        &["write"],
        (0, 0, 0),
        parse::flush,
        "deletes every key (SYNC and ASYNC accepted)",
        "ASYNC is as durable as SYNC: the reply waits for the deletion's batch",
    ),
    engine("flushdb", -1, &["write"], (0, 0, 0), parse::flush, "FLUSHALL (there is one database)", ""),
    server("echo", 2, &["fast"], ServerCommand::Echo, false, "replies its argument", ""),
    server("quit", -1, &["fast"], ServerCommand::Quit, true, "closes the connection after OK", ""),
    server(
        "auth",
        -2,
        CONNECTION,
        ServerCommand::Auth,
        true,
        "authenticates with the password (`--requirepass-file`)",
        "one user: a user name, if given, is ignored",
    ),
    server(
        "hello",
        -1,
        CONNECTION,
        ServerCommand::Hello,
        true,
        "handshake: protocol 2, AUTH and SETNAME options",
        "RESP3 (HELLO 3) is refused with NOPROTO",
    ),
    server("select", 2, CONNECTION, ServerCommand::Select, false, "selects database 0", "only database 0 exists"),
    server(
        "client",
        -2,
        &["noscript", "loading", "stale"],
        ServerCommand::Client,
        false,
        "CLIENT SETNAME, GETNAME, ID, SETINFO, INFO, LIST and KILL",
        "LIST and INFO lines have no laddr, fd or memory fields but omem; KILL takes ID, ADDR, SKIPME and TYPE",
    ),
    server("command", -1, &["loading", "stale"], ServerCommand::Command, false, "COMMAND, COUNT, INFO", ""),
    server(
        "config",
        -2,
        &["admin", "noscript", "loading", "stale"],
        ServerCommand::Config,
        false,
        "CONFIG GET (a fixed set of values), CONFIG SET and RESETSTAT",
        "CONFIG SET takes maxclients, timeout and requirepass (all pairs or none)",
    ),
    server(
        "info",
        -1,
        &["loading", "stale"],
        ServerCommand::Info,
        false,
        "server, clients, stats, persistence and keyspace sections",
        "QuillKV's own fields besides Redis's: redis_version (7.0.0) is the Redis release whose commands and replies QuillKV follows, which clients probe for features; quillkv_version is QuillKV's own",
    ),
    engine(
        "watch",
        -2,
        &["noscript", "loading", "stale", "fast"],
        (1, -1, 1),
        parse::watch,
        "the next EXEC runs only if none of these keys changes first",
        "",
    ),
    engine("unwatch", 1, &["noscript", "loading", "stale", "fast"], (0, 0, 0), parse::unwatch, "forgets the watched keys", ""),
    server(
        "multi",
        1,
        &["noscript", "loading", "stale", "fast"],
        ServerCommand::Multi,
        false,
        "starts a transaction: later commands are queued until EXEC",
        "only commands on keys (and PING) may be queued; any other fails the transaction",
    ),
    server(
        "exec",
        1,
        &["noscript", "loading", "stale"],
        ServerCommand::Exec,
        false,
        "runs the queued commands together; their writes share one batch, so a crash keeps all or none",
        "a transaction whose writes exceed one batch is refused whole (ERR command too large)",
    ),
    server("discard", 1, &["noscript", "loading", "stale", "fast"], ServerCommand::Discard, false, "drops the queued commands", ""),
    server("time", 1, &["random", "loading", "stale", "fast"], ServerCommand::Time, false, "the Unix time: seconds and microseconds", ""),
    server(
        "save",
        1,
        &["admin", "noscript"],
        ServerCommand::Save,
        false,
        "starts an index checkpoint",
        "every acknowledged write is already durable, so nothing needs saving: SAVE starts a checkpoint (which makes the next start fast) and replies at once",
    ),
    server(
        "bgsave",
        -1,
        &["admin", "noscript"],
        ServerCommand::BgSave,
        false,
        "starts an index checkpoint in the background",
        "as SAVE; SCHEDULE is accepted",
    ),
    server(
        "lastsave",
        1,
        &["random", "loading", "stale", "fast"],
        ServerCommand::LastSave,
        false,
        "the Unix time of the last completed checkpoint (or of the start)",
        "",
    ),
    server(
        "shutdown",
        -1,
        &["admin", "noscript", "loading", "stale"],
        ServerCommand::Shutdown,
        false,
        "writes the clean-shutdown checkpoint and exits (NOSAVE: exits without it)",
        "NOSAVE loses nothing (the log holds every write), the next start just scans the log; NOW and FORCE are accepted and change nothing",
    ),
];

/// The command named `lower_name` (already in lower case).
pub fn lookup(lower_name: &[u8]) -> Option<&'static CommandSpec> {
    COMMANDS.iter().find(|spec| spec.name.as_bytes() == lower_name)
}

#[cfg(test)]
mod tests {
    use super::COMMANDS;

    #[test]
    fn names_are_unique_lower_case_and_short() {
        for (index, spec) in COMMANDS.iter().enumerate() {
            assert_eq!(spec.name, spec.name.to_ascii_lowercase());
            assert!(spec.name.len() <= super::parse::COMMAND_NAME_BYTES_MAX);
            assert!(COMMANDS[..index].iter().all(|other| other.name != spec.name), "{} twice", spec.name);
            assert!(spec.arity != 0, "{}: an arity counts the name", spec.name);
        }
    }

    /// docs/commands.md lists exactly these commands, each with its arity.
    #[test]
    fn the_command_reference_matches_the_table() {
        let document = include_str!("../../../docs/commands.md");
        let rows: Vec<(String, String)> = document
            .lines()
            .filter(|line| line.starts_with("| `"))
            .map(|line| {
                let cells: Vec<&str> = line.split('|').map(str::trim).collect();
                (cells[1].trim_matches('`').to_ascii_lowercase(), cells[2].to_string())
            })
            .collect();
        for spec in COMMANDS {
            let row = rows.iter().find(|(name, _)| *name == spec.name);
            let arity = row.map(|(_, arity)| arity.as_str());
            assert_eq!(arity, Some(spec.arity.to_string().as_str()), "{} in docs/commands.md", spec.name);
        }
        assert_eq!(rows.len(), COMMANDS.len(), "docs/commands.md lists a command the table does not");
    }
}
