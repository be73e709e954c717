//! Group commit on the requests' own runtime, for a file sink with `durability: os`.
//!
//! A request's record joins the open group. The first record of a group spawns one flush
//! task, which yields once before it takes the group: by then every request the runtime was
//! about to run has had its turn to join. The group goes to the OS in one `write(2)`, and
//! each request waits for its group's result before its response is sent, so the "handed to
//! the OS before the last byte" rule holds. One write per group instead of one per request:
//! on the proxy benchmark (64 connections, one core) a group held about 35 records, and the
//! audited read went from about three quarters of the unaudited read's requests/s to about
//! the same (docs/scaling.md).
//!
//! The flush is a task of its own rather than the first request's: a client that goes away
//! must not strand the records that joined its group.

use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::watch;

use crate::error::AuditError;
use crate::writer::SharedWriter;

type GroupResult = Option<Result<(), AuditError>>;

/// The open group of records waiting for their flush task.
#[derive(Debug)]
pub(crate) struct Gatherer {
    open: Mutex<OpenGroup>,
    writer: SharedWriter,
    max_group: usize,
}

#[derive(Debug, Default)]
struct OpenGroup {
    events: Vec<Vec<u8>>,
    /// Present while a flush task is scheduled for `events`.
    result: Option<watch::Sender<GroupResult>>,
}

/// A record's place in a group: resolves when the group has been written.
pub(crate) struct Joined(watch::Receiver<GroupResult>);

impl Joined {
    pub async fn written(mut self) -> Result<(), AuditError> {
        match self.0.wait_for(Option::is_some).await {
            Ok(result) => result.clone().unwrap_or(Err(AuditError::Closed)),
            // The flush task was dropped unfinished: only a runtime shutting down does that.
            Err(_) => Err(AuditError::Closed),
        }
    }
}

impl Gatherer {
    pub fn new(writer: SharedWriter, max_group: usize) -> Arc<Gatherer> {
        Arc::new(Gatherer {
            open: Mutex::new(OpenGroup::default()),
            writer,
            max_group,
        })
    }

    /// Add `event` to the open group. Gives the event back when the group is full or there is
    /// no runtime to flush it on; the caller then queues it for the writer thread.
    pub fn join(self: &Arc<Self>, event: Vec<u8>) -> Result<Joined, Vec<u8>> {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return Err(event);
        };
        let mut open = self.lock();
        if open.events.len() >= self.max_group {
            return Err(event);
        }
        open.events.push(event);
        if let Some(result) = &open.result {
            return Ok(Joined(result.subscribe()));
        }
        let (result, joined) = watch::channel(None);
        open.result = Some(result);
        drop(open);
        runtime.spawn(Arc::clone(self).flush());
        Ok(Joined(joined))
    }

    async fn flush(self: Arc<Self>) {
        tokio::task::yield_now().await;
        let (events, result) = {
            let mut open = self.lock();
            (std::mem::take(&mut open.events), open.result.take())
        };
        let lines: Vec<&[u8]> = events.iter().map(Vec::as_slice).collect();
        // A blocking lock on the runtime: the writer thread holds it only for records that
        // overflowed a full group, and a stalled disk would stall a direct write just the same.
        let written = self.writer.lock().write_accounted(&lines);
        if let Some(result) = result {
            result.send_replace(Some(written));
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, OpenGroup> {
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
