//! A panicking handler must be visible: without a catch, tonic resets the
//! stream and the caller sees CANCELLED, which looks like its own doing
//! (and which the fuzz test skipped). Every request's future runs inside
//! `Caught`: a panic becomes INTERNAL on gRPC and 500 on HTTP, is logged
//! with the method, and is counted (`authzd_panics_total`, and a process
//! counter the tests read to fail on any panic).

use std::any::Any;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

static CAUGHT: AtomicU64 = AtomicU64::new(0);

/// Panics caught in this process since it started.
pub fn caught() -> u64 {
    CAUGHT.load(Ordering::Relaxed)
}

/// A future whose panic, if any, is its output's `Err`.
pub struct Caught<F>(Pin<Box<F>>);

impl<F: Future> Caught<F> {
    pub fn new(future: F) -> Self {
        Self(Box::pin(future))
    }
}

impl<F: Future> Future for Caught<F> {
    type Output = Result<F::Output, Box<dyn Any + Send>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = self.0.as_mut();
        match catch_unwind(AssertUnwindSafe(|| inner.poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(output)) => Poll::Ready(Ok(output)),
            Err(payload) => Poll::Ready(Err(payload)),
        }
    }
}

/// Logs and counts a caught panic of a request to `listener`.
pub fn record(listener: &'static str, method: &str, payload: &(dyn Any + Send)) {
    CAUGHT.fetch_add(1, Ordering::Relaxed);
    metrics::counter!("authzd_panics_total", "listener" => listener).increment(1);
    let message = payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".to_owned());
    // The message is ours (a bug's), not the caller's input: bounded all
    // the same, as every logged value is.
    let message: String = message.chars().take(256).collect();
    tracing::error!(
        listener,
        method,
        panic = message,
        "request handler panicked"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panic_is_caught_counted_and_given_back() {
        let before = caught();
        let result = Caught::new(async {
            if before < u64::MAX {
                panic!("a bug");
            }
            1
        })
        .await;
        let payload = result.expect_err("the panic is the output");
        record("grpc", "/test/Panics", payload.as_ref());
        assert_eq!(caught(), before + 1);
        assert_eq!(Caught::new(async { 2 }).await.ok(), Some(2));
    }
}
