//! Domain errors to gRPC statuses: the one place this mapping lives.

use tonic::{Code, Status};

use crate::error::Error;

/// Every authentication failure reads the same, whatever failed.
pub const UNAUTHENTICATED_MESSAGE: &str = "invalid credentials";

/// `google.rpc.RetryInfo`, as clients' retry policies read it.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RetryInfo {
    #[prost(message, optional, tag = "1")]
    pub retry_delay: Option<prost_types::Duration>,
}

/// `google.rpc.Status`, the `grpc-status-details-bin` trailer.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RpcStatus {
    #[prost(int32, tag = "1")]
    pub code: i32,
    #[prost(string, tag = "2")]
    pub message: String,
    #[prost(message, repeated, tag = "3")]
    pub details: Vec<prost_types::Any>,
}

pub const RETRY_INFO_TYPE: &str = "type.googleapis.com/google.rpc.RetryInfo";

/// RESOURCE_EXHAUSTED with the delay before a retry may succeed, rounded
/// up to the millisecond.
fn retry_later(why: &str, retry_after: std::time::Duration) -> Status {
    use prost::Message;
    let millis = retry_after.as_millis().max(1);
    let delay = prost_types::Duration {
        seconds: i64::try_from(millis / 1000).unwrap_or(i64::MAX),
        nanos: i32::try_from((millis % 1000) * 1_000_000).unwrap_or(0),
    };
    let details = RpcStatus {
        code: Code::ResourceExhausted as i32,
        message: why.to_owned(),
        details: vec![prost_types::Any {
            type_url: RETRY_INFO_TYPE.to_owned(),
            value: RetryInfo {
                retry_delay: Some(delay),
            }
            .encode_to_vec(),
        }],
    };
    Status::with_details(Code::ResourceExhausted, why, details.encode_to_vec().into())
}

/// The retry delay a status carries, if any (clients and tests read it).
pub fn retry_delay(status: &Status) -> Option<std::time::Duration> {
    use prost::Message;
    let details = RpcStatus::decode(status.details()).ok()?;
    let any = details
        .details
        .iter()
        .find(|a| a.type_url == RETRY_INFO_TYPE)?;
    let delay = RetryInfo::decode(any.value.as_slice()).ok()?.retry_delay?;
    let seconds = u64::try_from(delay.seconds).ok()?;
    let nanos = u32::try_from(delay.nanos).ok()?;
    Some(std::time::Duration::new(seconds, nanos))
}

impl From<Error> for Status {
    fn from(err: Error) -> Self {
        match err {
            Error::InvalidArgument { field, reason } => {
                Status::invalid_argument(format!("{field}: {reason}"))
            }
            Error::NotFound(what) => Status::not_found(format!("{what} not found")),
            Error::AlreadyExists(what) => Status::already_exists(format!("{what} already exists")),
            Error::FailedPrecondition(why) => Status::failed_precondition(why),
            Error::PermissionDenied(why) => Status::permission_denied(why),
            Error::LimitReached(why) => Status::resource_exhausted(why),
            Error::Busy { why, retry_after } => retry_later(&why, retry_after),
            Error::Unauthenticated(_) => Status::unauthenticated(UNAUTHENTICATED_MESSAGE),
            Error::Unavailable => Status::unavailable("the database is unavailable; retry later"),
            Error::Internal(context) => {
                tracing::error!(context, "internal error");
                Status::new(Code::Internal, "internal error")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::AuthFailure;

    #[test]
    fn each_error_maps_to_its_code_and_internal_text_stays_inside() {
        let cases = [
            (Error::invalid("name", "is required"), Code::InvalidArgument),
            (Error::not_found("account \"x\""), Code::NotFound),
            (Error::exists("account \"x\""), Code::AlreadyExists),
            (
                Error::precondition("disable it first"),
                Code::FailedPrecondition,
            ),
            (Error::denied("no"), Code::PermissionDenied),
            (
                Error::LimitReached("100 keys".into()),
                Code::ResourceExhausted,
            ),
            (
                Error::Unauthenticated(AuthFailure::WrongPassword),
                Code::Unauthenticated,
            ),
            (Error::Unavailable, Code::Unavailable),
            (
                Error::Busy {
                    why: "slow down".into(),
                    retry_after: std::time::Duration::from_millis(1500),
                },
                Code::ResourceExhausted,
            ),
            (Error::internal("SELECT secret FROM x"), Code::Internal),
        ];
        for (err, code) in cases {
            assert_eq!(Status::from(err).code(), code);
        }
        let busy = Status::from(Error::Busy {
            why: "slow down".into(),
            retry_after: std::time::Duration::from_millis(1500),
        });
        assert_eq!(
            retry_delay(&busy),
            Some(std::time::Duration::from_millis(1500))
        );
        let status = Status::from(Error::internal("SELECT secret FROM x"));
        assert_eq!(status.message(), "internal error");
        let status = Status::from(Error::invalid("page_token", "bad"));
        assert!(status.message().starts_with("page_token:"));
    }

    #[test]
    fn authentication_failures_are_indistinguishable() {
        let a = Status::from(Error::Unauthenticated(AuthFailure::UnknownUser));
        let b = Status::from(Error::Unauthenticated(AuthFailure::AccountDisabled));
        assert_eq!((a.code(), a.message()), (b.code(), b.message()));
    }
}
