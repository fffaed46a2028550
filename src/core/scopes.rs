//! Scope names: normalisation, the catalogue, aliases and feature-flag gating (spec section 3).

use std::collections::BTreeSet;
use std::sync::Arc;

/// Feature flags that gate scopes and routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FeatureFlags {
    pub addresses_api: bool,
    pub users_api: bool,
    pub writes_experimental: bool,
}

/// Which flag a gated scope or route needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    AddressesApi,
    UsersApi,
    WritesExperimental,
}

impl FeatureFlags {
    pub fn allows(&self, gate: Gate) -> bool {
        match gate {
            Gate::AddressesApi => self.addresses_api,
            Gate::UsersApi => self.users_api,
            Gate::WritesExperimental => self.writes_experimental,
        }
    }
}

/// The scope that grants everything; only ever given when token enforcement is off.
pub const WILDCARD: &str = "*";

/// Granted when neither a credential nor `PLUGIN_AGENTS_TOKEN_SCOPES` names scopes.
pub const SAFE_DEFAULT_SCOPES: &[&str] = &[
    "auth:read",
    "capabilities:read",
    "health:read",
    "openapi:read",
    "readiness:read",
];

/// Every scope the API knows, with the one-line description whoami reports.
pub const CATALOGUE: &[(&str, &str)] = &[
    ("health:read", "Read service health"),
    ("readiness:read", "Read readiness checks"),
    ("auth:read", "Inspect the calling credential (whoami)"),
    ("adoption:read", "Read adoption metrics"),
    ("metrics:read", "Read API metrics"),
    ("incidents:read", "Read incidents"),
    ("lifecycle:read", "Read lifecycle status"),
    ("diagnostics:read", "Download diagnostics bundles"),
    ("products:read", "Read products"),
    ("variants:read", "Read product variants"),
    ("subscriptions:read", "Read subscriptions"),
    ("transfers:read", "Read transfers"),
    ("donations:read", "Read donations"),
    ("orders:read", "Read orders"),
    ("orders:read_sensitive", "Read sensitive order fields"),
    ("entries:read", "Read live entries"),
    ("entries:read_all_statuses", "Read entries in any status"),
    ("assets:read", "Read assets"),
    ("categories:read", "Read categories"),
    ("tags:read", "Read tags"),
    ("globalsets:read", "Read global sets"),
    ("addresses:read", "Read addresses"),
    ("addresses:read_sensitive", "Read sensitive address fields"),
    ("contentblocks:read", "Read content blocks"),
    ("changes:read", "Read the change feed"),
    ("sections:read", "Read sections"),
    ("users:read", "Read users"),
    ("users:read_sensitive", "Read sensitive user fields"),
    ("syncstate:read", "Read sync-state lag"),
    ("syncstate:write", "Write sync-state checkpoints"),
    ("jobs:read", "Read workflows"),
    ("jobs:report", "Report workflow runs"),
    ("templates:read", "Read templates and starter packs"),
    ("schema:read", "Read the schema"),
    ("capabilities:read", "Read capabilities"),
    ("openapi:read", "Read the OpenAPI document"),
    ("webhooks:dlq:read", "Read the webhook dead-letter queue"),
    ("webhooks:dlq:replay", "Replay dead-lettered webhooks"),
    ("entries:write:draft", "Write draft entries (experimental)"),
    ("control:policies:read", "Read control policies"),
    ("control:policies:write", "Write control policies"),
    ("control:approvals:read", "Read approvals"),
    ("control:approvals:request", "Request approvals"),
    ("control:approvals:decide", "Decide approvals"),
    (
        "control:approvals:write",
        "Request and decide approvals (legacy combined scope)",
    ),
    ("control:executions:read", "Read executions"),
    ("control:actions:simulate", "Simulate control actions"),
    ("control:actions:execute", "Execute control actions"),
    ("control:audit:read", "Read the control audit log"),
];

/// The gate a scope sits behind, if any.
pub fn gate_of(scope: &str) -> Option<Gate> {
    if scope.starts_with("addresses:") {
        Some(Gate::AddressesApi)
    } else if scope.starts_with("users:") {
        Some(Gate::UsersApi)
    } else if scope == "entries:write"
        || scope.starts_with("entries:write:")
        || scope.starts_with("control:")
    {
        Some(Gate::WritesExperimental)
    } else {
        None
    }
}

/// True for a scope the API knows: one in the catalogue, a deprecated alias, or a plugin
/// read scope `plugins:<plugin>:<resource>:read`. Lets tools refuse a mistyped scope,
/// which would otherwise grant nothing without a word.
pub fn is_known(scope: &str) -> bool {
    CATALOGUE.iter().any(|(name, _)| *name == scope)
        || !expand_alias(scope).is_empty()
        || scope
            .strip_prefix("plugins:")
            .and_then(|rest| rest.strip_suffix(":read"))
            .and_then(|rest| rest.split_once(':'))
            .is_some_and(|(plugin, resource)| {
                !plugin.is_empty() && !resource.is_empty() && !resource.contains(':')
            })
}

/// Normalises a scope list: lowercase, split on whitespace and commas, keep only
/// `a-z 0-9 : _ * . -`, drop empties, de-duplicate, sort.
pub fn normalize<'a>(raw: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut set = BTreeSet::new();
    for chunk in raw {
        for part in chunk.split(|c: char| c.is_whitespace() || c == ',') {
            let scope: String = part
                .chars()
                .map(|c| c.to_ascii_lowercase())
                .filter(|c| matches!(c, 'a'..='z' | '0'..='9' | ':' | '_' | '*' | '.' | '-'))
                .collect();
            if !scope.is_empty() {
                set.insert(scope);
            }
        }
    }
    set.into_iter().collect()
}

/// The scopes a normalised scope also satisfies (deprecated names that keep working).
fn expand_alias(scope: &str) -> &'static [&'static str] {
    match scope {
        "entries:write" => &["entries:write:draft"],
        "consumers:read" => &["syncstate:read"],
        "consumers:write" => &["syncstate:write"],
        "control:approvals:write" => &[
            "control:approvals:write",
            "control:approvals:request",
            "control:approvals:decide",
        ],
        _ => &[],
    }
}

/// What a credential is granted: aliases resolved, gated scopes removed, sorted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grant {
    /// Every scope (`*`), only when token enforcement is off.
    All,
    Scopes(GrantedScopes),
}

/// A sorted, de-duplicated scope list with its header form precomputed for the hot path.
/// Clones share the lists: a million keys with the same scopes hold them once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantedScopes {
    sorted: Arc<[Box<str>]>,
    joined: Arc<str>,
}

impl GrantedScopes {
    /// Resolves aliases and drops gated scopes and `*` from normalised scopes.
    pub fn resolve(normalized: &[String], flags: FeatureFlags) -> Self {
        let mut set = BTreeSet::new();
        for scope in normalized {
            let expanded = expand_alias(scope);
            let names: Vec<&str> = if expanded.is_empty() {
                vec![scope.as_str()]
            } else {
                expanded.to_vec()
            };
            for name in names {
                let gated_off = gate_of(name).is_some_and(|g| !flags.allows(g));
                if name != WILDCARD && !gated_off {
                    set.insert(name);
                }
            }
        }
        let sorted: Arc<[Box<str>]> = set.into_iter().map(Box::from).collect();
        let joined = Arc::from(sorted.join(" "));
        Self { sorted, joined }
    }

    pub fn contains(&self, scope: &str) -> bool {
        self.sorted
            .binary_search_by(|s| s.as_ref().cmp(scope))
            .is_ok()
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.sorted.iter().map(AsRef::as_ref)
    }

    /// Space-separated, as sent upstream in `x-agents-scopes`.
    pub fn joined(&self) -> &str {
        &self.joined
    }

    pub fn len(&self) -> usize {
        self.sorted.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sorted.is_empty()
    }
}

impl Grant {
    pub fn allows(&self, scope: &str) -> bool {
        match self {
            Grant::All => true,
            Grant::Scopes(s) => s.contains(scope),
        }
    }

    /// True when a plugin read scope `plugins:<plugin>:<resource>:read` is granted,
    /// compared piecewise so the hot path builds no string.
    pub fn allows_plugin_read(&self, plugin: &str, resource: &str) -> bool {
        match self {
            Grant::All => true,
            Grant::Scopes(s) => s.iter().any(|g| is_plugin_read(g, plugin, resource)),
        }
    }

    pub fn header_value(&self) -> &str {
        match self {
            Grant::All => WILDCARD,
            Grant::Scopes(s) => s.joined(),
        }
    }
}

fn is_plugin_read(granted: &str, plugin: &str, resource: &str) -> bool {
    let Some(rest) = granted.strip_prefix("plugins:") else {
        return false;
    };
    let Some(rest) = rest.strip_prefix(plugin) else {
        return false;
    };
    let Some(rest) = rest.strip_prefix(':') else {
        return false;
    };
    rest.strip_prefix(resource) == Some(":read")
}

/// The catalogue as whoami's `availableScopes`: gated scopes removed.
pub fn available(flags: FeatureFlags) -> impl Iterator<Item = (&'static str, &'static str)> {
    CATALOGUE
        .iter()
        .copied()
        .filter(move |(name, _)| gate_of(name).is_none_or(|g| flags.allows(g)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL_ON: FeatureFlags = FeatureFlags {
        addresses_api: true,
        users_api: true,
        writes_experimental: true,
    };

    fn grant(raw: &str, flags: FeatureFlags) -> Vec<String> {
        let g = GrantedScopes::resolve(&normalize([raw]), flags);
        g.iter().map(String::from).collect()
    }

    #[test]
    fn normalises_case_separators_duplicates_and_order() {
        assert_eq!(
            normalize(["Entries:Read,orders:read  entries:read"]),
            vec!["entries:read", "orders:read"]
        );
    }

    #[test]
    fn normalise_drops_foreign_characters_and_empties() {
        assert_eq!(normalize(["pro#ducts:read , ,\t!"]), vec!["products:read"]);
        assert_eq!(normalize(["a.b-c_d:*"]), vec!["a.b-c_d:*"]);
    }

    #[test]
    fn entries_write_is_reported_as_draft_only_while_writes_flag_on() {
        assert_eq!(grant("entries:write", ALL_ON), vec!["entries:write:draft"]);
        assert!(grant("entries:write", FeatureFlags::default()).is_empty());
    }

    #[test]
    fn consumers_aliases_resolve_to_syncstate() {
        assert_eq!(grant("consumers:read", ALL_ON), vec!["syncstate:read"]);
        assert_eq!(grant("consumers:write", ALL_ON), vec!["syncstate:write"]);
    }

    #[test]
    fn approvals_write_satisfies_request_and_decide() {
        let g = grant("control:approvals:write", ALL_ON);
        assert_eq!(
            g,
            vec![
                "control:approvals:decide",
                "control:approvals:request",
                "control:approvals:write"
            ]
        );
    }

    #[test]
    fn gated_scopes_are_removed_while_their_flag_is_off() {
        let off = FeatureFlags::default();
        assert!(grant("addresses:read users:read control:audit:read", off).is_empty());
        let addresses = FeatureFlags {
            addresses_api: true,
            ..off
        };
        assert_eq!(
            grant("addresses:read users:read", addresses),
            vec!["addresses:read"]
        );
        let users = FeatureFlags {
            users_api: true,
            ..off
        };
        assert_eq!(
            grant("addresses:read users:read", users),
            vec!["users:read"]
        );
    }

    #[test]
    fn wildcard_is_never_granted_to_a_credential() {
        assert_eq!(grant("* health:read", ALL_ON), vec!["health:read"]);
    }

    #[test]
    fn plugin_read_scopes_match_piecewise() {
        let g = Grant::Scopes(GrantedScopes::resolve(
            &normalize(["plugins:shop:items:read"]),
            ALL_ON,
        ));
        assert!(g.allows_plugin_read("shop", "items"));
        assert!(!g.allows_plugin_read("shop", "item"));
        assert!(!g.allows_plugin_read("sho", "p:items"));
        assert!(Grant::All.allows_plugin_read("x", "y"));
    }

    #[test]
    fn available_scopes_hide_gated_ones() {
        let names: Vec<_> = available(FeatureFlags::default()).map(|(n, _)| n).collect();
        assert!(names.contains(&"health:read"));
        assert!(!names.iter().any(|n| n.starts_with("control:")));
        assert!(!names.contains(&"entries:write:draft"));
        assert!(!names.iter().any(|n| n.starts_with("users:")));
        let all: Vec<_> = available(ALL_ON).map(|(n, _)| n).collect();
        assert_eq!(all.len(), CATALOGUE.len());
    }

    #[test]
    fn header_value_is_sorted_and_space_separated() {
        let g = Grant::Scopes(GrantedScopes::resolve(
            &normalize(["orders:read health:read"]),
            ALL_ON,
        ));
        assert_eq!(g.header_value(), "health:read orders:read");
        assert_eq!(Grant::All.header_value(), "*");
    }

    proptest::proptest! {
        #[test]
        fn normalised_scopes_are_sorted_unique_and_clean(raw in ".{0,64}") {
            let out = normalize([raw.as_str()]);
            let mut sorted = out.clone();
            sorted.sort();
            sorted.dedup();
            proptest::prop_assert_eq!(&out, &sorted);
            for s in &out {
                proptest::prop_assert!(!s.is_empty());
                proptest::prop_assert!(s.chars().all(|c| matches!(c, 'a'..='z' | '0'..='9' | ':' | '_' | '*' | '.' | '-')));
            }
        }
    }
}
