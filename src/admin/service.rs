//! The `agents.authz.v1.Admin` gRPC service: translate in, call the reports, the
//! reloader or the decision core, translate out.

use super::{convert, whoami};
use crate::admin_proto::admin_server::Admin;
use crate::admin_proto::{
    GetPostureRequest, GetPostureResponse, GetStatusRequest, GetStatusResponse, ReloadRequest,
    ReloadResponse, WhoAmIRequest, WhoAmIResponse,
};
use crate::state::AppState;
use std::sync::Arc;
use std::time::SystemTime;
use tonic::{Request, Response, Status};

pub struct AdminService {
    app: Arc<AppState>,
    /// When serving started; the initial snapshot was loaded just before.
    started_at: SystemTime,
}

impl AdminService {
    pub fn new(app: Arc<AppState>) -> Self {
        Self {
            app,
            started_at: SystemTime::now(),
        }
    }
}

#[tonic::async_trait]
impl Admin for AdminService {
    async fn get_posture(
        &self,
        _: Request<GetPostureRequest>,
    ) -> Result<Response<GetPostureResponse>, Status> {
        let snapshot = self.app.snapshot.load();
        Ok(Response::new(convert::posture(&snapshot)))
    }

    async fn get_status(
        &self,
        _: Request<GetStatusRequest>,
    ) -> Result<Response<GetStatusResponse>, Status> {
        let version = self.app.snapshot.load().version;
        let status = self.app.reloader.as_ref().map(|r| r.status());
        Ok(Response::new(convert::status(
            version,
            status,
            self.started_at,
        )))
    }

    /// A failed rebuild is an answer (`RELOAD_RESULT_FAILURE`), not an error: the call
    /// worked and the previous snapshot keeps serving.
    async fn reload(&self, _: Request<ReloadRequest>) -> Result<Response<ReloadResponse>, Status> {
        let Some(reloader) = self.app.reloader.clone() else {
            return Err(Status::failed_precondition(
                "this service runs without a reloader (its configuration cannot be rebuilt); \
                 restart it to change the configuration",
            ));
        };
        let outcome = reloader.reload_in_background("admin").await;
        let serving = self.app.snapshot.load();
        Ok(Response::new(convert::reload(outcome, &serving)))
    }

    async fn who_am_i(
        &self,
        request: Request<WhoAmIRequest>,
    ) -> Result<Response<WhoAmIResponse>, Status> {
        whoami::who_am_i(&self.app, request.get_ref())
            .await
            .map(Response::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin_proto::ReloadResult;
    use crate::config::build_snapshot;
    use crate::core::snapshot::Snapshot;
    use crate::reload::Reloader;
    use arc_swap::ArcSwap;
    use std::collections::BTreeMap;

    fn snapshot(version: u64) -> Snapshot {
        let env: BTreeMap<String, String> =
            [("ENVIRONMENT".to_string(), "local".to_string())].into();
        build_snapshot(&env, None, None, version).unwrap()
    }

    fn with_reloader() -> AdminService {
        let current = Arc::new(ArcSwap::from_pointee(snapshot(1)));
        let reloader = Reloader::new(current.clone(), 1, |v| Ok::<_, std::io::Error>(snapshot(v)));
        let mut app = AppState::new(snapshot(1));
        app.snapshot = current;
        app.reloader = Some(Arc::new(reloader));
        AdminService::new(Arc::new(app))
    }

    #[tokio::test]
    async fn reload_without_a_reloader_is_a_failed_precondition() {
        let service = AdminService::new(Arc::new(AppState::new(snapshot(1))));
        let err = service.reload(Request::new(ReloadRequest {})).await;
        assert_eq!(err.unwrap_err().code(), tonic::Code::FailedPrecondition);
    }

    #[tokio::test]
    async fn reload_swaps_in_the_next_version_and_status_reports_it() {
        let service = with_reloader();
        let reply = service
            .reload(Request::new(ReloadRequest {}))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(reply.result(), ReloadResult::Success);
        assert_eq!(
            (reply.previous_snapshot_version, reply.snapshot_version),
            (1, 2)
        );
        let status = service
            .get_status(Request::new(GetStatusRequest {}))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(status.snapshot_version, 2);
        assert_eq!(status.reloads_succeeded, 1);
        assert_eq!(status.last_reload.unwrap().result(), ReloadResult::Success);
        let posture = service
            .get_posture(Request::new(GetPostureRequest {}))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(posture.snapshot_version, 2);
    }
}
