//! Reads a managed-keys file one entry at a time. A whole-document `Value` of a million
//! keys takes about 1 GB, and the allocator keeps most of that after it is freed; read
//! entry by entry, each entry is parsed, handed to the builder and dropped.

use super::credentials::CredentialBuilder;
use serde::de::{
    DeserializeSeed, Deserializer, Error as _, IgnoredAny, MapAccess, SeqAccess, Visitor,
};
use serde_json::Value;
use serde_json::error::Category;
use std::fmt;

/// The document's shape, as for a parsed document.
pub const SHAPE: &str = "expected a list, or an object with a \"credentials\" list";

/// Why a document could not be read.
#[derive(Debug)]
pub enum StreamError {
    /// Not JSON, at this 1-based line and column.
    Syntax { line: usize, column: usize },
    /// JSON, but not a list or an object with a `credentials` list.
    Shape,
}

/// Feeds every entry of `{"credentials": [...]}` or of a bare list to the builder.
pub fn add_managed(
    builder: &mut CredentialBuilder,
    source_name: &str,
    text: &str,
) -> Result<(), StreamError> {
    let mut de = serde_json::Deserializer::from_str(text);
    let seed = Document {
        builder,
        source_name,
    };
    match seed.deserialize(&mut de).and_then(|()| de.end()) {
        Ok(()) => Ok(()),
        // Entries are read as `Value`, which takes any JSON, so a data error can only come
        // from the document's own shape.
        Err(e) if e.classify() == Category::Data => Err(StreamError::Shape),
        Err(e) => Err(StreamError::Syntax {
            line: e.line(),
            column: e.column(),
        }),
    }
}

/// The top level: a list of entries, or an object whose `credentials` is that list.
/// Any other JSON value is refused by the visitor's defaults (a data error).
struct Document<'b, 's> {
    builder: &'b mut CredentialBuilder,
    source_name: &'s str,
}

impl<'de> DeserializeSeed<'de> for Document<'_, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<(), D::Error> {
        de.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Document<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(SHAPE)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        // Each entry is a small `Value`, checked by the builder and dropped before the next.
        let mut position = 0;
        while let Some(entry) = seq.next_element::<Value>()? {
            position += 1;
            self.builder
                .add_managed_entry(self.source_name, position, &entry);
        }
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut list = Some(Entries(self));
        while let Some(key) = map.next_key::<String>()? {
            if key != "credentials" {
                map.next_value::<IgnoredAny>()?;
                continue;
            }
            // A second `credentials` list would be ambiguous: refuse the document.
            let entries = list.take().ok_or_else(|| A::Error::custom(SHAPE))?;
            map.next_value_seed(entries)?;
        }
        match list {
            None => Ok(()),
            Some(_) => Err(A::Error::custom(SHAPE)),
        }
    }
}

/// The value of `credentials`: a list, and nothing else.
struct Entries<'b, 's>(Document<'b, 's>);

impl<'de> DeserializeSeed<'de> for Entries<'_, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<(), D::Error> {
        de.deserialize_seq(self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> Result<usize, StreamError> {
        let mut b = CredentialBuilder::new();
        add_managed(&mut b, "keys.json", text)?;
        let (creds, _) = b.build(&["health:read".to_string()], Default::default());
        Ok(creds.len())
    }

    const HASH: &str = "20dbaa9f2039534b79eb4bc4d041d720f9f47e4ef5c0fb8c599e9ef8aa34e7ba";

    #[test]
    fn reads_the_object_form_and_the_bare_list() {
        let entry = format!(r#"{{"id":"a","tokenHash":"{HASH}"}}"#);
        let object = format!(r#"{{"version":3,"credentials":[{entry}],"note":{{"x":[1]}}}}"#);
        assert_eq!(read(&object).ok(), Some(1));
        assert_eq!(read(&format!("[{entry}]")).ok(), Some(1));
        assert_eq!(read("[]").ok(), Some(0));
    }

    #[test]
    fn a_document_of_the_wrong_shape_is_a_shape_error() {
        for text in [
            "{}",
            r#"{"credentials":{}}"#,
            r#"{"credentials":"x"}"#,
            r#"{"credentials":[],"credentials":[]}"#,
            "3",
            "\"keys\"",
            "null",
        ] {
            assert!(matches!(read(text), Err(StreamError::Shape)), "{text}");
        }
    }

    #[test]
    fn broken_json_names_line_and_column() {
        let err = read("[\n {\"id\": }\n]").err();
        assert!(matches!(
            err,
            Some(StreamError::Syntax { line: 2, column: 9 })
        ));
        assert!(matches!(
            read("[] trailing"),
            Err(StreamError::Syntax { .. })
        ));
    }

    #[test]
    fn a_bad_entry_is_skipped_and_the_rest_are_read() {
        let text = format!(r#"[{{"id":"bad"}}, 7, {{"id":"ok","tokenHash":"{HASH}"}}]"#);
        assert_eq!(read(&text).ok(), Some(1));
    }
}
