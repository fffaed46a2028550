//! The tonic `Authorization` service.

use super::facts::{FactsError, check_input};
use super::response::{RequestContext, check_response};
use crate::answer;
use crate::authz::{self, RecordContext};
use crate::state::{AppState, now_epoch_seconds};
use envoy_types::pb::envoy::service::auth::v3::authorization_server::Authorization;
use envoy_types::pb::envoy::service::auth::v3::{CheckRequest, CheckResponse};
use std::sync::Arc;
use std::time::Instant;
use tonic::{Request, Response, Status};

pub struct CheckService {
    state: Arc<AppState>,
}

impl CheckService {
    pub fn new(state: Arc<AppState>) -> Self {
        Self { state }
    }
}

#[tonic::async_trait]
impl Authorization for CheckService {
    async fn check(
        &self,
        request: Request<CheckRequest>,
    ) -> Result<Response<CheckResponse>, Status> {
        let started = Instant::now();
        let req = request.into_inner();
        let input = check_input(&req, now_epoch_seconds()).map_err(|e| {
            tracing::warn!(target: "agents_authz::check", error = %e, "unusable CheckRequest");
            invalid(e)
        })?;
        // One snapshot for the whole decision; an Arc, not a copy.
        let snapshot = self.state.snapshot.load_full();
        let evaluation = authz::evaluate(&self.state, &snapshot, &input.facts).await;
        let request_id = answer::request_id(input.facts.request_id);
        let ctx = RequestContext {
            headers: input.headers,
            path: input.facts.path,
            query: input.facts.query,
            request_id: &request_id,
            redact_email: snapshot.posture.redact_email,
            client_ip: input.facts.client_ip,
        };
        let response = check_response(
            &evaluation.decision,
            &ctx,
            &evaluation.client_headers,
            evaluation.retry_after,
        );
        let record = RecordContext {
            target: input.target,
            request_id: &request_id,
            snapshot_version: snapshot.version,
            elapsed: started.elapsed(),
        };
        authz::record(&self.state, &evaluation, &input.facts, &record);
        Ok(Response::new(response))
    }
}

fn invalid(e: FactsError) -> Status {
    Status::invalid_argument(e.to_string())
}

#[cfg(test)]
#[path = "service_tests.rs"]
mod tests;
