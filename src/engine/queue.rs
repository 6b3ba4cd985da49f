//! The writer's queue: commands in the order they are sent, and when the
//! writer wakes for them. A command someone waits on (a redemption, a
//! durable or budgeted decision, an admin read) wakes the writer at once. A
//! decision SelectOffer answered already does not: the writer collects
//! those every [`EngineOptions::learn_interval`], or sooner when the queue
//! passes half full, so that answering one costs no switch to the writer's
//! thread (on a busy core, one or two per decision when each woke it).

use std::{
    sync::{Arc, OnceLock},
    thread::Thread,
    time::Duration,
};

use tokio::sync::mpsc::{self, error::TryRecvError};

use super::{Command, QUEUE};

/// Longest the writer sleeps when nothing comes: an idle server wakes a
/// few dozen times a second, and a decision is learned within this.
const IDLE_WAIT: Duration = Duration::from_millis(25);

/// The sending side, held by the engine.
#[derive(Debug)]
pub(super) struct WriterQueue {
    tx: mpsc::Sender<Command>,
    wake: Arc<Wake>,
}

/// How senders reach the writer's thread.
#[derive(Default, Debug)]
pub(super) struct Wake {
    thread: OnceLock<Thread>,
}

impl Wake {
    fn nudge(&self) {
        if let Some(t) = self.thread.get() {
            t.unpark();
        }
    }
}

/// The receiving side, held by the writer.
pub(super) struct WriterInbox {
    rx: mpsc::Receiver<Command>,
    wake: Arc<Wake>,
    interval: Duration,
}

/// A queue of [`QUEUE`] commands; `interval`: how long answered decisions
/// may wait to be collected (zero: the writer wakes for each).
pub(super) fn writer_queue(interval: Duration) -> (WriterQueue, WriterInbox) {
    let (tx, rx) = mpsc::channel(QUEUE);
    let wake = Arc::new(Wake::default());
    (
        WriterQueue {
            tx,
            wake: wake.clone(),
        },
        WriterInbox { rx, wake, interval },
    )
}

/// The writer is gone (stopped after a failure, or shut down).
pub(super) struct Closed;

impl Drop for WriterQueue {
    /// The last sender gone, the writer finds the queue closed at once
    /// rather than after its interval.
    fn drop(&mut self) {
        let (closed, _) = mpsc::channel(1);
        drop(std::mem::replace(&mut self.tx, closed));
        self.wake.nudge();
    }
}

impl WriterQueue {
    /// Sends `cmd`, which someone waits on: the writer wakes for it.
    pub(super) async fn send(&self, cmd: Command) -> Result<(), Closed> {
        let permit = self.reserve().await?;
        self.send_reserved(permit, cmd, true);
        Ok(())
    }

    /// Room for one command, waiting while the queue is full.
    pub(super) async fn reserve(&self) -> Result<mpsc::Permit<'_, Command>, Closed> {
        self.tx.reserve().await.map_err(|_| Closed)
    }

    /// Sends `cmd` in the room reserved; wakes the writer when `urgent` or
    /// when the queue is over half full.
    pub(super) fn send_reserved(
        &self,
        permit: mpsc::Permit<'_, Command>,
        cmd: Command,
        urgent: bool,
    ) {
        permit.send(cmd);
        if urgent || self.tx.capacity() < QUEUE / 2 {
            self.wake.nudge();
        }
    }
}

impl WriterInbox {
    /// Called on the writer's thread before it first waits.
    pub(super) fn register(&self) {
        let _ = self.wake.thread.set(std::thread::current());
    }

    /// The next command: at once if one is queued, else after sleeping
    /// until woken or the interval passes (longer while nothing comes).
    /// None once every sender is gone.
    pub(super) fn next(&mut self) -> Option<Command> {
        if self.interval.is_zero() {
            return self.rx.blocking_recv();
        }
        let mut wait = self.interval;
        loop {
            match self.rx.try_recv() {
                Ok(cmd) => return Some(cmd),
                Err(TryRecvError::Disconnected) => return None,
                Err(TryRecvError::Empty) => {
                    std::thread::park_timeout(wait);
                    wait = (wait * 2).min(IDLE_WAIT.max(self.interval));
                }
            }
        }
    }

    /// A command already queued, without waiting.
    pub(super) fn try_next(&mut self) -> Option<Command> {
        self.rx.try_recv().ok()
    }
}
