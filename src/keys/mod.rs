//! Editing the managed-keys file from the command line (`agents-authz keys`), so operators
//! can create, rotate, revoke and delete keys without the control panel.
//!
//! The file is held as JSON values, not as typed credentials, so that every field this
//! service does not know survives an edit, in its order. Edits are pure functions on a
//! [`KeyDocument`] ([`edit`]); [`store`] adds the one place with I/O: an advisory lock,
//! the read, and an atomic replace. [`cli`] is the thin adapter behind the subcommands.

pub mod cli;
pub mod document;
pub mod edit;
pub mod status;
pub mod store;
pub mod token;
pub mod validate;

pub use document::KeyDocument;
pub use edit::{EditError, Expiry, KeyUpdate, NewKey, Outcome};
pub use status::{EXPIRING_WITHIN_DAYS, KeyStatus};
pub use store::{KeyFile, KeysError};
pub use token::Token;
