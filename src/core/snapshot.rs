//! One immutable, complete view of the configuration. A Check reads exactly one.

use super::credentials::{CredentialSet, CredentialSource};
use super::posture::Posture;
use super::routes::RouteTable;
use super::warning::ConfigWarning;

#[derive(Debug)]
pub struct Snapshot {
    /// Increases by one with every successful reload.
    pub version: u64,
    pub posture: Posture,
    pub credentials: CredentialSet,
    pub routes: RouteTable,
    /// The scopes given to credentials that name none.
    pub default_scopes: Vec<String>,
    /// Every problem found while building this snapshot, the posture's included.
    pub warnings: Vec<ConfigWarning>,
}

impl Snapshot {
    pub fn credential_count(&self, source: CredentialSource) -> usize {
        self.credentials
            .iter()
            .filter(|c| c.source == source)
            .count()
    }

    pub fn credential_ids(&self, source: CredentialSource) -> Vec<&str> {
        self.credentials
            .iter()
            .filter(|c| c.source == source)
            .map(|c| &*c.id)
            .collect()
    }
}
