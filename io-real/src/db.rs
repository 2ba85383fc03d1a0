//! The embedded handle: a [`Db`] owns one engine thread, which runs the driver loop; calls from
//! any number of threads are funnelled to it through a channel and answered through oneshots.
//!
//! ```
//! use quill_io_real::{Db, DbOptions};
//!
//! let path = std::env::temp_dir().join(format!("quill-doctest-{}.qkv", std::process::id()));
//! let _ = std::fs::remove_file(&path);
//! let db = Db::open(&path, DbOptions { create_size_bytes: Some(16 << 20), ..DbOptions::default() })?;
//! db.set(b"greeting", b"hello")?;
//! assert_eq!(db.get(b"greeting")?, Some(b"hello".to_vec()));
//! assert_eq!(db.incr_by(b"visits", 2)?, 2);
//! // The async versions return futures; any executor drives them.
//! assert!(futures::executor::block_on(db.exists_async(b"greeting"))?);
//! db.close()?;
//!
//! // Reopening recovers every acknowledged write from the log.
//! let db = Db::open(&path, DbOptions::default())?;
//! assert_eq!(db.get(b"visits")?, Some(b"2".to_vec()));
//! drop(db);
//! std::fs::remove_file(&path).ok();
//! # Ok::<(), quill_io_real::DbError>(())
//! ```

use std::future::Future;
use std::path::Path;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use futures::channel::oneshot;
use quill_core::command::{ExpireCondition, ExpiryTime, SetCondition, SetExpiry};
use quill_core::{Reply, Request};

use crate::driver::IoChoice;
use crate::engine_thread::{engine_thread, Message};
use crate::errors::CommandError;
use crate::runner::{config_for_volume, EngineRunner};
use crate::volume::{open_volume, VolumeOptions};
use crate::DbError;
use crate::VolumeAccess;

#[derive(Clone, Debug)]
pub struct DbOptions {
    /// Create a data file of this size if the path does not exist (or is an empty file).
    pub create_size_bytes: Option<u64>,
    /// Format the volume even if it holds QuillKV data (see [`VolumeOptions::reformat`]).
    pub reformat: bool,
    pub io: IoChoice,
    /// The value cache's budget; `None` keeps the engine's default.
    pub cache_bytes_max: Option<usize>,
    /// Try O_DIRECT.
    pub direct: bool,
    /// How a new data file is laid out (see [`crate::Preallocate`]): written once by default.
    pub preallocate: crate::Preallocate,
    /// With `reformat`: format a block device even over a filesystem or partition table.
    pub force: bool,
    /// Answer GETs of cached values on the caller's thread, from the engine's published cache
    /// (see `read_view.rs`); off, every GET goes through the engine thread.
    pub caller_thread_reads: bool,
    /// Record every write and sync into this history (see [`crate::RecordingDriver`]): for
    /// checking recovery on every crash image of a real run. Off by default.
    pub recorder: Option<crate::IoRecorder>,
}

impl Default for DbOptions {
    fn default() -> DbOptions {
        DbOptions {
            create_size_bytes: None,
            reformat: false,
            io: IoChoice::Uring,
            cache_bytes_max: None,
            direct: true,
            preallocate: crate::Preallocate::default(),
            force: false,
            caller_thread_reads: true,
            recorder: None,
        }
    }
}

/// A QuillKV database on a file or block device. `Send + Sync`: share it with `Arc`.
///
/// Every call is one engine request. Requests run in the order the engine thread receives them,
/// and a write returns only once durable.
pub struct Db {
    sender: Option<mpsc::Sender<Message>>,
    thread: Option<JoinHandle<()>>,
    stop_reason: Arc<Mutex<Option<String>>>,
    driver_name: &'static str,
    /// The published cache, read on callers' threads (with `DbOptions::caller_thread_reads`).
    view: Option<Arc<crate::read_view::ReadView>>,
    /// The engine's value limit, so `write_batch` refuses a batch whole before sending it.
    value_bytes_max: usize,
}

impl Db {
    /// Opens (or creates, with `create_size_bytes`) the volume at `path`, formats or recovers it,
    /// and starts the engine thread. A data file is locked until the `Db` is closed or dropped:
    /// while another `Db` (in this process or another) or `quill serve` has it open, this fails
    /// at once with [`DbError::Volume`]`(`[`VolumeError::Locked`](crate::VolumeError::Locked)`)`.
    pub fn open(path: impl AsRef<Path>, options: DbOptions) -> Result<Db, DbError> {
        let volume_options = VolumeOptions {
            create_size_bytes: options.create_size_bytes,
            reformat: options.reformat,
            direct: options.direct,
            access: VolumeAccess::Exclusive,
            preallocate: options.preallocate,
            force: options.force,
        };
        let volume = open_volume(path.as_ref(), &volume_options)?;
        let mut config = config_for_volume(&volume, options.cache_bytes_max);
        config.publish_cache = options.caller_thread_reads;
        let view = options.caller_thread_reads.then(|| Arc::new(crate::read_view::ReadView::new()));
        let thread_view = view.clone();
        let mut driver = crate::driver::open_driver(options.io, volume.file.clone());
        if let Some(recorder) = &options.recorder {
            recorder.set_config(&config);
            driver = Box::new(crate::RecordingDriver::new(driver, recorder.clone()));
        }
        let value_bytes_max = config.value_bytes_max;
        let runner = EngineRunner::start_with_driver(&volume, config, driver)?;
        if let Some(recorder) = &options.recorder {
            recorder.opened();
        }
        let driver_name = runner.driver_name();
        let (sender, receiver) = mpsc::channel();
        let stop_reason = Arc::new(Mutex::new(None));
        let thread_stop_reason = Arc::clone(&stop_reason);
        let thread = std::thread::Builder::new()
            .name("quill-engine".to_string())
            .spawn(move || {
                if let Err(error) = engine_thread(runner, receiver, thread_view) {
                    *thread_stop_reason.lock().unwrap_or_else(|poison| poison.into_inner()) = Some(error.to_string());
                }
            })
            .map_err(DbError::Spawn)?;
        Ok(Db { sender: Some(sender), thread: Some(thread), stop_reason, driver_name, view, value_bytes_max })
    }

    /// `"io_uring"` or `"sync"`: the driver actually in use.
    pub fn driver_name(&self) -> &'static str {
        self.driver_name
    }

    /// Runs any request and returns the engine's raw reply.
    pub fn execute(&self, request: Request) -> Result<Reply, DbError> {
        futures::executor::block_on(self.execute_async(request))
    }

    /// Sends the request now; the future resolves with the reply.
    pub fn execute_async(&self, request: Request) -> impl Future<Output = Result<Reply, DbError>> + Send + 'static {
        let (reply_sender, reply_receiver) = oneshot::channel();
        let sent =
            self.sender.as_ref().is_some_and(|sender| sender.send(Message::Request(request, reply_sender)).is_ok());
        let stop_reason = Arc::clone(&self.stop_reason);
        async move {
            if !sent {
                return Err(closed(&stop_reason));
            }
            reply_receiver.await.map_err(|_| closed(&stop_reason))
        }
    }

    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, DbError> {
        futures::executor::block_on(self.get_async(key))
    }

    pub fn get_async(&self, key: &[u8]) -> impl Future<Output = Result<Option<Vec<u8>>, DbError>> + Send + 'static {
        // A cached value is answered here, on the caller's thread; a miss asks the engine.
        let lookup = match self.view.as_ref().and_then(|view| view.get(key)) {
            Some(value) => Ok(value),
            None => Err(self.execute_async(Request::Get { key: key.to_vec() })),
        };
        async move {
            match lookup {
                Ok(value) => Ok(Some(value.to_vec())),
                Err(reply) => expect_bulk("get", reply.await?),
            }
        }
    }

    /// Sets `key` to `value`; returns once the write is durable.
    pub fn set(&self, key: &[u8], value: &[u8]) -> Result<(), DbError> {
        futures::executor::block_on(self.set_async(key, value))
    }

    pub fn set_async(&self, key: &[u8], value: &[u8]) -> impl Future<Output = Result<(), DbError>> + Send + 'static {
        let request = Request::Set { key: key.to_vec(), value: value.to_vec(), condition: SetCondition::Always };
        let reply = self.execute_async(request);
        async move { expect_ok("set", reply.await?) }
    }

    /// Sets every pair atomically, in one durable commit (MSET): after a crash, all of them or
    /// none. Returns once durable. A later pair for the same key wins.
    ///
    /// ```
    /// # use quill_io_real::{Db, DbOptions};
    /// # let path = std::env::temp_dir().join(format!("quill-doctest-many-{}.qkv", std::process::id()));
    /// # let _ = std::fs::remove_file(&path);
    /// let db = Db::open(&path, DbOptions { create_size_bytes: Some(16 << 20), ..DbOptions::default() })?;
    /// db.set_many(&[(b"a".as_slice(), b"1".as_slice()), (b"b", b"2")])?;
    /// assert_eq!(db.get_many(&[b"a".as_slice(), b"missing", b"b"])?, [Some(b"1".to_vec()), None, Some(b"2".to_vec())]);
    /// # drop(db);
    /// # std::fs::remove_file(&path).ok();
    /// # Ok::<(), quill_io_real::DbError>(())
    /// ```
    pub fn set_many(&self, pairs: &[(&[u8], &[u8])]) -> Result<(), DbError> {
        futures::executor::block_on(self.set_many_async(pairs))
    }

    pub fn set_many_async(
        &self,
        pairs: &[(&[u8], &[u8])],
    ) -> impl Future<Output = Result<(), DbError>> + Send + 'static {
        let pairs = pairs.iter().map(|(key, value)| (key.to_vec(), value.to_vec())).collect();
        let reply = self.execute_async(Request::MSet { pairs });
        async move { expect_ok("mset", reply.await?) }
    }

    /// Reads every key at one instant (MGET, one request to the engine thread): the values
    /// in order, `None` for a key that is absent.
    pub fn get_many(&self, keys: &[&[u8]]) -> Result<Vec<Option<Vec<u8>>>, DbError> {
        futures::executor::block_on(self.get_many_async(keys))
    }

    pub fn get_many_async(
        &self,
        keys: &[&[u8]],
    ) -> impl Future<Output = Result<Vec<Option<Vec<u8>>>, DbError>> + Send + 'static {
        let reply = self.execute_async(Request::MGet { keys: keys.iter().map(|key| key.to_vec()).collect() });
        async move {
            match reply.await? {
                Reply::Array(Some(values)) => values.into_iter().map(|value| expect_bulk("mget", value)).collect(),
                other => Err(unexpected("mget", other)),
            }
        }
    }

    /// Applies puts and deletes together, in one durable commit: after a crash, all of them or
    /// none, and no reader sees some without the others. In order: a later operation on a key
    /// wins. Returns once durable. A key or value over the limits refuses the whole batch before
    /// anything is sent, as does a batch too large for one commit.
    ///
    /// ```
    /// # use quill_io_real::{Db, DbOptions, WriteOp};
    /// # let path = std::env::temp_dir().join(format!("quill-doctest-batch-{}.qkv", std::process::id()));
    /// # let _ = std::fs::remove_file(&path);
    /// let db = Db::open(&path, DbOptions { create_size_bytes: Some(16 << 20), ..DbOptions::default() })?;
    /// db.set(b"old", b"x")?;
    /// db.write_batch(&[WriteOp::Put(b"new", b"1"), WriteOp::Delete(b"old")])?;
    /// assert_eq!(db.get_many(&[b"new".as_slice(), b"old"])?, [Some(b"1".to_vec()), None]);
    /// # drop(db);
    /// # std::fs::remove_file(&path).ok();
    /// # Ok::<(), quill_io_real::DbError>(())
    /// ```
    pub fn write_batch(&self, operations: &[WriteOp<'_>]) -> Result<(), DbError> {
        futures::executor::block_on(self.write_batch_async(operations))
    }

    pub fn write_batch_async(
        &self,
        operations: &[WriteOp<'_>],
    ) -> impl Future<Output = Result<(), DbError>> + Send + 'static {
        let commands = operations
            .iter()
            .map(|operation| match operation {
                WriteOp::Put(key, value) => {
                    Request::Set { key: key.to_vec(), value: value.to_vec(), condition: SetCondition::Always }
                }
                WriteOp::Delete(key) => Request::Del { keys: vec![key.to_vec()] },
            })
            .collect();
        // Checked here, so that no operation of the batch can fail alone inside the EXEC.
        let too_large = operations.iter().find_map(|operation| {
            let (key, value) = match operation {
                WriteOp::Put(key, value) => (key, value.len()),
                WriteOp::Delete(key) => (key, 0),
            };
            if key.len() > quill_core::format::KEY_BYTES_MAX {
                Some(format!("ERR key too long (the limit is {} bytes)", quill_core::format::KEY_BYTES_MAX))
            } else {
                (value > self.value_bytes_max)
                    .then(|| format!("ERR value too large (the limit is {} bytes)", self.value_bytes_max))
            }
        });
        let reply = too_large.is_none().then(|| self.execute_async(Request::Exec { commands }));
        async move {
            let Some(reply) = reply else {
                return Err(DbError::Command(CommandError::from_reply(too_large.unwrap_or_default())));
            };
            match reply.await? {
                // Each operation's own reply: OK or a count, unless a limit refused it.
                Reply::Array(Some(replies)) => match replies.into_iter().find(Reply::is_error) {
                    Some(error) => Err(unexpected("write_batch", error)),
                    None => Ok(()),
                },
                other => Err(unexpected("write_batch", other)),
            }
        }
    }

    /// Every key, by SCAN: a key present for the whole iteration is returned exactly once (the
    /// cursor is a position in hash order, so the iteration survives the index growing and
    /// shrinking); keys written or deleted meanwhile may or may not appear. Each step asks the
    /// engine for about `SCAN_STEP_SLOTS` slots' worth.
    ///
    /// ```
    /// # use quill_io_real::{Db, DbOptions};
    /// # let path = std::env::temp_dir().join(format!("quill-doctest-keys-{}.qkv", std::process::id()));
    /// # let _ = std::fs::remove_file(&path);
    /// let db = Db::open(&path, DbOptions { create_size_bytes: Some(16 << 20), ..DbOptions::default() })?;
    /// db.set_many(&[(b"user:1".as_slice(), b"a".as_slice()), (b"user:2", b"b"), (b"other", b"c")])?;
    /// let mut users = db.keys_matching(b"user:*").collect::<Result<Vec<_>, _>>()?;
    /// users.sort();
    /// assert_eq!(users, [b"user:1".to_vec(), b"user:2".to_vec()]);
    /// assert_eq!(db.keys().count(), 3);
    /// # drop(db);
    /// # std::fs::remove_file(&path).ok();
    /// # Ok::<(), quill_io_real::DbError>(())
    /// ```
    pub fn keys(&self) -> Keys<'_> {
        Keys { db: self, pattern: None, cursor: Some(0), buffered: std::collections::VecDeque::new() }
    }

    /// The keys matching a Redis glob pattern (`*`, `?`, `[a-z]`, `\x`), as [`Db::keys`].
    pub fn keys_matching(&self, pattern: &[u8]) -> Keys<'_> {
        Keys { db: self, pattern: Some(pattern.to_vec()), cursor: Some(0), buffered: std::collections::VecDeque::new() }
    }

    /// Deletes `key`; returns whether it existed.
    pub fn del(&self, key: &[u8]) -> Result<bool, DbError> {
        futures::executor::block_on(self.del_async(key))
    }

    pub fn del_async(&self, key: &[u8]) -> impl Future<Output = Result<bool, DbError>> + Send + 'static {
        let reply = self.execute_async(Request::Del { keys: vec![key.to_vec()] });
        async move { expect_integer("del", reply.await?).map(|count| count > 0) }
    }

    pub fn exists(&self, key: &[u8]) -> Result<bool, DbError> {
        futures::executor::block_on(self.exists_async(key))
    }

    pub fn exists_async(&self, key: &[u8]) -> impl Future<Output = Result<bool, DbError>> + Send + 'static {
        let reply = self.execute_async(Request::Exists { keys: vec![key.to_vec()] });
        async move { expect_integer("exists", reply.await?).map(|count| count > 0) }
    }

    /// Adds `delta` to the integer stored at `key` (0 if absent); returns the new value.
    pub fn incr_by(&self, key: &[u8], delta: i64) -> Result<i64, DbError> {
        futures::executor::block_on(self.incr_by_async(key, delta))
    }

    pub fn incr_by_async(&self, key: &[u8], delta: i64) -> impl Future<Output = Result<i64, DbError>> + Send + 'static {
        let reply = self.execute_async(Request::IncrBy { key: key.to_vec(), delta });
        async move { expect_integer("incrby", reply.await?) }
    }

    /// Sets `key` to `value`, expiring `ttl` from now (SET PX); returns once durable. The key is
    /// gone once its time has passed, across restarts too (the time is in its record).
    ///
    /// ```
    /// # use quill_io_real::{Db, DbOptions, Ttl};
    /// # use std::time::Duration;
    /// # let path = std::env::temp_dir().join(format!("quill-doctest-ttl-{}.qkv", std::process::id()));
    /// # let _ = std::fs::remove_file(&path);
    /// let db = Db::open(&path, DbOptions { create_size_bytes: Some(16 << 20), ..DbOptions::default() })?;
    /// db.set_with_ttl(b"session", b"token", Duration::from_secs(60))?;
    /// assert!(matches!(db.ttl(b"session")?, Ttl::Expires(left) if left <= Duration::from_secs(60)));
    /// assert!(db.persist(b"session")?);
    /// assert_eq!(db.ttl(b"session")?, Ttl::Persistent);
    /// assert_eq!(db.ttl(b"missing")?, Ttl::Missing);
    /// # db.close()?;
    /// # std::fs::remove_file(&path).ok();
    /// # Ok::<(), quill_io_real::DbError>(())
    /// ```
    pub fn set_with_ttl(&self, key: &[u8], value: &[u8], ttl: Duration) -> Result<(), DbError> {
        let request = Request::SetExpiring {
            key: key.to_vec(),
            value: value.to_vec(),
            condition: SetCondition::Always,
            expiry: SetExpiry::At(ExpiryTime::In(milliseconds(ttl))),
            get: false,
            name: "set",
        };
        expect_ok("set", self.execute(request)?)
    }

    /// Gives `key` a time to live (PEXPIRE); returns whether the key exists. A zero `ttl`
    /// deletes it.
    pub fn expire(&self, key: &[u8], ttl: Duration) -> Result<bool, DbError> {
        let time = ExpiryTime::In(milliseconds(ttl));
        let request = Request::Expire { key: key.to_vec(), time, condition: ExpireCondition::Always, name: "pexpire" };
        expect_integer("pexpire", self.execute(request)?).map(|set| set == 1)
    }

    /// Removes `key`'s time to live (PERSIST); returns whether it had one.
    pub fn persist(&self, key: &[u8]) -> Result<bool, DbError> {
        expect_integer("persist", self.execute(Request::Persist { key: key.to_vec() })?).map(|removed| removed == 1)
    }

    /// `key`'s time to live (PTTL).
    pub fn ttl(&self, key: &[u8]) -> Result<Ttl, DbError> {
        let request = Request::Ttl { key: key.to_vec(), milliseconds: true, absolute: false };
        Ok(match expect_integer("pttl", self.execute(request)?)? {
            -2 => Ttl::Missing,
            -1 => Ttl::Persistent,
            left => Ttl::Expires(Duration::from_millis(u64::try_from(left).unwrap_or(0))),
        })
    }

    /// The number of keys.
    pub fn db_size(&self) -> Result<u64, DbError> {
        let count = expect_integer("dbsize", self.execute(Request::DbSize)?)?;
        Ok(u64::try_from(count).unwrap_or(0))
    }

    /// Finishes every request in flight, stops the engine thread and reports how it ended.
    pub fn close(mut self) -> Result<(), DbError> {
        self.shut_down()
    }

    fn shut_down(&mut self) -> Result<(), DbError> {
        if let Some(sender) = self.sender.take() {
            let _ = sender.send(Message::Close);
        }
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                return Err(DbError::Closed(": the engine thread panicked".to_string()));
            }
        }
        match self.stop_reason.lock().unwrap_or_else(|poison| poison.into_inner()).take() {
            Some(reason) => Err(DbError::Closed(format!(": {reason}"))),
            None => Ok(()),
        }
    }
}

/// One operation of [`Db::write_batch`].
#[derive(Clone, Copy, Debug)]
pub enum WriteOp<'a> {
    Put(&'a [u8], &'a [u8]),
    Delete(&'a [u8]),
}

/// Slots one step of [`Db::keys`] asks the engine to read.
const SCAN_STEP_SLOTS: u64 = 1024;

/// The keys of a [`Db`], a SCAN step at a time ([`Db::keys`]).
pub struct Keys<'a> {
    db: &'a Db,
    pattern: Option<Vec<u8>>,
    /// The next step's cursor; `None` once the scan is over.
    cursor: Option<u64>,
    buffered: std::collections::VecDeque<Vec<u8>>,
}

impl Keys<'_> {
    /// One SCAN step: its keys into the buffer, and the next cursor.
    fn step(&mut self, cursor: u64) -> Result<(), DbError> {
        let request = Request::Scan { cursor, pattern: self.pattern.clone(), count: SCAN_STEP_SLOTS, only_type: None };
        let reply = self.db.execute(request)?;
        let Reply::Array(Some(mut parts)) = reply else { return Err(unexpected("scan", reply)) };
        let (Some(Reply::Array(Some(keys))), Some(Reply::Bulk(Some(next)))) = (parts.pop(), parts.pop()) else {
            return Err(DbError::UnexpectedReply { command: "scan", reply: format!("{parts:?}") });
        };
        let next = std::str::from_utf8(&next).ok().and_then(|text| text.parse::<u64>().ok());
        let Some(next) = next else { return Err(DbError::UnexpectedReply { command: "scan", reply: "cursor".into() }) };
        self.cursor = (next != 0).then_some(next);
        for key in keys {
            match key {
                Reply::Bulk(Some(key)) => self.buffered.push_back(key),
                other => return Err(unexpected("scan", other)),
            }
        }
        Ok(())
    }
}

impl Iterator for Keys<'_> {
    type Item = Result<Vec<u8>, DbError>;

    fn next(&mut self) -> Option<Self::Item> {
        // Steps may come back empty (a sparse stretch of the table): bounded by the table's size.
        loop {
            if let Some(key) = self.buffered.pop_front() {
                return Some(Ok(key));
            }
            let cursor = self.cursor?;
            if let Err(error) = self.step(cursor) {
                self.cursor = None;
                return Some(Err(error));
            }
        }
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        let _ = self.shut_down();
    }
}

fn closed(stop_reason: &Mutex<Option<String>>) -> DbError {
    match stop_reason.lock().unwrap_or_else(|poison| poison.into_inner()).as_deref() {
        Some(reason) => DbError::Closed(format!(": the engine thread stopped: {reason}")),
        None => DbError::Closed(String::new()),
    }
}

fn unexpected(command: &'static str, reply: Reply) -> DbError {
    match reply {
        Reply::Error(text) => DbError::Command(CommandError::from_reply(text)),
        other => DbError::UnexpectedReply { command, reply: format!("{other:?}") },
    }
}

/// A duration in whole milliseconds, as the engine takes times (saturating).
fn milliseconds(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// A key's time to live.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ttl {
    /// No such key (or it has expired).
    Missing,
    /// The key never expires.
    Persistent,
    /// The key expires after this long.
    Expires(Duration),
}

fn expect_bulk(command: &'static str, reply: Reply) -> Result<Option<Vec<u8>>, DbError> {
    match reply {
        Reply::Bulk(value) => Ok(value),
        other => Err(unexpected(command, other)),
    }
}

fn expect_integer(command: &'static str, reply: Reply) -> Result<i64, DbError> {
    match reply {
        Reply::Integer(value) => Ok(value),
        other => Err(unexpected(command, other)),
    }
}

fn expect_ok(command: &'static str, reply: Reply) -> Result<(), DbError> {
    match reply {
        Reply::Simple(_) => Ok(()),
        other => Err(unexpected(command, other)),
    }
}
