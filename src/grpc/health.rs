//! gRPC health (`grpc.health.v1.Health`): tonic-health's service, served
//! through the lenient codec so a body that does not decode is
//! `INVALID_ARGUMENT`, as on every other authzd service.

use tonic::{Request, Response, Status};
use tonic_health::pb::health_server::Health as Standard;
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};
use tonic_health::server::{HealthReporter, HealthService};

use crate::pb::servers::health::health_server::{Health, HealthServer};

pub struct HealthApi(HealthService);

/// The health server answering what `reporter` reports.
pub fn server(reporter: &HealthReporter) -> HealthServer<HealthApi> {
    HealthServer::new(HealthApi(HealthService::from_health_reporter(
        reporter.clone(),
    )))
}

#[tonic::async_trait]
impl Health for HealthApi {
    async fn check(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<HealthCheckResponse>, Status> {
        Standard::check(&self.0, request).await
    }

    type WatchStream = <HealthService as Standard>::WatchStream;

    async fn watch(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        Standard::watch(&self.0, request).await
    }
}
