//! The one mapping of errors to gRPC statuses: a code fixed by the error's
//! [`Reason`], a bounded message, and a `google.rpc.ErrorInfo` detail
//! carrying the reason (domain [`ERROR_DOMAIN`]). The guard and the codec
//! build their refusals here too.

use tonic_types::{ErrorDetails, StatusExt};

use crate::error::{Code, ERROR_DOMAIN, Error, Reason};

/// Longest status message sent: a longer one (a config error quoting a
/// 200 KB line) would not fit the HTTP/2 headers, and the client would see
/// only "stream removed".
const MAX_MESSAGE_CHARS: usize = 1024;

/// `msg`, cut to [`MAX_MESSAGE_CHARS`] characters with a note when cut.
pub(super) fn bounded(mut msg: String) -> String {
    if let Some((i, _)) = msg.char_indices().nth(MAX_MESSAGE_CHARS) {
        msg.truncate(i);
        msg.push_str(" [message cut]");
    }
    msg
}

fn tonic_code(code: Code) -> tonic::Code {
    match code {
        Code::InvalidArgument => tonic::Code::InvalidArgument,
        Code::NotFound => tonic::Code::NotFound,
        Code::AlreadyExists => tonic::Code::AlreadyExists,
        Code::PermissionDenied => tonic::Code::PermissionDenied,
        Code::ResourceExhausted => tonic::Code::ResourceExhausted,
        Code::FailedPrecondition => tonic::Code::FailedPrecondition,
        Code::Aborted => tonic::Code::Aborted,
        Code::DeadlineExceeded => tonic::Code::DeadlineExceeded,
        Code::Internal => tonic::Code::Internal,
        Code::Unavailable => tonic::Code::Unavailable,
        Code::DataLoss => tonic::Code::DataLoss,
        Code::Unauthenticated => tonic::Code::Unauthenticated,
    }
}

/// The status for `reason`: its code, `message` (bounded) and an ErrorInfo
/// detail naming the reason.
pub(crate) fn refusal(reason: Reason, message: impl Into<String>) -> tonic::Status {
    let details = ErrorDetails::with_error_info(
        reason.as_str(),
        ERROR_DOMAIN,
        std::collections::HashMap::new(),
    );
    tonic::Status::with_error_details(tonic_code(reason.code()), bounded(message.into()), details)
}

impl From<Error> for tonic::Status {
    fn from(e: Error) -> Self {
        refusal(e.reason(), e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_carries_its_reason_and_code() {
        for &reason in Reason::ALL {
            let status = refusal(reason, "why");
            assert_eq!(status.code(), tonic_code(reason.code()), "{reason:?}");
            let info = status.get_details_error_info().expect("an ErrorInfo");
            assert_eq!(info.reason, reason.as_str());
            assert_eq!(info.domain, ERROR_DOMAIN);
        }
    }

    #[test]
    fn a_long_message_is_cut() {
        let status = refusal(Reason::InvalidArgument, "x".repeat(5_000));
        assert!(status.message().ends_with("[message cut]"));
        assert!(status.message().len() < 1_100);
    }
}
