//! Domain errors to gRPC statuses: the one place this mapping lives.

use tonic::{Code, Status};

use crate::error::Error;

/// Every authentication failure reads the same, whatever failed.
pub const UNAUTHENTICATED_MESSAGE: &str = "invalid credentials";

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
            (Error::internal("SELECT secret FROM x"), Code::Internal),
        ];
        for (err, code) in cases {
            assert_eq!(Status::from(err).code(), code);
        }
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
