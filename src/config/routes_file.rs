//! The operator's routes file, merged over the built-in table.
//!
//! ```json
//! {"routes": [
//!   {"path": "/agents/v1/reports", "methods": ["GET", "HEAD"], "scopes": ["reports:read"]},
//!   {"path": "/agents/v1/metrics", "disabled": true},
//!   {"path": "/status", "public": true},
//!   {"path": "/static/", "match": "prefix", "public": true}
//! ]}
//! ```
//! An entry for a path the built-in table has changes only the fields it names.

use crate::core::routes::{Access, Methods, Route, RouteTable, builtin_routes};
use crate::core::scopes::{Gate, normalize};
use crate::core::warning::ConfigWarning;
use serde_json::{Map, Value};

/// Builds the table: built-in routes, then every valid entry of the document.
/// `Err` only when the document as a whole has the wrong shape.
pub fn merge_routes(
    source_name: &str,
    doc: Option<&Value>,
    warnings: &mut Vec<ConfigWarning>,
) -> Result<RouteTable, String> {
    let builtin = RouteTable::builtin();
    let Some(doc) = doc else {
        return Ok(builtin);
    };
    let list = match doc {
        Value::Array(list) => list,
        Value::Object(map) => match map.get("routes") {
            Some(Value::Array(list)) => list,
            _ => return Err("expected a list, or an object with a \"routes\" list".into()),
        },
        _ => return Err("expected a list, or an object with a \"routes\" list".into()),
    };
    let mut routes = builtin_routes();
    for (i, entry) in list.iter().enumerate() {
        match parse_entry(entry, &builtin) {
            Ok(route) => routes.push(route),
            Err(reason) => warnings.push(
                ConfigWarning::new(source_name, format!("{reason}; route skipped"))
                    .at(entry_name(entry, i)),
            ),
        }
    }
    Ok(RouteTable::new(routes))
}

fn entry_name(entry: &Value, i: usize) -> String {
    match entry.get("path").and_then(Value::as_str) {
        Some(p) => format!("entry {} ({p})", i + 1),
        None => format!("entry {}", i + 1),
    }
}

fn parse_entry(entry: &Value, builtin: &RouteTable) -> Result<Route, String> {
    let obj = entry.as_object().ok_or("not an object")?;
    for key in obj.keys() {
        if !matches!(
            key.as_str(),
            "path" | "match" | "methods" | "scopes" | "public" | "disabled" | "flag"
        ) {
            return Err(format!("unknown field {key:?}"));
        }
    }
    let path = obj
        .get("path")
        .and_then(Value::as_str)
        .ok_or("path is missing or not a string")?;
    if !path.starts_with('/') || path.contains(['?', '#', ' ']) {
        return Err("path must start with / and hold no query, fragment or space".into());
    }
    let prefix_match = match obj.get("match").map(Value::as_str) {
        None | Some(Some("exact")) => false,
        Some(Some("prefix")) => true,
        _ => return Err("match must be \"exact\" or \"prefix\"".into()),
    };
    let mut route = match builtin.get(path, prefix_match) {
        Some(existing) => existing.clone(),
        None => {
            let mut r = Route::new(path, Methods::READ, Access::AnyOf(Box::new([])));
            r.prefix_match = prefix_match;
            r
        }
    };
    if let Some(methods) = obj.get("methods") {
        route.methods = parse_methods(methods)?;
        route.allow_header = route.methods.allow_header().into();
    }
    if let Some(scopes) = obj.get("scopes") {
        route.access = Access::AnyOf(parse_scopes(scopes)?);
    }
    if bool_field(obj, "public")? == Some(true) {
        route.access = Access::Public;
    }
    if let Some(disabled) = bool_field(obj, "disabled")? {
        route.disabled = disabled;
    }
    if let Some(flag) = obj.get("flag") {
        route.gate = Some(parse_gate(flag)?);
    }
    if matches!(&route.access, Access::AnyOf(s) if s.is_empty()) && !route.disabled {
        return Err("a route that is not public needs at least one scope".into());
    }
    Ok(route)
}

fn bool_field(obj: &Map<String, Value>, name: &str) -> Result<Option<bool>, String> {
    match obj.get(name) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(format!("{name} must be true or false")),
    }
}

fn parse_methods(value: &Value) -> Result<Methods, String> {
    let list = value.as_array().ok_or("methods must be a list")?;
    let mut methods = Methods::empty();
    for m in list {
        let name = m.as_str().ok_or("methods must be strings")?;
        let parsed = Methods::parse_one(name).ok_or_else(|| {
            format!("method {name:?} is not one of GET HEAD POST PUT PATCH DELETE OPTIONS")
        })?;
        methods = methods.union(parsed);
    }
    if methods.is_empty() {
        return Err("methods must name at least one method".into());
    }
    Ok(methods)
}

fn parse_scopes(value: &Value) -> Result<Box<[Box<str>]>, String> {
    let raw: Vec<&str> = match value {
        Value::String(s) => vec![s.as_str()],
        Value::Array(items) => items
            .iter()
            .map(Value::as_str)
            .collect::<Option<_>>()
            .ok_or("scopes must be strings")?,
        _ => return Err("scopes must be a list of strings or a string".into()),
    };
    let scopes = normalize(raw);
    if scopes.iter().any(|s| s == "*") {
        return Err("scope \"*\" cannot be required by a route".into());
    }
    Ok(scopes.into_iter().map(Box::from).collect())
}

fn parse_gate(value: &Value) -> Result<Gate, String> {
    match value.as_str() {
        Some("addresses") => Ok(Gate::AddressesApi),
        Some("users") => Ok(Gate::UsersApi),
        Some("writes") => Ok(Gate::WritesExperimental),
        _ => Err("flag must be \"addresses\", \"users\" or \"writes\"".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::routes::RouteMatch;
    use serde_json::json;

    fn merged(doc: Value) -> (RouteTable, Vec<ConfigWarning>) {
        let mut w = Vec::new();
        let t = merge_routes("routes.json", Some(&doc), &mut w).unwrap();
        (t, w)
    }

    #[test]
    fn adds_overrides_and_disables_routes() {
        let (t, w) = merged(json!({"routes": [
            {"path": "/agents/v1/reports", "methods": ["GET"], "scopes": "reports:read"},
            {"path": "/agents/v1/metrics", "disabled": true},
            {"path": "/static/", "match": "prefix", "public": true}
        ]}));
        assert!(w.is_empty(), "{w:?}");
        let RouteMatch::Route(r) = t.lookup("/agents/v1/reports") else {
            panic!()
        };
        assert_eq!(r.required_scopes(), [Box::from("reports:read")]);
        assert_eq!(&*r.allow_header, "GET");
        let RouteMatch::Route(r) = t.lookup("/agents/v1/metrics") else {
            panic!()
        };
        assert!(r.disabled);
        let RouteMatch::Route(r) = t.lookup("/static/app.js") else {
            panic!()
        };
        assert_eq!(r.access, Access::Public);
    }

    #[test]
    fn overriding_a_builtin_keeps_fields_not_named() {
        let (t, _) = merged(json!([{"path": "/agents/v1/entries", "scopes": ["content:read"]}]));
        let RouteMatch::Route(r) = t.lookup("/agents/v1/entries") else {
            panic!()
        };
        assert!(r.elevation.is_some());
        assert_eq!(r.methods, Methods::READ);
        assert_eq!(r.required_scopes(), [Box::from("content:read")]);
    }

    #[test]
    fn bad_entries_are_skipped_and_named() {
        let (t, w) = merged(json!([
            {"path": "no-slash", "scopes": ["a:read"]},
            {"path": "/agents/v1/x", "methods": ["FETCH"], "scopes": ["a:read"]},
            {"path": "/agents/v1/y"},
            {"path": "/agents/v1/z", "scopes": ["*"]},
            {"path": "/agents/v1/w", "scopes": ["a:read"], "pubic": true},
            "junk"
        ]));
        assert_eq!(w.len(), 6, "{w:?}");
        assert!(w[1].entry.as_deref().unwrap().contains("/agents/v1/x"));
        assert!(w[1].message.contains("FETCH"));
        assert_eq!(t.lookup("/agents/v1/y"), RouteMatch::Unknown);
        assert_eq!(t.lookup("/agents/v1/w"), RouteMatch::Unknown);
    }

    #[test]
    fn wrong_document_shape_is_an_error() {
        let mut w = Vec::new();
        assert!(merge_routes("r", Some(&json!({"nope": 1})), &mut w).is_err());
        assert!(merge_routes("r", Some(&json!(3)), &mut w).is_err());
    }
}

#[cfg(test)]
mod shipped_example {
    use super::*;

    #[test]
    fn the_example_in_deploy_loads_without_warnings() {
        let doc: Value =
            serde_json::from_str(include_str!("../../deploy/routes.example.json")).unwrap();
        let mut w = Vec::new();
        let t = merge_routes("deploy/routes.example.json", Some(&doc), &mut w).unwrap();
        assert!(w.is_empty(), "{w:?}");
        assert!(t.len() > RouteTable::builtin().len());
    }
}
