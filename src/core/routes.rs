//! The route table: which methods each path takes and which scopes it needs (spec section 4).

use super::scopes::Gate;
use std::collections::HashMap;

/// The prefix every Agents API route lives under.
pub const API_PREFIX: &str = "/agents/v1";
const PLUGINS_PREFIX: &str = "/agents/v1/plugins/";
/// Served by this service's own HTTP endpoint, which authenticates the caller itself.
pub const WHOAMI_PATH: &str = "/agents/v1/auth/whoami";

/// A set of HTTP methods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Methods(u16);

const METHOD_NAMES: [&str; 7] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];

impl Methods {
    pub const READ: Methods = Methods(0b11);
    pub const POST: Methods = Methods(0b100);

    pub fn parse_one(name: &str) -> Option<Methods> {
        METHOD_NAMES
            .iter()
            .position(|m| *m == name)
            .map(|i| Methods(1 << i))
    }

    pub fn union(self, other: Methods) -> Methods {
        Methods(self.0 | other.0)
    }

    pub fn empty() -> Methods {
        Methods(0)
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Methods outside the known set are never allowed.
    pub fn allows(self, method: &str) -> bool {
        Methods::parse_one(method).is_some_and(|m| self.0 & m.0 != 0)
    }

    /// The `Allow` header value.
    pub fn allow_header(self) -> String {
        METHOD_NAMES
            .iter()
            .enumerate()
            .filter(|(i, _)| self.0 & (1 << i) != 0)
            .map(|(_, m)| *m)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// What a route asks of the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// No token needed.
    Public,
    /// Any one of these scopes.
    AnyOf(Box<[Box<str>]>),
    /// `plugins:<plugin>:<resource>:read`, from the path.
    PluginRead,
}

/// Extra scope a route needs depending on the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Elevation {
    /// A `status` query other than `live` also needs `entries:read_all_statuses`.
    EntriesStatus,
}

pub const ENTRIES_ALL_STATUSES: &str = "entries:read_all_statuses";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The path as written in the table; also the route's name in logs and rate-limit keys.
    pub path: Box<str>,
    pub prefix_match: bool,
    pub methods: Methods,
    pub allow_header: Box<str>,
    pub access: Access,
    pub gate: Option<Gate>,
    pub elevation: Option<Elevation>,
    /// Switched off by the operator: answers 404.
    pub disabled: bool,
    /// The upstream of this route authenticates the caller again (whoami, served by this
    /// service), so the token is forwarded instead of stripped.
    pub upstream_reauthenticates: bool,
}

impl Route {
    pub fn new(path: &str, methods: Methods, access: Access) -> Self {
        Route {
            path: path.into(),
            prefix_match: false,
            methods,
            allow_header: methods.allow_header().into(),
            access,
            gate: None,
            elevation: None,
            disabled: false,
            upstream_reauthenticates: false,
        }
    }

    fn scoped(path: &str, methods: Methods, scopes: &[&str]) -> Self {
        let scopes = scopes.iter().map(|s| Box::<str>::from(*s)).collect();
        let mut route = Route::new(path, methods, Access::AnyOf(scopes));
        route.gate = if path.starts_with("/agents/v1/control/") {
            Some(Gate::WritesExperimental)
        } else if path.starts_with("/agents/v1/addresses") {
            Some(Gate::AddressesApi)
        } else if path.starts_with("/agents/v1/users") {
            Some(Gate::UsersApi)
        } else {
            None
        };
        if path.starts_with("/agents/v1/entries") {
            route.elevation = Some(Elevation::EntriesStatus);
        }
        route.upstream_reauthenticates = path == WHOAMI_PATH;
        route
    }

    /// The required scopes joined for logs and error bodies.
    pub fn required_scopes(&self) -> &[Box<str>] {
        match &self.access {
            Access::AnyOf(s) => s,
            _ => &[],
        }
    }
}

/// Read routes: (paths, scopes any-of).
const READ_ROUTES: &[(&[&str], &[&str])] = &[
    (&["/health"], &["health:read"]),
    (&["/readiness"], &["readiness:read"]),
    (&["/auth/whoami"], &["auth:read"]),
    (&["/products"], &["products:read"]),
    (&["/variants", "/variants/show"], &["variants:read"]),
    (
        &["/subscriptions", "/subscriptions/show"],
        &["subscriptions:read"],
    ),
    (&["/transfers", "/transfers/show"], &["transfers:read"]),
    (&["/donations", "/donations/show"], &["donations:read"]),
    (&["/orders", "/orders/show"], &["orders:read"]),
    (&["/entries", "/entries/show"], &["entries:read"]),
    (&["/changes"], &["changes:read"]),
    (&["/assets", "/assets/show"], &["assets:read"]),
    (&["/categories", "/categories/show"], &["categories:read"]),
    (&["/tags", "/tags/show"], &["tags:read"]),
    (&["/global-sets", "/global-sets/show"], &["globalsets:read"]),
    (&["/addresses", "/addresses/show"], &["addresses:read"]),
    (
        &["/content-blocks", "/content-blocks/show"],
        &["contentblocks:read"],
    ),
    (&["/users", "/users/show"], &["users:read"]),
    (&["/sections"], &["sections:read"]),
    (&["/workflows", "/workflows/show"], &["jobs:read"]),
    (&["/templates", "/starter-packs"], &["templates:read"]),
    (&["/schema"], &["schema:read"]),
    (&["/capabilities"], &["capabilities:read"]),
    (&["/openapi.json"], &["openapi:read"]),
    (&["/adoption/metrics"], &["adoption:read"]),
    (&["/metrics"], &["metrics:read"]),
    (&["/incidents"], &["incidents:read"]),
    (&["/lifecycle"], &["lifecycle:read"]),
    (&["/diagnostics/bundle"], &["diagnostics:read"]),
    (
        &["/sync-state/lag", "/consumers/lag"],
        &["syncstate:read", "consumers:read"],
    ),
    (&["/webhooks/dlq"], &["webhooks:dlq:read"]),
    (&["/control/policies"], &["control:policies:read"]),
    (&["/control/approvals"], &["control:approvals:read"]),
    (&["/control/executions"], &["control:executions:read"]),
    (&["/control/audit"], &["control:audit:read"]),
];

/// POST routes: (paths, scopes any-of).
const POST_ROUTES: &[(&[&str], &[&str])] = &[
    (&["/workflows/run-report"], &["jobs:report"]),
    (
        &["/sync-state/checkpoint", "/consumers/checkpoint"],
        &["syncstate:write", "consumers:write"],
    ),
    (&["/webhooks/dlq/replay"], &["webhooks:dlq:replay"]),
    (&["/control/policies/upsert"], &["control:policies:write"]),
    (
        &["/control/approvals/request"],
        &["control:approvals:request", "control:approvals:write"],
    ),
    (
        &["/control/approvals/decide"],
        &["control:approvals:decide", "control:approvals:write"],
    ),
    (&["/control/policy-simulate"], &["control:actions:simulate"]),
    (&["/control/actions/execute"], &["control:actions:execute"]),
];

const PUBLIC_PATHS: &[&str] = &["/llms.txt", "/commerce.txt"];

/// The built-in table of the Agents API.
pub fn builtin_routes() -> Vec<Route> {
    let mut routes = Vec::new();
    for (table, methods) in [(READ_ROUTES, Methods::READ), (POST_ROUTES, Methods::POST)] {
        for (paths, scopes) in table {
            for p in *paths {
                routes.push(Route::scoped(&format!("{API_PREFIX}{p}"), methods, scopes));
            }
        }
    }
    routes.push(Route::new(
        "/agents/v1/plugins/{plugin}/{resource}",
        Methods::READ,
        Access::PluginRead,
    ));
    for p in PUBLIC_PATHS {
        routes.push(Route::new(p, Methods::READ, Access::Public));
    }
    routes
}

/// The route a request matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteMatch<'s, 'r> {
    Route(&'s Route),
    Plugin {
        route: &'s Route,
        plugin: &'r str,
        resource: &'r str,
    },
    /// Nothing matched: under `/agents/v1` or anywhere else, fail closed with 404.
    Unknown,
}

/// Exact routes by path, then the plugin pattern, then prefix routes (longest first).
#[derive(Debug, Clone)]
pub struct RouteTable {
    exact: HashMap<Box<str>, Route>,
    prefixes: Vec<Route>,
    plugin: Option<Route>,
}

impl RouteTable {
    /// Builds a table; later routes with the same path (and match kind) replace earlier ones.
    pub fn new(routes: impl IntoIterator<Item = Route>) -> Self {
        let mut exact = HashMap::new();
        let mut prefixes: Vec<Route> = Vec::new();
        let mut plugin = None;
        for route in routes {
            if route.access == Access::PluginRead && !route.prefix_match {
                plugin = Some(route);
            } else if route.prefix_match {
                prefixes.retain(|r| r.path != route.path);
                prefixes.push(route);
            } else {
                exact.insert(route.path.clone(), route);
            }
        }
        prefixes.sort_by_key(|r| std::cmp::Reverse(r.path.len()));
        RouteTable {
            exact,
            prefixes,
            plugin,
        }
    }

    pub fn builtin() -> Self {
        RouteTable::new(builtin_routes())
    }

    /// Looks up an existing route by its table path, for overrides.
    pub fn get(&self, path: &str, prefix_match: bool) -> Option<&Route> {
        if prefix_match {
            self.prefixes.iter().find(|r| &*r.path == path)
        } else if self.plugin.as_ref().is_some_and(|p| &*p.path == path) {
            self.plugin.as_ref()
        } else {
            self.exact.get(path)
        }
    }

    pub fn routes(&self) -> impl Iterator<Item = &Route> {
        self.exact
            .values()
            .chain(self.plugin.iter())
            .chain(self.prefixes.iter())
    }

    pub fn len(&self) -> usize {
        self.exact.len() + self.prefixes.len() + usize::from(self.plugin.is_some())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn lookup<'s, 'r>(&'s self, path: &'r str) -> RouteMatch<'s, 'r> {
        // One trailing slash is the same resource; the upstream treats it so.
        let path = match path.strip_suffix('/') {
            Some(p) if !p.is_empty() => p,
            _ => path,
        };
        if let Some(route) = self.exact.get(path) {
            return RouteMatch::Route(route);
        }
        if let Some(m) = self.plugin_match(path) {
            return m;
        }
        self.prefixes
            .iter()
            .find(|r| path.starts_with(&*r.path))
            .map_or(RouteMatch::Unknown, RouteMatch::Route)
    }

    fn plugin_match<'s, 'r>(&'s self, path: &'r str) -> Option<RouteMatch<'s, 'r>> {
        let route = self.plugin.as_ref()?;
        let rest = path.strip_prefix(PLUGINS_PREFIX)?;
        let mut parts = rest.split('/');
        let plugin = parts.next().filter(|s| is_plugin_segment(s))?;
        let resource = parts.next().filter(|s| is_plugin_segment(s))?;
        match (parts.next(), parts.next()) {
            (None, _) => {}
            (Some(id), None) if !id.is_empty() => {}
            _ => return None,
        }
        Some(RouteMatch::Plugin {
            route,
            plugin,
            resource,
        })
    }
}

/// Plugin and resource names must already be valid scope characters, so the scope the
/// route needs is exactly what the path says.
fn is_plugin_segment(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> RouteTable {
        RouteTable::builtin()
    }

    fn scopes_of(path: &str) -> Vec<String> {
        match table().lookup(path) {
            RouteMatch::Route(r) => r.required_scopes().iter().map(|s| s.to_string()).collect(),
            other => panic!("{path}: {other:?}"),
        }
    }

    #[test]
    fn every_read_row_of_the_spec_maps_to_its_scope() {
        let rows: &[(&str, &str)] = &[
            ("/health", "health:read"),
            ("/readiness", "readiness:read"),
            ("/auth/whoami", "auth:read"),
            ("/products", "products:read"),
            ("/variants/show", "variants:read"),
            ("/subscriptions/show", "subscriptions:read"),
            ("/transfers", "transfers:read"),
            ("/donations/show", "donations:read"),
            ("/orders/show", "orders:read"),
            ("/entries/show", "entries:read"),
            ("/changes", "changes:read"),
            ("/assets/show", "assets:read"),
            ("/categories", "categories:read"),
            ("/tags/show", "tags:read"),
            ("/global-sets", "globalsets:read"),
            ("/addresses/show", "addresses:read"),
            ("/content-blocks/show", "contentblocks:read"),
            ("/users", "users:read"),
            ("/sections", "sections:read"),
            ("/workflows/show", "jobs:read"),
            ("/templates", "templates:read"),
            ("/starter-packs", "templates:read"),
            ("/schema", "schema:read"),
            ("/capabilities", "capabilities:read"),
            ("/openapi.json", "openapi:read"),
            ("/adoption/metrics", "adoption:read"),
            ("/metrics", "metrics:read"),
            ("/incidents", "incidents:read"),
            ("/lifecycle", "lifecycle:read"),
            ("/diagnostics/bundle", "diagnostics:read"),
            ("/webhooks/dlq", "webhooks:dlq:read"),
            ("/control/policies", "control:policies:read"),
            ("/control/approvals", "control:approvals:read"),
            ("/control/executions", "control:executions:read"),
            ("/control/audit", "control:audit:read"),
            ("/workflows/run-report", "jobs:report"),
            ("/webhooks/dlq/replay", "webhooks:dlq:replay"),
            ("/control/policies/upsert", "control:policies:write"),
            ("/control/policy-simulate", "control:actions:simulate"),
            ("/control/actions/execute", "control:actions:execute"),
        ];
        for (p, scope) in rows {
            assert_eq!(scopes_of(&format!("/agents/v1{p}")), vec![*scope], "{p}");
        }
    }

    #[test]
    fn any_of_rows_list_both_scopes() {
        for p in ["/sync-state/lag", "/consumers/lag"] {
            assert_eq!(
                scopes_of(&format!("/agents/v1{p}")),
                ["syncstate:read", "consumers:read"]
            );
        }
        for p in ["/sync-state/checkpoint", "/consumers/checkpoint"] {
            assert_eq!(
                scopes_of(&format!("/agents/v1{p}")),
                ["syncstate:write", "consumers:write"]
            );
        }
        assert_eq!(
            scopes_of("/agents/v1/control/approvals/request"),
            ["control:approvals:request", "control:approvals:write"]
        );
        assert_eq!(
            scopes_of("/agents/v1/control/approvals/decide"),
            ["control:approvals:decide", "control:approvals:write"]
        );
    }

    #[test]
    fn write_routes_take_post_only_and_reads_get_head() {
        let t = table();
        let RouteMatch::Route(r) = t.lookup("/agents/v1/workflows/run-report") else {
            panic!()
        };
        assert!(r.methods.allows("POST") && !r.methods.allows("GET"));
        assert_eq!(&*r.allow_header, "POST");
        let RouteMatch::Route(r) = t.lookup("/agents/v1/products") else {
            panic!()
        };
        assert!(r.methods.allows("GET") && r.methods.allows("HEAD"));
        assert!(!r.methods.allows("POST") && !r.methods.allows("PROPFIND"));
        assert_eq!(&*r.allow_header, "GET, HEAD");
    }

    #[test]
    fn gates_and_elevation_are_attached() {
        let t = table();
        let gate = |p: &str| match t.lookup(p) {
            RouteMatch::Route(r) => r.gate,
            _ => panic!("{p}"),
        };
        assert_eq!(
            gate("/agents/v1/control/audit"),
            Some(Gate::WritesExperimental)
        );
        assert_eq!(gate("/agents/v1/addresses"), Some(Gate::AddressesApi));
        assert_eq!(gate("/agents/v1/users/show"), Some(Gate::UsersApi));
        assert_eq!(gate("/agents/v1/products"), None);
        let RouteMatch::Route(r) = t.lookup("/agents/v1/entries") else {
            panic!()
        };
        assert_eq!(r.elevation, Some(Elevation::EntriesStatus));
    }

    #[test]
    fn public_files_are_public_reads() {
        for p in ["/llms.txt", "/commerce.txt"] {
            let t = table();
            let RouteMatch::Route(r) = t.lookup(p) else {
                panic!()
            };
            assert_eq!(r.access, Access::Public);
            assert_eq!(r.methods, Methods::READ);
        }
    }

    #[test]
    fn plugin_paths_take_two_or_three_segments() {
        let t = table();
        for (p, want) in [
            ("/agents/v1/plugins/shop/items", Some(("shop", "items"))),
            ("/agents/v1/plugins/shop/items/42", Some(("shop", "items"))),
            ("/agents/v1/plugins/shop", None),
            ("/agents/v1/plugins/shop/items/42/x", None),
            ("/agents/v1/plugins/Shop/items", None),
            ("/agents/v1/plugins//items", None),
        ] {
            let got = match t.lookup(p) {
                RouteMatch::Plugin {
                    plugin, resource, ..
                } => Some((plugin, resource)),
                _ => None,
            };
            assert_eq!(got, want, "{p}");
        }
    }

    #[test]
    fn unknown_and_case_variant_paths_match_nothing() {
        let t = table();
        for p in [
            "/agents/v1/nope",
            "/agents/v1",
            "/AGENTS/v1/health",
            "/agents/v1/health%2F",
            "/",
        ] {
            assert_eq!(t.lookup(p), RouteMatch::Unknown, "{p}");
        }
    }

    #[test]
    fn one_trailing_slash_is_the_same_route() {
        assert_eq!(scopes_of("/agents/v1/health/"), ["health:read"]);
    }

    #[test]
    fn later_routes_replace_earlier_and_prefixes_prefer_longest() {
        let mut custom = Route::new("/agents/v1/health", Methods::READ, Access::Public);
        custom.disabled = true;
        let mut short = Route::new("/static/", Methods::READ, Access::Public);
        short.prefix_match = true;
        let mut long = Route::new(
            "/static/private/",
            Methods::READ,
            Access::AnyOf(Box::new([])),
        );
        long.prefix_match = true;
        let t = RouteTable::new(builtin_routes().into_iter().chain([custom, short, long]));
        let RouteMatch::Route(r) = t.lookup("/agents/v1/health") else {
            panic!()
        };
        assert!(r.disabled);
        let RouteMatch::Route(r) = t.lookup("/static/private/x") else {
            panic!()
        };
        assert_eq!(&*r.path, "/static/private/");
        let RouteMatch::Route(r) = t.lookup("/static/a.css") else {
            panic!()
        };
        assert_eq!(&*r.path, "/static/");
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn lookup_never_matches_outside_known_paths(path in "/[a-z0-9/._%-]{0,40}") {
            let t = RouteTable::builtin();
            match t.lookup(&path) {
                RouteMatch::Route(r) => {
                    let trimmed = path.strip_suffix('/').filter(|p| !p.is_empty()).unwrap_or(&path);
                    prop_assert_eq!(&*r.path, trimmed);
                }
                RouteMatch::Plugin { plugin, resource, .. } => {
                    prop_assert!(path.starts_with("/agents/v1/plugins/"));
                    prop_assert!(!plugin.is_empty() && !resource.is_empty());
                    prop_assert!(!plugin.contains('%') && !resource.contains('%'));
                }
                RouteMatch::Unknown => {}
            }
        }
    }
}
