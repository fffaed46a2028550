//! Generated types, server and client of the `agents.authz.v1.Admin` gRPC API
//! (`proto/agents/authz/v1/admin.proto`).

use std::fmt;

// Generated code follows prost's conventions, not our lint settings.
#[allow(clippy::all, clippy::pedantic, missing_docs)]
mod generated {
    tonic::include_proto!("agents.authz.v1");
}

pub use generated::*;

/// Written by hand so that a `{:?}` of the request can never print the token.
impl fmt::Debug for WhoAmIRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WhoAmIRequest")
            .field("token", &"<redacted>")
            .field("client_ip", &self.client_ip)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use tokio::net::TcpListener;
    use tonic::transport::server::TcpIncoming;
    use tonic::{Request, Response, Status};

    use super::admin_client::AdminClient;
    use super::admin_server::{Admin, AdminServer};
    use super::*;

    /// A stand-in service: enough to prove the generated server and client agree.
    struct Fixed;

    #[tonic::async_trait]
    impl Admin for Fixed {
        async fn get_posture(
            &self,
            _: Request<GetPostureRequest>,
        ) -> Result<Response<GetPostureResponse>, Status> {
            Ok(Response::new(GetPostureResponse {
                environment: "local".into(),
                environment_profile_source: ProfileSource::Inferred.into(),
                ..Default::default()
            }))
        }

        async fn get_status(
            &self,
            _: Request<GetStatusRequest>,
        ) -> Result<Response<GetStatusResponse>, Status> {
            Ok(Response::new(GetStatusResponse {
                snapshot_version: 3,
                ..Default::default()
            }))
        }

        async fn reload(
            &self,
            _: Request<ReloadRequest>,
        ) -> Result<Response<ReloadResponse>, Status> {
            Err(Status::unimplemented("not in this test"))
        }

        async fn who_am_i(
            &self,
            request: Request<WhoAmIRequest>,
        ) -> Result<Response<WhoAmIResponse>, Status> {
            let authenticated = request.get_ref().token == "demo-agent-7f3c9a1e5b";
            Ok(Response::new(WhoAmIResponse {
                authenticated,
                credential_id: "demo-agent".into(),
                granted_scopes: vec!["auth:read".into()],
                ..Default::default()
            }))
        }
    }

    #[test]
    fn debug_hides_the_token() {
        let request = WhoAmIRequest {
            token: "demo-agent-7f3c9a1e5b".into(),
            client_ip: "10.0.0.1".into(),
        };
        let printed = format!("{request:?}");
        assert!(!printed.contains("demo-agent-7f3c9a1e5b"), "{printed}");
        assert!(printed.contains("10.0.0.1"));
    }

    #[tokio::test]
    async fn generated_client_talks_to_generated_server() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(AdminServer::new(Fixed))
                .serve_with_incoming_shutdown(TcpIncoming::from(listener), async {
                    let _ = stopped.await;
                }),
        );
        let mut client = AdminClient::connect(format!("http://{addr}"))
            .await
            .unwrap();
        let who = client
            .who_am_i(WhoAmIRequest {
                token: "demo-agent-7f3c9a1e5b".into(),
                client_ip: String::new(),
            })
            .await
            .unwrap()
            .into_inner();
        assert!(who.authenticated);
        assert_eq!(who.granted_scopes, ["auth:read"]);
        let posture = client.get_posture(GetPostureRequest {}).await.unwrap();
        assert_eq!(
            posture.get_ref().environment_profile_source(),
            ProfileSource::Inferred
        );
        let status = client.get_status(GetStatusRequest {}).await.unwrap();
        assert_eq!(status.get_ref().snapshot_version, 3);
        let reload = client.reload(ReloadRequest {}).await.unwrap_err();
        assert_eq!(reload.code(), tonic::Code::Unimplemented);
        let _ = stop.send(());
        server.await.unwrap().unwrap();
    }
}
