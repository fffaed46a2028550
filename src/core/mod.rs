//! The pure decision core: request facts + snapshot -> decision. No I/O, no async.

pub mod credentials;
pub mod decision;
pub mod path;
pub mod posture;
pub mod query;
pub mod request;
pub mod routes;
pub mod scopes;
pub mod snapshot;
pub mod token;
pub mod warning;
