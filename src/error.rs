//! The engine's error type: what a request can fail with, and why as a
//! stable [`Reason`]. Its one mapping to gRPC statuses is at the edge, in
//! [`crate::service`].

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
    /// The server is at a limit of its own (requests in flight, one backup).
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
    /// A refusal with a specific reason (which also fixes its status code).
    #[error("{message}")]
    Refused {
        /// Why, as callers branch on it.
        reason: Reason,
        /// What a person reads.
        message: String,
    },
    /// Storage failed.
    #[error("storage: {0}")]
    Store(#[from] StoreError),
}

impl Error {
    /// A refusal for `reason`, worded by `message`.
    pub fn refused(reason: Reason, message: impl Into<String>) -> Error {
        Error::Refused {
            reason,
            message: message.into(),
        }
    }

    /// The answer for an id that is not one of this server's decisions,
    /// whether its MAC failed or no record exists: the same words, so that a
    /// prober learns nothing from which.
    pub fn unknown_decision() -> Error {
        Error::refused(
            Reason::DecisionNotFound,
            "no such decision: the id is unknown to this server (an id is valid only on the server, or cluster, that made it)",
        )
    }

    /// Why, as a stable name.
    pub fn reason(&self) -> Reason {
        match self {
            Error::InvalidArgument(_) => Reason::InvalidArgument,
            Error::NotFound(_) => Reason::NotFound,
            Error::FailedPrecondition(_) => Reason::FailedPrecondition,
            Error::ResourceExhausted(_) => Reason::Overloaded,
            Error::Unavailable(_) => Reason::Unavailable,
            Error::Aborted(_) => Reason::RevisionConflict,
            Error::AlreadyExists(_) => Reason::AlreadyExists,
            Error::Refused { reason, .. } => *reason,
            Error::Store(StoreError::Backend(_)) => Reason::StorageFailed,
            Error::Store(StoreError::Corrupt { .. }) => Reason::StoreCorrupt,
            Error::Store(StoreError::Config(_)) => Reason::FailedPrecondition,
            Error::Store(StoreError::CustomerKeyMismatch { .. }) => Reason::FailedPrecondition,
        }
    }
}

/// The status codes a [`Reason`] can carry (the gRPC codes, without a
/// dependency on tonic here).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// INVALID_ARGUMENT
    InvalidArgument,
    /// NOT_FOUND
    NotFound,
    /// ALREADY_EXISTS
    AlreadyExists,
    /// PERMISSION_DENIED
    PermissionDenied,
    /// RESOURCE_EXHAUSTED
    ResourceExhausted,
    /// FAILED_PRECONDITION
    FailedPrecondition,
    /// ABORTED
    Aborted,
    /// DEADLINE_EXCEEDED
    DeadlineExceeded,
    /// INTERNAL
    Internal,
    /// UNAVAILABLE
    Unavailable,
    /// DATA_LOSS
    DataLoss,
    /// UNAUTHENTICATED
    Unauthenticated,
}

impl Code {
    /// The name gRPC gives the code (as a service config spells it).
    pub fn as_str(self) -> &'static str {
        match self {
            Code::InvalidArgument => "INVALID_ARGUMENT",
            Code::NotFound => "NOT_FOUND",
            Code::AlreadyExists => "ALREADY_EXISTS",
            Code::PermissionDenied => "PERMISSION_DENIED",
            Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
            Code::FailedPrecondition => "FAILED_PRECONDITION",
            Code::Aborted => "ABORTED",
            Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
            Code::Internal => "INTERNAL",
            Code::Unavailable => "UNAVAILABLE",
            Code::DataLoss => "DATA_LOSS",
            Code::Unauthenticated => "UNAUTHENTICATED",
        }
    }
}

/// The `domain` of every `google.rpc.ErrorInfo` this service sends.
pub(crate) const ERROR_DOMAIN: &str = "offer-bandit";

macro_rules! reasons {
    ($($(#[$doc:meta])* $variant:ident = $name:literal, $code:ident, $retry:literal;)*) => {
        /// Why a request failed, as a stable name a caller may branch on: the
        /// `reason` of the `google.rpc.ErrorInfo` every error carries. Each
        /// reason has one status code, and whether an automatic retry may
        /// help; docs/errors.md is the table, and a test holds it, this
        /// enum and `deploy/grpc-service-config.json` together.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum Reason {
            $($(#[$doc])* $variant,)*
        }

        impl Reason {
            /// Every reason, in table order.
            pub const ALL: &'static [Reason] = &[$(Reason::$variant,)*];

            /// The stable name (`google.rpc.ErrorInfo.reason`).
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Reason::$variant => $name,)*
                }
            }

            /// The status code the reason is sent with.
            pub fn code(self) -> Code {
                match self {
                    $(Reason::$variant => Code::$code,)*
                }
            }

            /// Whether the same request, retried automatically with
            /// backoff, may succeed.
            pub fn retryable(self) -> bool {
                match self {
                    $(Reason::$variant => $retry,)*
                }
            }
        }
    };
}

reasons! {
    /// A field is malformed or out of range; the message names it.
    InvalidArgument = "INVALID_ARGUMENT", InvalidArgument, false;
    /// A context feature has no value, a non-finite number, an oversized
    /// category, or (under `--strict-context`) a key the campaign does not declare.
    InvalidContext = "INVALID_CONTEXT", InvalidArgument, false;
    /// The body is not the method's protobuf message.
    InvalidBody = "INVALID_BODY", InvalidArgument, false;
    /// A RecordRedemptions stream is longer than the server takes; nothing was applied.
    StreamTooLong = "STREAM_TOO_LONG", InvalidArgument, false;
    /// The campaign is not one this server knows.
    UnknownCampaign = "UNKNOWN_CAMPAIGN", NotFound, false;
    /// The offer is not one of the campaign's.
    UnknownOffer = "UNKNOWN_OFFER", NotFound, false;
    /// The decision id is not one of this server's decisions.
    DecisionNotFound = "DECISION_NOT_FOUND", NotFound, false;
    /// Something else the request names does not exist.
    NotFound = "NOT_FOUND", NotFound, false;
    /// Every candidate offer's budget or cap is spent for now (a daily one
    /// resets at midnight UTC).
    BudgetExhausted = "BUDGET_EXHAUSTED", FailedPrecondition, false;
    /// The redemption came after its decision's reward window closed; not counted.
    RedemptionLate = "REDEMPTION_LATE", FailedPrecondition, false;
    /// The campaign is paused, retired or has no active offers: it makes no decisions.
    CampaignNotServing = "CAMPAIGN_NOT_SERVING", FailedPrecondition, false;
    /// A candidate offer named in the request is paused or retired.
    OfferUnavailable = "OFFER_UNAVAILABLE", FailedPrecondition, false;
    /// The state forbids the request; the message says which.
    FailedPrecondition = "FAILED_PRECONDITION", FailedPrecondition, false;
    /// The request_id was used by a request for another customer.
    RequestIdReused = "REQUEST_ID_REUSED", AlreadyExists, false;
    /// What the request creates exists already.
    AlreadyExists = "ALREADY_EXISTS", AlreadyExists, false;
    /// A conditional change found another revision than expected.
    RevisionConflict = "REVISION_CONFLICT", Aborted, false;
    /// The server is at its limit of requests or streams in flight.
    Overloaded = "OVERLOADED", ResourceExhausted, true;
    /// A backup is already being taken or streamed.
    BackupRunning = "BACKUP_RUNNING", ResourceExhausted, true;
    /// An explanation did not finish within its time budget; nothing was recorded.
    ExplainTooSlow = "EXPLAIN_TOO_SLOW", ResourceExhausted, true;
    /// The data directory's disk is below `--min-free-mb`; nothing was recorded.
    StoreFull = "STORE_FULL", Unavailable, true;
    /// Storage failed; nothing was recorded (the server may need a restart).
    StorageFailed = "STORAGE_FAILED", Unavailable, true;
    /// The server cannot take the request now (starting, shutting down).
    Unavailable = "UNAVAILABLE", Unavailable, true;
    /// Stored data failed its checks.
    StoreCorrupt = "STORE_CORRUPT", DataLoss, false;
    /// The request did not finish within `--request-timeout`.
    Timeout = "TIMEOUT", DeadlineExceeded, false;
    /// No bearer token, or one the server does not know.
    Unauthenticated = "UNAUTHENTICATED", Unauthenticated, false;
    /// The token's role may not call this RPC.
    PermissionDenied = "PERMISSION_DENIED", PermissionDenied, false;
    /// A bug: the server could not answer.
    Internal = "INTERNAL", Internal, false;
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    fn repo_file(path: &str) -> String {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
        std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    }

    /// The codes the table marks retryable.
    fn retryable_codes() -> BTreeSet<&'static str> {
        Reason::ALL
            .iter()
            .filter(|r| r.retryable())
            .map(|r| r.code().as_str())
            .collect()
    }

    /// A backend's failure keeps its message and its source chain (an
    /// operator reads the one, `is_broken_pipe`-style checks walk the
    /// other) and is a storage failure, whatever the backend.
    #[test]
    fn a_backend_failure_keeps_its_message_and_source() {
        use std::error::Error as _;
        let io = std::io::Error::new(std::io::ErrorKind::StorageFull, "disk full");
        let e = StoreError::backend(io);
        assert_eq!(e.to_string(), "disk full");
        let source = e.source().expect("the backend's error is the source");
        assert!(source.downcast_ref::<std::io::Error>().is_some());
        assert_eq!(Error::Store(e).reason(), Reason::StorageFailed);
        let memory = StoreError::backend("storage unavailable: told to fail");
        assert_eq!(Error::Store(memory).reason(), Reason::StorageFailed);
    }

    #[test]
    fn a_code_is_either_retryable_or_not() {
        let retryable = retryable_codes();
        for r in Reason::ALL.iter().filter(|r| !r.retryable()) {
            assert!(
                !retryable.contains(r.code().as_str()),
                "{} is not retryable but shares {} with a retryable reason",
                r.as_str(),
                r.code().as_str()
            );
        }
    }

    #[test]
    fn reasons_are_unique_and_well_formed() {
        let names: BTreeSet<&str> = Reason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(names.len(), Reason::ALL.len());
        for n in names {
            assert!(n.len() <= 63 && n.bytes().all(|b| b.is_ascii_uppercase() || b == b'_'));
        }
    }

    #[test]
    fn service_config_retries_exactly_the_retryable_reasons() {
        let config: serde_json::Value =
            serde_json::from_str(&repo_file("deploy/grpc-service-config.json"))
                .expect("deploy/grpc-service-config.json is JSON");
        let methods = config["methodConfig"].as_array().expect("methodConfig");
        assert!(!methods.is_empty());
        let mut named = BTreeSet::new();
        for m in methods {
            for n in m["name"].as_array().expect("name") {
                assert_eq!(n["service"], "offerbandit.v1.OfferService");
                named.insert(n["method"].as_str().expect("method").to_owned());
            }
            let policy = &m["retryPolicy"];
            let attempts = policy["maxAttempts"].as_u64().expect("maxAttempts");
            assert!((2..=5).contains(&attempts), "maxAttempts {attempts}");
            for key in ["initialBackoff", "maxBackoff"] {
                let d = policy[key].as_str().expect(key);
                assert!(d.ends_with('s') && d.trim_end_matches('s').parse::<f64>().is_ok());
            }
            let codes: BTreeSet<&str> = policy["retryableStatusCodes"]
                .as_array()
                .expect("retryableStatusCodes")
                .iter()
                .map(|c| c.as_str().expect("a code name"))
                .collect();
            assert_eq!(codes, retryable_codes(), "{m}");
        }
        let expected: BTreeSet<String> = ["SelectOffer", "RecordRedemption", "RecordRedemptions"]
            .map(String::from)
            .into();
        assert_eq!(named, expected);
    }

    #[test]
    fn the_docs_table_is_the_enum() {
        let doc = repo_file("docs/errors.md");
        let rows: Vec<Vec<String>> = doc
            .lines()
            .filter(|l| l.starts_with("| `"))
            .map(|l| {
                l.trim_matches('|')
                    .split('|')
                    .map(|c| c.trim().trim_matches('`').to_owned())
                    .collect()
            })
            .collect();
        assert_eq!(rows.len(), Reason::ALL.len(), "one row per reason");
        for (row, reason) in rows.iter().zip(Reason::ALL) {
            assert_eq!(row[0], reason.as_str(), "table order is the enum's");
            assert_eq!(row[1], reason.code().as_str(), "{}", row[0]);
            let retry = if reason.retryable() { "yes" } else { "no" };
            assert_eq!(row[2], retry, "{}", row[0]);
        }
    }
}
