//! Generated types, server and client of the `agents.authz.v1.Admin` gRPC API
//! (`proto/agents/authz/v1/admin.proto`).

// Generated code follows prost's conventions, not our lint settings.
#![allow(clippy::all, clippy::pedantic, missing_docs)]

tonic::include_proto!("agents.authz.v1");
