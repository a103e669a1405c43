//! Moves usage records off the request path: a bounded channel to a task that
//! writes them (and their charges) in batches, and drains it on shutdown.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::domain::UsageRecord;
use crate::store::Store;

/// Most records written in one transaction.
const BATCH_SIZE: usize = 512;

/// The sending side, cloned into every request. It also counts metered
/// requests still in flight, so shutdown can wait for their records.
#[derive(Clone, Debug)]
pub struct UsageSink {
    sender: mpsc::Sender<UsageRecord>,
    in_flight: Arc<AtomicUsize>,
}

impl UsageSink {
    /// Notes that a metered request started; its record will follow.
    pub fn begin(&self) {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
    }

    /// Metered requests whose records have not been queued yet.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }

    /// Queues the record of a request counted by [`UsageSink::begin`].
    pub fn finish(&self, record: UsageRecord) {
        self.record(record);
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
    }

    /// Queues a record without waiting. If the queue is full the record is
    /// counted as dropped (and logged) rather than blocking the request.
    pub fn record(&self, record: UsageRecord) {
        if let Err(error) = self.sender.try_send(record) {
            metrics::counter!("switchyard_usage_dropped_total").increment(1);
            tracing::error!(%error, "usage queue is full or closed; a usage record was dropped");
        }
    }
}

/// Totals written by the recorder over its life.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RecorderTotals {
    pub usage_rows: u64,
    pub charges: u64,
    pub failed_batches: u64,
}

/// Starts the writer task. Cancel `shutdown` to make it drain the queue and stop.
pub fn start(
    store: Store,
    capacity: usize,
    flush_interval: Duration,
    shutdown: CancellationToken,
) -> (UsageSink, tokio::task::JoinHandle<RecorderTotals>) {
    let (sender, receiver) = mpsc::channel(capacity);
    let handle = tokio::spawn(run(store, receiver, flush_interval, shutdown));
    (
        UsageSink {
            sender,
            in_flight: Arc::new(AtomicUsize::new(0)),
        },
        handle,
    )
}

async fn run(
    store: Store,
    mut receiver: mpsc::Receiver<UsageRecord>,
    flush_interval: Duration,
    shutdown: CancellationToken,
) -> RecorderTotals {
    let mut totals = RecorderTotals::default();
    let mut batch: Vec<UsageRecord> = Vec::with_capacity(BATCH_SIZE);
    loop {
        tokio::select! {
            received = receiver.recv_many(&mut batch, BATCH_SIZE) => {
                if received == 0 {
                    break;
                }
                // Let a burst gather for a moment so one transaction carries many rows.
                if batch.len() < BATCH_SIZE {
                    tokio::select! {
                        () = tokio::time::sleep(flush_interval) => {}
                        () = shutdown.cancelled() => {}
                    }
                    while batch.len() < BATCH_SIZE {
                        match receiver.try_recv() {
                            Ok(record) => batch.push(record),
                            Err(_) => break,
                        }
                    }
                }
                write(&store, &mut batch, &mut totals).await;
            }
            () = shutdown.cancelled() => break,
        }
    }
    // Drain whatever is still queued; senders may still be finishing.
    receiver.close();
    while let Some(record) = receiver.recv().await {
        batch.push(record);
        if batch.len() >= BATCH_SIZE {
            write(&store, &mut batch, &mut totals).await;
        }
    }
    write(&store, &mut batch, &mut totals).await;
    totals
}

async fn write(store: &Store, batch: &mut Vec<UsageRecord>, totals: &mut RecorderTotals) {
    if batch.is_empty() {
        return;
    }
    // A failed batch is retried a few times; charges are idempotent per record id.
    for attempt in 1..=5_u32 {
        match store.write_usage_batch(batch).await {
            Ok(outcome) => {
                totals.usage_rows += outcome.usage_rows;
                totals.charges += outcome.charges;
                metrics::counter!("switchyard_usage_rows_written_total")
                    .increment(outcome.usage_rows);
                batch.clear();
                return;
            }
            Err(error) => {
                tracing::warn!(%error, attempt, rows = batch.len(), "writing a usage batch failed");
                tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt))).await;
            }
        }
    }
    totals.failed_batches += 1;
    metrics::counter!("switchyard_usage_dropped_total").increment(batch.len() as u64);
    tracing::error!(
        rows = batch.len(),
        "giving up on a usage batch after 5 attempts"
    );
    batch.clear();
}
