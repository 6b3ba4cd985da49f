//! Whether the server can serve SelectOffer right now: what `GET /readyz`
//! on the metrics port answers ([`crate::web`]). The server's wiring
//! ([`crate::server`]) keeps it beside the gRPC health service: the storage
//! watch marks the store unusable exactly when it turns health NOT_SERVING,
//! and shutdown marks the server stopping. The metrics port opens only once
//! the store is open and the campaigns are loaded, so those need no flag.

use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::Mutex;

/// The server's readiness, shared by the storage watch, shutdown and `/readyz`.
#[derive(Debug, Default)]
pub(crate) struct Readiness {
    stopping: AtomicBool,
    /// Why writes would fail (gRPC health NOT_SERVING), if they would.
    storage_problem: Mutex<Option<String>>,
}

impl Readiness {
    /// Ready: the store is usable and the server is not stopping.
    pub(crate) fn new() -> Readiness {
        Readiness::default()
    }

    /// Records the storage's state, as reported to gRPC health: `Some(why)`
    /// while it is NOT_SERVING, `None` once it is SERVING again.
    pub(crate) fn set_storage_problem(&self, problem: Option<String>) {
        *self.storage_problem.lock() = problem;
    }

    /// Marks the server as shutting down (for good).
    pub(crate) fn set_stopping(&self) {
        self.stopping.store(true, Ordering::SeqCst);
    }

    /// `Ok` when SelectOffer can be served; else every reason it cannot.
    pub(crate) fn check(&self) -> Result<(), Vec<String>> {
        let mut why = Vec::new();
        if self.stopping.load(Ordering::SeqCst) {
            why.push("shutting down".to_owned());
        }
        if let Some(p) = self.storage_problem.lock().as_deref() {
            why.push(format!("storage: {p} (gRPC health is NOT_SERVING)"));
        }
        if why.is_empty() { Ok(()) } else { Err(why) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_until_storage_fails_or_shutdown_starts() {
        let r = Readiness::new();
        assert_eq!(r.check(), Ok(()));
        r.set_storage_problem(Some("the disk is nearly full".into()));
        let why = r.check().expect_err("not ready");
        assert_eq!(why.len(), 1);
        assert!(why[0].contains("nearly full"), "{why:?}");
        r.set_storage_problem(None);
        assert_eq!(r.check(), Ok(()));
        r.set_stopping();
        assert_eq!(r.check(), Err(vec!["shutting down".to_owned()]));
        r.set_storage_problem(Some("x".into()));
        assert_eq!(r.check().expect_err("not ready").len(), 2);
    }
}
