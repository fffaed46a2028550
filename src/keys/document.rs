//! The managed-keys document as the loader reads it: a bare list of key entries, or an
//! object whose `credentials` field is that list. Entries stay JSON values so fields this
//! service does not know, and the order of everything, survive an edit.

use crate::config::credentials::{CredentialBuilder, normalize_id};
use crate::core::warning::ConfigWarning;
use serde_json::{Map, Value, json};

/// Why a file's text is not a managed-keys document. Never quotes the text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("not valid JSON at line {line}, column {column}")]
    Json { line: usize, column: usize },
    #[error("{0}")]
    Shape(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct KeyDocument {
    root: Value,
}

impl KeyDocument {
    /// A document with no keys, in the object form.
    pub fn empty() -> Self {
        Self {
            root: json!({ "credentials": [] }),
        }
    }

    /// Parses `text`, refusing exactly what the loader refuses as a whole. Problems with
    /// single entries do not stop an edit (the entries are kept as they are); they are
    /// returned so the caller can show them.
    pub fn parse(text: &str) -> Result<(Self, Vec<ConfigWarning>), ParseError> {
        let root: Value = serde_json::from_str(text).map_err(|e| ParseError::Json {
            line: e.line(),
            column: e.column(),
        })?;
        let mut loader = CredentialBuilder::new();
        loader
            .add_managed("managed-keys file", &root)
            .map_err(ParseError::Shape)?;
        Ok((Self { root }, loader.warnings))
    }

    /// The document as written back: two-space indented JSON and a final newline.
    pub fn to_text(&self) -> String {
        let mut text = serde_json::to_string_pretty(&self.root).expect("a JSON value serialises");
        text.push('\n');
        text
    }

    pub fn entries(&self) -> &[Value] {
        match &self.root {
            Value::Array(list) => list,
            Value::Object(map) => map["credentials"].as_array().expect("checked in parse"),
            _ => unreachable!("checked in parse"),
        }
    }

    pub(crate) fn entries_mut(&mut self) -> &mut Vec<Value> {
        match &mut self.root {
            Value::Array(list) => list,
            Value::Object(map) => map
                .get_mut("credentials")
                .and_then(Value::as_array_mut)
                .expect("checked in parse"),
            _ => unreachable!("checked in parse"),
        }
    }

    /// The id the loader gives the entry at `index`, or `None` for an entry that is not
    /// an object or whose id is not a string (the loader skips those).
    pub fn id_at(&self, index: usize) -> Option<String> {
        entry_id(&self.entries()[index], index + 1)
    }

    /// The position of the first entry the loader would name `id`.
    pub fn position(&self, id: &str) -> Option<usize> {
        (0..self.entries().len()).find(|&i| self.id_at(i).as_deref() == Some(id))
    }

    pub(crate) fn object_mut(&mut self, index: usize) -> &mut Map<String, Value> {
        self.entries_mut()[index]
            .as_object_mut()
            .expect("position() only finds objects")
    }
}

fn entry_id(entry: &Value, position: usize) -> Option<String> {
    let obj = entry.as_object()?;
    match obj.get("id") {
        None | Some(Value::Null) => Some(normalize_id("", position)),
        Some(Value::String(raw)) => Some(normalize_id(raw, position)),
        Some(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

    #[test]
    fn both_shapes_parse_and_keep_unknown_fields_in_order() {
        let text = format!(
            r#"{{"zeta": 1, "credentials": [{{"tokenHash": "{HASH}", "id": "B", "note": "x"}}]}}"#
        );
        let (doc, warnings) = KeyDocument::parse(&text).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(doc.position("b"), Some(0));
        let out = doc.to_text();
        let order: Vec<usize> = ["zeta", "credentials", "tokenHash", "\"id\"", "note"]
            .iter()
            .map(|k| out.find(k).unwrap())
            .collect();
        assert!(order.windows(2).all(|w| w[0] < w[1]), "{out}");
        let bare = format!(r#"[{{"id": "a", "tokenHash": "{HASH}"}}]"#);
        let (doc, _) = KeyDocument::parse(&bare).unwrap();
        assert!(doc.to_text().trim_start().starts_with('['));
    }

    #[test]
    fn whole_file_problems_are_refused_entry_problems_reported() {
        assert_eq!(
            KeyDocument::parse("{\"credentials\": [").unwrap_err(),
            ParseError::Json {
                line: 1,
                column: 17
            }
        );
        assert!(matches!(
            KeyDocument::parse(r#"{"keys": []}"#),
            Err(ParseError::Shape(_))
        ));
        let (doc, warnings) = KeyDocument::parse(r#"[{"id": "a"}, 7]"#).unwrap();
        assert_eq!(warnings.len(), 2);
        assert_eq!(doc.position("a"), Some(0));
        assert_eq!(doc.id_at(1), None);
    }

    #[test]
    fn ids_are_found_as_the_loader_names_them() {
        let (doc, _) = KeyDocument::parse(r#"[{"id": "Ops Bot"}, {"tokenHash": "x"}]"#).unwrap();
        assert_eq!(doc.position("ops-bot"), Some(0));
        assert_eq!(doc.position("credential-2"), Some(1));
    }
}
