//! Threads that fill the index's partitions while recovery reads the log
//! (`Config::hand_out_index_work`): the engine hands a partition out with the records read for
//! it, a worker applies them, and the partition goes back to the engine. The engine stays
//! single-threaded; only the partitions, each owned by one side at a time, cross threads.

use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use quill_core::IndexWork;

/// Where handed-out partitions come from and go back to: the engine, behind `EngineRunner` or
/// the server loop, which also pass on the I/O a given-back partition provokes.
pub trait IndexWorkHost {
    fn poll_index_work(&mut self) -> Option<IndexWork>;
    fn complete_index_work(&mut self, work: IndexWork);
}

/// Worker threads at most (the partitions bound the useful number).
const WORKERS_MAX: usize = 8;

#[derive(Default)]
pub struct IndexWorkers {
    started: Option<Started>,
    /// Partitions handed to the workers and not collected yet.
    out: usize,
}

struct Started {
    to_workers: Option<Sender<IndexWork>>,
    from_workers: Receiver<IndexWork>,
    threads: Vec<JoinHandle<()>>,
}

impl IndexWorkers {
    /// Partitions at the workers.
    pub fn out(&self) -> usize {
        self.out
    }

    /// Gives a partition to a worker, starting the workers on first use. Returns it if no
    /// worker can take it (none could be started): the caller gives it straight back, and the
    /// engine applies it itself.
    fn dispatch(&mut self, work: IndexWork) -> Option<IndexWork> {
        let started = self.started.get_or_insert_with(start_workers);
        let sender = started.to_workers.as_ref().expect("workers stop only when dropped");
        match sender.send(work) {
            Ok(()) => {
                self.out += 1;
                None
            }
            Err(unsent) => Some(unsent.0),
        }
    }

    /// Hands the host's partitions to the workers, and gives back those they finished (each
    /// may hand out more); with `wait`, waits for one first.
    pub fn exchange(&mut self, host: &mut impl IndexWorkHost, wait: bool) {
        let mut wait = wait;
        loop {
            while let Some(work) = host.poll_index_work() {
                if let Some(unsent) = self.dispatch(work) {
                    host.complete_index_work(unsent);
                }
            }
            let Some(work) = self.collect(wait) else { return };
            wait = false;
            host.complete_index_work(work);
        }
    }

    /// A partition a worker finished; with `wait`, waits for one if any is out.
    fn collect(&mut self, wait: bool) -> Option<IndexWork> {
        let started = self.started.as_ref()?;
        if self.out == 0 {
            return None;
        }
        let work = if wait { started.from_workers.recv().ok() } else { started.from_workers.try_recv().ok() };
        if work.is_some() {
            self.out -= 1;
        }
        work
    }
}

fn start_workers() -> Started {
    let count = std::thread::available_parallelism().map_or(2, usize::from).clamp(1, WORKERS_MAX);
    let (to_workers, work_queue) = channel::<IndexWork>();
    let (done, from_workers) = channel();
    let work_queue = Arc::new(Mutex::new(work_queue));
    let threads = (0..count)
        .filter_map(|number| {
            let work_queue = Arc::clone(&work_queue);
            let done = done.clone();
            std::thread::Builder::new()
                .name(format!("quill-index-{number}"))
                .spawn(move || run_worker(&work_queue, &done))
                .ok()
        })
        .collect();
    Started { to_workers: Some(to_workers), from_workers, threads }
}

fn run_worker(work_queue: &Mutex<Receiver<IndexWork>>, done: &Sender<IndexWork>) {
    loop {
        // The lock is held only to take the next partition, not while applying it.
        let next = work_queue.lock().unwrap_or_else(|poison| poison.into_inner()).recv();
        let Ok(mut work) = next else { return };
        work.run();
        if done.send(work).is_err() {
            return;
        }
    }
}

impl Drop for IndexWorkers {
    fn drop(&mut self) {
        let Some(mut started) = self.started.take() else { return };
        drop(started.to_workers.take()); // the workers see the queue closed and return
        for thread in started.threads.drain(..) {
            _ = thread.join();
        }
    }
}
