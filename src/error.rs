//! The service's error type and its one mapping to gRPC status codes.

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

/// Longest status message sent: a longer one (a config error quoting a
/// 200 KB line) would not fit the HTTP/2 headers, and the client would see
/// only "stream removed".
const MAX_MESSAGE_CHARS: usize = 1024;

/// `msg`, cut to [`MAX_MESSAGE_CHARS`] characters with a note when cut.
fn bounded(mut msg: String) -> String {
    if let Some((i, _)) = msg.char_indices().nth(MAX_MESSAGE_CHARS) {
        msg.truncate(i);
        msg.push_str(" [message cut]");
    }
    msg
}

impl From<Error> for tonic::Status {
    fn from(e: Error) -> Self {
        let msg = bounded(e.to_string());
        match e {
            Error::InvalidArgument(_) => tonic::Status::invalid_argument(msg),
            Error::NotFound(_) => tonic::Status::not_found(msg),
            Error::FailedPrecondition(_) => tonic::Status::failed_precondition(msg),
            Error::Unavailable(_) => tonic::Status::unavailable(msg),
            Error::ResourceExhausted(_) => tonic::Status::resource_exhausted(msg),
            Error::Store(StoreError::Sled(_)) => tonic::Status::unavailable(msg),
            Error::Store(StoreError::Corrupt { .. }) => tonic::Status::data_loss(msg),
            Error::Aborted(_) => tonic::Status::aborted(msg),
            Error::AlreadyExists(_) => tonic::Status::already_exists(msg),
            Error::Store(StoreError::Config(_)) => tonic::Status::failed_precondition(msg),
            Error::Store(StoreError::CustomerKeyMismatch { .. }) => {
                tonic::Status::failed_precondition(msg)
            }
        }
    }
}
