//! QuillKV's embedded `Db` beside fjall and redb, each at its strongest "acknowledged means
//! durable" setting: durable SETs at 1, 16 and 64 threads, GETs of warm keys at 32 threads, and
//! the time from reopening to the first GET. Rounds rotate the order of the stores; the table
//! gives medians. Usage: quill-bench-peers DIRECTORY [SECONDS_PER_TEST] [ROUNDS]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

const KEYS: u64 = 200_000;
const VALUE_BYTES: usize = 100;
const TABLE: redb::TableDefinition<&[u8], &[u8]> = redb::TableDefinition::new("kv");

fn key(index: u64) -> [u8; 16] {
    let mut key = [0u8; 16];
    key[..8].copy_from_slice(&index.wrapping_mul(0x9e37_79b9_7f4a_7c15).to_be_bytes());
    key[8..].copy_from_slice(&index.to_be_bytes());
    key
}

/// One store, opened on a directory, shared by the benchmark's threads.
trait Store: Send + Sync {
    /// Writes every key once, the store's fastest durable way (not timed).
    fn load(&self);
    fn set(&self, key: &[u8], value: &[u8]);
    fn get(&self, key: &[u8]) -> Option<Vec<u8>>;
}

struct Quill(quill_io_real::Db);
struct Fjall(fjall::Database, fjall::Keyspace);
struct Redb(redb::Database);

impl Store for Quill {
    fn load(&self) {
        let value = [b'v'; VALUE_BYTES];
        let keys: Vec<[u8; 16]> = (0..KEYS).map(key).collect();
        for chunk in keys.chunks(1000) {
            let pairs: Vec<(&[u8], &[u8])> = chunk.iter().map(|key| (key.as_slice(), value.as_slice())).collect();
            self.0.set_many(&pairs).expect("quill load");
        }
    }
    fn set(&self, key: &[u8], value: &[u8]) {
        self.0.set(key, value).expect("quill set");
    }
    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.0.get(key).expect("quill get")
    }
}

impl Store for Fjall {
    fn load(&self) {
        for index in 0..KEYS {
            self.1.insert(key(index), [b'v'; VALUE_BYTES]).expect("fjall load");
        }
        self.0.persist(fjall::PersistMode::SyncData).expect("fjall persist");
    }
    fn set(&self, key: &[u8], value: &[u8]) {
        self.1.insert(key, value).expect("fjall insert");
        self.0.persist(fjall::PersistMode::SyncData).expect("fjall persist");
    }
    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.1.get(key).expect("fjall get").map(|value| value.to_vec())
    }
}

impl Store for Redb {
    fn load(&self) {
        let transaction = self.0.begin_write().expect("redb begin");
        {
            let mut table = transaction.open_table(TABLE).expect("redb table");
            for index in 0..KEYS {
                table.insert(key(index).as_slice(), [b'v'; VALUE_BYTES].as_slice()).expect("redb load");
            }
        }
        transaction.commit().expect("redb commit");
    }
    fn set(&self, key: &[u8], value: &[u8]) {
        let transaction = self.0.begin_write().expect("redb begin");
        transaction.open_table(TABLE).expect("redb table").insert(key, value).expect("redb insert");
        transaction.commit().expect("redb commit"); // Durability::Immediate is redb's default
    }
    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        use redb::ReadableDatabase;
        let transaction = self.0.begin_read().expect("redb read");
        let table = transaction.open_table(TABLE).expect("redb table");
        table.get(key).expect("redb get").map(|value| value.value().to_vec())
    }
}

const STORES: [&str; 3] = ["quill", "fjall", "redb"];

fn open(name: &str, directory: &Path) -> Box<dyn Store> {
    match name {
        "quill" => {
            let options = quill_io_real::DbOptions { create_size_bytes: Some(1 << 30), ..Default::default() };
            Box::new(Quill(quill_io_real::Db::open(directory.join("quill.qkv"), options).expect("quill open")))
        }
        "fjall" => {
            let database = fjall::Database::builder(directory.join("fjall")).open().expect("fjall open");
            let keyspace = database.keyspace("kv", fjall::KeyspaceCreateOptions::default).expect("fjall keyspace");
            Box::new(Fjall(database, keyspace))
        }
        _ => Box::new(Redb(redb::Database::create(directory.join("redb.db")).expect("redb open"))),
    }
}

/// Runs `operation` on `threads` threads for `seconds`; returns ops/s and p50/p99 in µs.
fn measure(threads: usize, seconds: f64, operation: impl Fn(u64) + Sync) -> (f64, u64, u64) {
    let stop = AtomicBool::new(false);
    let histogram = Mutex::new(Histogram::<u64>::new(3).expect("histogram"));
    let started = Instant::now();
    std::thread::scope(|scope| {
        for thread in 0..threads as u64 {
            let (stop, histogram, operation) = (&stop, &histogram, &operation);
            scope.spawn(move || {
                let mut local = Histogram::<u64>::new(3).expect("histogram");
                let mut index = thread.wrapping_mul(7919);
                while !stop.load(Ordering::Relaxed) {
                    index = (index + 104_729) % KEYS;
                    let began = Instant::now();
                    operation(index);
                    local.saturating_record(began.elapsed().as_micros() as u64);
                }
                histogram.lock().expect("histogram").add(&local).expect("same bounds");
            });
        }
        std::thread::sleep(Duration::from_secs_f64(seconds));
        stop.store(true, Ordering::Relaxed);
    });
    let histogram = histogram.into_inner().expect("histogram");
    (
        histogram.len() as f64 / started.elapsed().as_secs_f64(),
        histogram.value_at_quantile(0.5),
        histogram.value_at_quantile(0.99),
    )
}

type Results = std::collections::BTreeMap<(String, String), Vec<(f64, u64, u64)>>;

fn round(name: &str, root: &Path, seconds: f64, results: &mut Results) {
    let directory = root.join(name);
    let _ = std::fs::remove_dir_all(&directory);
    std::fs::create_dir_all(&directory).expect("a directory");
    let store = open(name, &directory);
    store.load();
    let value = [b'w'; VALUE_BYTES];
    let mut record =
        |test: &str, figures| results.entry((test.to_string(), name.to_string())).or_default().push(figures);
    for threads in [1, 16, 64] {
        let figures = measure(threads, seconds, |index| store.set(&key(index), &value));
        record(&format!("durable SET, {threads} threads"), figures);
    }
    let warm = measure(32, seconds / 2.0, |index| assert!(store.get(&key(index)).is_some()));
    let _ = warm; // the first pass warms each store's cache
    record("GET warm, 32 threads", measure(32, seconds, |index| assert!(store.get(&key(index)).is_some())));
    drop(store);
    let began = Instant::now();
    let store = open(name, &directory);
    assert!(store.get(&key(1)).is_some());
    record("reopen to first GET (s)", (began.elapsed().as_secs_f64(), 0, 0));
    drop(store);
    let _ = std::fs::remove_dir_all(&directory);
}

fn median(mut values: Vec<(f64, u64, u64)>) -> (f64, u64, u64) {
    values.sort_by(|a, b| a.0.total_cmp(&b.0));
    values[values.len() / 2]
}

fn main() {
    let mut arguments = std::env::args().skip(1);
    let root = PathBuf::from(arguments.next().expect("usage: quill-bench-peers DIRECTORY [SECONDS] [ROUNDS]"));
    let seconds: f64 = arguments.next().map_or(3.0, |text| text.parse().expect("seconds"));
    let rounds: usize = arguments.next().map_or(3, |text| text.parse().expect("rounds"));
    let mut results = Results::new();
    for number in 0..rounds {
        for offset in 0..STORES.len() {
            let name = STORES[(number + offset) % STORES.len()];
            eprintln!("round {} of {rounds}: {name}", number + 1);
            round(name, &root, seconds, &mut results);
        }
    }
    println!("{:<28} {:>22} {:>22} {:>22} {:>10}", "test (medians)", "quill", "fjall", "redb", "q/best");
    let tests: Vec<String> =
        results.keys().map(|(test, _)| test.clone()).collect::<std::collections::BTreeSet<_>>().into_iter().collect();
    for test in tests {
        let cell = |store: &str| median(results[&(test.clone(), store.to_string())].clone());
        let (quill, fjall, redb) = (cell("quill"), cell("fjall"), cell("redb"));
        let show = |(rate, p50, p99): (f64, u64, u64)| {
            if test.starts_with("reopen") {
                format!("{rate:.3} s")
            } else {
                format!("{rate:.0}/s p50 {p50} p99 {p99}")
            }
        };
        let ratio =
            if test.starts_with("reopen") { fjall.0.min(redb.0) / quill.0 } else { quill.0 / fjall.0.max(redb.0) };
        println!("{test:<28} {:>22} {:>22} {:>22} {:>9.2}x", show(quill), show(fjall), show(redb), ratio);
    }
}
