pub mod admin_proto;
pub mod telemetry;
