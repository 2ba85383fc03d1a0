//! A recording wrapper around a real driver: every write and sync the engine issued, in order,
//! with its bytes and when the driver reported it complete, into an [`IoRecorder`] the
//! application shares. The application adds what it wrote and saw acknowledged, so that
//! `quill_sim::history` can rebuild every legal crash image of the real run and check recovery
//! on each, under the real driver's ordering.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use quill_core::history::{HistoryEvent, IoHistory};
use quill_core::{Config, IoCompletion, IoKind, IoRequest};

use crate::driver::Driver;

/// The shared history: cloned into the driver wrapper and kept by the application.
#[derive(Clone, Default)]
pub struct IoRecorder {
    history: Arc<Mutex<IoHistory>>,
}

impl IoRecorder {
    pub fn new() -> IoRecorder {
        IoRecorder::default()
    }

    fn lock(&self) -> MutexGuard<'_, IoHistory> {
        // A panic elsewhere leaves the history as complete as it was; keep recording.
        self.history.lock().unwrap_or_else(|poison| poison.into_inner())
    }

    /// The application sends a write of `value` to `key`.
    pub fn invoked(&self, key: &[u8], value: &[u8]) {
        self.lock().events.push(HistoryEvent::Invoked { key: key.to_vec(), value: value.to_vec() });
    }

    /// That write came back acknowledged.
    pub fn acknowledged(&self, key: &[u8], value: &[u8]) {
        self.lock().events.push(HistoryEvent::Acknowledged { key: key.to_vec(), value: value.to_vec() });
    }

    /// The volume finished opening (format or recovery).
    pub fn opened(&self) {
        self.push(HistoryEvent::Opened);
    }

    /// The history so far.
    pub fn history(&self) -> IoHistory {
        self.lock().clone()
    }

    pub(crate) fn set_config(&self, config: &Config) {
        self.lock().config = Some(config.clone());
    }

    fn push(&self, event: HistoryEvent) {
        self.lock().events.push(event);
    }
}

impl std::fmt::Debug for IoRecorder {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "IoRecorder({} events)", self.lock().events.len())
    }
}

/// Wraps a driver: requests pass through unchanged; writes, syncs and their completions are
/// recorded (reads pass unrecorded).
pub struct RecordingDriver {
    inner: Box<dyn Driver>,
    recorder: IoRecorder,
    /// Recorded requests in flight: token to history id.
    ids: HashMap<u64, u64>,
    id_next: u64,
}

impl RecordingDriver {
    pub fn new(inner: Box<dyn Driver>, recorder: IoRecorder) -> RecordingDriver {
        RecordingDriver { inner, recorder, ids: HashMap::new(), id_next: 0 }
    }
}

impl Driver for RecordingDriver {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn push(&mut self, request: IoRequest) {
        let id = self.id_next;
        let event = match &request.kind {
            IoKind::Read { .. } => None,
            IoKind::Write { offset_bytes, data } => {
                Some(HistoryEvent::Write { id, offset_bytes: *offset_bytes, data: data.clone(), durable: false })
            }
            IoKind::WriteDurable { offset_bytes, data } => {
                Some(HistoryEvent::Write { id, offset_bytes: *offset_bytes, data: data.clone(), durable: true })
            }
            IoKind::Sync => Some(HistoryEvent::Sync { id }),
        };
        if let Some(event) = event {
            self.id_next += 1;
            self.ids.insert(request.token.as_u64(), id);
            self.recorder.push(event);
        }
        self.inner.push(request);
    }

    fn run(&mut self, wait: bool, completions: &mut Vec<IoCompletion>) -> Result<(), crate::DriverError> {
        let before = completions.len();
        let result = self.inner.run(wait, completions);
        for completion in &completions[before..] {
            if let Some(id) = self.ids.remove(&completion.token.as_u64()) {
                self.recorder.push(HistoryEvent::Completed { id, ok: completion.result.is_ok() });
            }
        }
        result
    }

    fn pending(&self) -> usize {
        self.inner.pending()
    }
}
