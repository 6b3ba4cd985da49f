//! The engine's error type: what a request can fail with. Its one mapping
//! to gRPC status codes is at the edge, in [`crate::service`].

use crate::store::StoreError;

/// Everything a request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request is malformed; the message says which field and why.
    #[error("{0}")]
    InvalidArgument(String),
    /// A named campaign or decision does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The request is well-formed but the state forbids it (e.g. a late redemption).
    #[error("{0}")]
    FailedPrecondition(String),
    /// Nothing may be chosen now (budgets spent, caps reached).
    #[error("{0}")]
    ResourceExhausted(String),
    /// The server cannot take the request now (shutting down, storage failed).
    #[error("{0}")]
    Unavailable(String),
    /// A conditional change found another revision than it expected.
    #[error("{0}")]
    Aborted(String),
    /// What the request creates exists already.
    #[error("{0}")]
    AlreadyExists(String),
    /// Storage failed.
    #[error("storage: {0}")]
    Store(#[from] StoreError),
}

impl Error {
    /// The answer for an id that is not one of this server's decisions,
    /// whether its MAC failed or no record exists: the same words, so that a
    /// prober learns nothing from which.
    pub fn unknown_decision() -> Error {
        Error::NotFound(
            "no such decision: the id is unknown to this server (an id is valid only on the server, or cluster, that made it)".into(),
        )
    }
}
