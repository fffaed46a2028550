//! Configuration problems found while building a snapshot. They never carry a secret.

use std::fmt;

/// One problem with the configuration: where it is, which entry, and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ConfigWarning {
    /// The variable or file the problem is in.
    pub source: String,
    /// The entry within it (a list position, an id, a route), when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entry: Option<String>,
    pub message: String,
}

impl ConfigWarning {
    pub fn new(source: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            source: source.into(),
            entry: None,
            message: message.into(),
        }
    }

    pub fn at(mut self, entry: impl Into<String>) -> Self {
        self.entry = Some(entry.into());
        self
    }
}

impl fmt::Display for ConfigWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.entry {
            Some(entry) => write!(f, "{} [{}]: {}", self.source, entry, self.message),
            None => write!(f, "{}: {}", self.source, self.message),
        }
    }
}
