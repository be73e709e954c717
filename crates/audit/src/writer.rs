//! [`AuditSink`]: the handle the gateway awaits once per request, and the dedicated writer
//! thread behind it.
//!
//! Requests serialise their event on their own task, then queue it (bounded) for one writer
//! thread. The thread takes everything queued (up to [`MAX_GROUP`] records), seals the lines,
//! hands them to the OS with one `write(2)` and, with `durability: fsync`, one
//! `fdatasync(2)`; then it answers every request of the group. No timer is involved: records
//! arriving during a write or sync form the next group, which is what makes group commit
//! cheap under load and instant when idle.
//!
//! With a file and `durability: os` records skip the thread: they are group-committed by a
//! task on the requests' own runtime ([`crate::gather`]), because the two context switches of
//! the hop to the thread and back were, on a busy core, most of the audit's cost (about two per
//! request). The chain lives behind one mutex, so whoever writes, lines are sealed in the
//! order they are written. The thread still takes every record that overflows a full group.

use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use time::OffsetDateTime;
use tokio::sync::{mpsc, oneshot};

use crate::chain::ChainHead;
use crate::clock::{Clock, SystemClock};
use crate::config::{AuditConfig, Durability, OnFailure, SinkKind};
use crate::error::AuditError;
use crate::event::{AuditEvent, OutcomeCode};
use crate::filelog::{FileLog, Recovered};
use crate::gather::Gatherer;
use crate::input::AuditInput;

/// Most records written (and synced) as one group.
pub const MAX_GROUP: usize = 1000;

/// Writes audit records; cheap to clone, shared by all request tasks.
#[derive(Debug, Clone)]
pub struct AuditSink {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    tx: mpsc::Sender<Job>,
    health: Arc<Health>,
    observer: String,
    write_timeout: Duration,
    on_failure: OnFailure,
    /// Group commit on the requests' runtime, when allowed (a file, `durability: os`).
    gather: Option<Arc<Gatherer>>,
}

#[derive(Clone)]
pub(crate) struct SharedWriter(Arc<Mutex<Writer>>);

impl std::fmt::Debug for SharedWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SharedWriter")
    }
}

impl SharedWriter {
    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, Writer> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[derive(Debug)]
struct Job {
    event: Vec<u8>,
    done: oneshot::Sender<Result<(), AuditError>>,
}

#[derive(Debug)]
struct Health {
    healthy: AtomicBool,
    write_errors: AtomicU64,
    last_error: Mutex<Option<String>>,
}

impl Health {
    fn ok(&self) {
        self.healthy.store(true, Ordering::Release);
    }

    fn failed(&self, err: &AuditError) {
        self.healthy.store(false, Ordering::Release);
        self.write_errors.fetch_add(1, Ordering::Relaxed);
        *self
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(err.to_string());
    }
}

impl AuditSink {
    /// Open the configured sink: for files, find where the chain left off (see
    /// [`crate::filelog`] for the rules) and start the writer thread.
    pub fn open(config: &AuditConfig) -> Result<AuditSink, AuditError> {
        AuditSink::open_with_clock(config, Arc::new(SystemClock))
    }

    /// [`AuditSink::open`] with the clock that decides daily rotation and notice times.
    pub fn open_with_clock(
        config: &AuditConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<AuditSink, AuditError> {
        let (target, recovered) = match config.sink {
            SinkKind::File => {
                let mut log = FileLog::new(
                    config.path.clone(),
                    config.rotate_size,
                    config.rotate_daily,
                    config.durability == Durability::Fsync,
                    clock.clone(),
                );
                let recovered = log.recover()?;
                (Target::File(log), recovered)
            }
            SinkKind::Stdout => (
                Target::Stream(StreamLog::new(Box::new(std::io::stdout()))),
                Recovered {
                    head: ChainHead::genesis(),
                    truncated: None,
                },
            ),
        };
        AuditSink::start(config, target, recovered, clock)
    }

    /// A sink keeping lines in memory, for tests of code that audits (the gateway's).
    pub fn memory(observer: &str) -> (AuditSink, MemoryLog) {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let config = AuditConfig {
            observer: observer.to_owned(),
            ..AuditConfig::default()
        };
        let target = Target::Stream(StreamLog::new(Box::new(SharedBuf(buf.clone()))));
        let recovered = Recovered {
            head: ChainHead::genesis(),
            truncated: None,
        };
        let sink = AuditSink::start(&config, target, recovered, Arc::new(SystemClock));
        let sink = sink.unwrap_or_else(|_| AuditSink::closed(&config));
        (sink, MemoryLog(buf))
    }

    fn closed(config: &AuditConfig) -> AuditSink {
        let (tx, _) = mpsc::channel(1);
        AuditSink::from_parts(config, tx, health(false), None)
    }

    fn from_parts(
        config: &AuditConfig,
        tx: mpsc::Sender<Job>,
        health: Arc<Health>,
        gather: Option<Arc<Gatherer>>,
    ) -> AuditSink {
        AuditSink {
            inner: Arc::new(Inner {
                tx,
                health,
                observer: config.observer.clone(),
                write_timeout: config.write_timeout,
                on_failure: config.on_failure,
                gather,
            }),
        }
    }

    fn start(
        config: &AuditConfig,
        target: Target,
        recovered: Recovered,
        clock: Arc<dyn Clock>,
    ) -> Result<AuditSink, AuditError> {
        let (tx, rx) = mpsc::channel(config.queue_capacity.max(1));
        let health = health(true);
        let notice = recovered.truncated.map(|(path, bytes)| {
            (
                OutcomeCode::MinorFailure,
                format!(
                    "audit file {} ends with an incomplete record of {bytes} bytes (the writer \
                     stopped mid-write); it is left as it was and the chain continues from its \
                     last complete record",
                    file_name(&path)
                ),
            )
        });
        let gather_allowed =
            matches!(target, Target::File(_)) && config.durability == Durability::Os;
        let writer = SharedWriter(Arc::new(Mutex::new(Writer {
            target,
            head: recovered.head,
            notice,
            needs_recovery: None,
            health: Arc::clone(&health),
            observer: config.observer.clone(),
            clock,
        })));
        let gather = gather_allowed.then(|| Gatherer::new(writer.clone(), MAX_GROUP));
        std::thread::Builder::new()
            .name("fhirgate-audit".to_owned())
            .spawn(move || run(&writer, rx))
            .map_err(|e| AuditError::write("<audit writer thread>", e))?;
        Ok(AuditSink::from_parts(config, tx, health, gather))
    }

    /// Record one request. Resolves when the line has been handed to the OS (`durability: os`)
    /// or synced (`fsync`). An error means the record is not known to be stored: the gateway
    /// must not pretend otherwise (see [`AuditSink::on_failure`]).
    ///
    /// Call it within a Tokio runtime (the wait is bounded by `write_timeout`). Once the first
    /// poll has returned, the record is queued and will be written even if the future is
    /// dropped, unless the queue was full at that moment.
    pub async fn record(&self, input: AuditInput) -> Result<(), AuditError> {
        let event = crate::event::serialize_event(&input, &self.inner.observer)?;
        self.record_json(event).await
    }

    async fn record_json(&self, event: Vec<u8>) -> Result<(), AuditError> {
        let event = match &self.inner.gather {
            // No timeout: the flush task always finishes, and a stalled disk stalls it exactly
            // as it would stall a write made by the request itself.
            Some(gather) => match gather.join(event) {
                Ok(joined) => {
                    let result = joined.written().await;
                    if let Err(e @ AuditError::Closed) = &result {
                        self.inner.health.failed(e);
                    }
                    return result;
                }
                Err(event) => event,
            },
            None => event,
        };
        let (done, rx) = oneshot::channel();
        // Enqueue before the first await when there is room, so a caller that drops this
        // future (client gone) still gets its record written. Only a full queue makes the
        // enqueue itself cancellable.
        let queued = match self.inner.tx.try_send(Job { event, done }) {
            Ok(()) => None,
            Err(mpsc::error::TrySendError::Full(job)) => Some(job),
            Err(mpsc::error::TrySendError::Closed(_)) => {
                self.inner.health.failed(&AuditError::Closed);
                return Err(AuditError::Closed);
            }
        };
        let write = async {
            if let Some(job) = queued {
                self.inner
                    .tx
                    .send(job)
                    .await
                    .map_err(|_| AuditError::Closed)?;
            }
            rx.await.map_err(|_| AuditError::Closed)?
        };
        let result = match tokio::time::timeout(self.inner.write_timeout, write).await {
            Ok(result) => result,
            Err(_) => Err(AuditError::Timeout(self.inner.write_timeout)),
        };
        if let Err(e @ (AuditError::Timeout(_) | AuditError::Closed)) = &result {
            self.inner.health.failed(e);
        }
        result
    }

    /// False after a failed write until the next successful one. With `on_failure: refuse`
    /// the gateway answers PHI requests with 503 meanwhile; it keeps auditing those refusals,
    /// and the first one that is written makes the sink healthy again.
    pub fn is_healthy(&self) -> bool {
        self.inner.health.healthy.load(Ordering::Acquire)
    }

    pub fn on_failure(&self) -> OnFailure {
        self.inner.on_failure
    }

    /// Records queued and not yet taken by the writer (a metric).
    pub fn queue_depth(&self) -> usize {
        self.inner.tx.max_capacity() - self.inner.tx.capacity()
    }

    /// Failed writes since start (a metric).
    pub fn write_errors(&self) -> u64 {
        self.inner.health.write_errors.load(Ordering::Relaxed)
    }

    /// The most recent failure, for `/readyz` and logs.
    pub fn last_error(&self) -> Option<String> {
        self.inner
            .health
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

fn file_name(path: &Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

/// Lines written by a [`AuditSink::memory`] sink.
#[derive(Debug, Clone)]
pub struct MemoryLog(Arc<Mutex<Vec<u8>>>);

impl MemoryLog {
    /// The raw lines, chain fields included.
    pub fn lines(&self) -> Vec<String> {
        let buf = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        String::from_utf8_lossy(&buf)
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// The events, in order.
    pub fn events(&self) -> Vec<AuditEvent> {
        self.lines()
            .iter()
            .filter_map(|l| crate::search::parse_record(l.as_bytes()).ok())
            .map(|(_, event)| event)
            .collect()
    }
}

#[derive(Debug)]
struct SharedBuf(Arc<Mutex<Vec<u8>>>);

impl Write for SharedBuf {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A non-file target (stdout, memory): no rotation, no sync.
struct StreamLog {
    out: Box<dyn Write + Send>,
    pending: Vec<u8>,
}

impl StreamLog {
    fn new(out: Box<dyn Write + Send>) -> StreamLog {
        StreamLog {
            out,
            pending: Vec::new(),
        }
    }
}

enum Target {
    File(FileLog),
    Stream(StreamLog),
}

impl Target {
    fn append(&mut self, seq: u64, line: &[u8]) -> Result<(), AuditError> {
        match self {
            Target::File(log) => log.append(seq, line),
            Target::Stream(s) => {
                s.pending.extend_from_slice(line);
                Ok(())
            }
        }
    }

    fn flush(&mut self) -> Result<(), AuditError> {
        match self {
            Target::File(log) => log.flush(),
            Target::Stream(s) => {
                let result = s.out.write_all(&s.pending).and_then(|()| s.out.flush());
                s.pending.clear();
                result.map_err(|e| AuditError::write("<stream>", e))
            }
        }
    }
}

pub(crate) struct Writer {
    target: Target,
    head: ChainHead,
    /// A trail notice to write before the next group.
    notice: Option<(OutcomeCode, String)>,
    /// Set after a failed write: the chain on disk must be re-read before writing again.
    needs_recovery: Option<String>,
    health: Arc<Health>,
    observer: String,
    clock: Arc<dyn Clock>,
}

fn health(healthy: bool) -> Arc<Health> {
    Arc::new(Health {
        healthy: AtomicBool::new(healthy),
        write_errors: AtomicU64::new(0),
        last_error: Mutex::new(None),
    })
}

/// The writer thread: one group of queued records per lock of the writer.
fn run(writer: &SharedWriter, mut rx: mpsc::Receiver<Job>) {
    let mut group: Vec<Job> = Vec::with_capacity(MAX_GROUP);
    while let Some(job) = rx.blocking_recv() {
        group.push(job);
        while group.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        let events: Vec<&[u8]> = group.iter().map(|job| job.event.as_slice()).collect();
        let result = writer.lock().write_accounted(&events);
        drop(events);
        for job in group.drain(..) {
            let _ = job.done.send(result.clone());
        }
    }
}

impl Writer {
    /// Write `events` as one group and keep the sink's health in step.
    pub(crate) fn write_accounted(&mut self, events: &[&[u8]]) -> Result<(), AuditError> {
        let result = self.write_group(events);
        match &result {
            Ok(()) => self.health.ok(),
            Err(e) => {
                tracing::error!(error = %e, records = events.len(), "audit write failed");
                self.health.failed(e);
                self.needs_recovery = Some(e.to_string());
            }
        }
        result
    }

    fn write_group(&mut self, events: &[&[u8]]) -> Result<(), AuditError> {
        if let Some(reason) = self.needs_recovery.take() {
            self.recover(reason)?;
        }
        let mut line = Vec::new();
        if let Some((outcome, text)) = self.notice.take() {
            let now = OffsetDateTime::from(self.clock.now());
            let event = AuditEvent::trail_notice(now, &self.observer, outcome, text);
            let json =
                serde_json::to_vec(&event).map_err(|e| AuditError::Serialize(e.to_string()))?;
            let seq = self.head.seal(&json, &mut line);
            self.target.append(seq, &line)?;
        }
        for event in events {
            line.clear();
            let seq = self.head.seal(event, &mut line);
            self.target.append(seq, &line)?;
        }
        self.target.flush()
    }

    /// After a failure nothing in memory can be trusted about what reached the disk: re-read
    /// the chain, and say in the trail itself that writing failed.
    fn recover(&mut self, reason: String) -> Result<(), AuditError> {
        let Target::File(log) = &mut self.target else {
            return Ok(());
        };
        let recovered = match log.recover() {
            Ok(r) => r,
            Err(e) => {
                self.needs_recovery = Some(reason);
                return Err(e);
            }
        };
        self.head = recovered.head;
        let mut text = format!(
            "audit writing in {} failed and has resumed; the requests whose records failed were \
             answered as audit failures: {reason}",
            log.dir().display()
        );
        if let Some((path, bytes)) = recovered.truncated {
            text.push_str(&format!(
                "; {} ends with an incomplete record of {bytes} bytes, left as it was",
                file_name(&path)
            ));
        }
        self.notice = Some((OutcomeCode::SeriousFailure, text));
        Ok(())
    }
}
