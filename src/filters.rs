//! Docker's `filters` argument: a JSON map from a filter name to values,
//! either `{"name":["a","b"]}` or the older `{"name":{"a":true}}`. Engine
//! list functions take a parsed [`Filters`] and check names they accept.

use std::collections::BTreeMap;

use crate::error::{EngineError, EngineResult};

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filters(BTreeMap<String, Vec<String>>);

impl Filters {
    /// Parses the query value; an empty string means no filters.
    pub fn parse(raw: &str) -> EngineResult<Filters> {
        if raw.trim().is_empty() {
            return Ok(Filters::default());
        }
        let value: serde_json::Value = serde_json::from_str(raw)
            .map_err(|e| EngineError::InvalidParameter(format!("invalid filter: {e}")))?;
        let obj = value
            .as_object()
            .ok_or_else(|| EngineError::InvalidParameter("invalid filter: not an object".into()))?;
        let mut out = BTreeMap::new();
        for (k, v) in obj {
            let values: Vec<String> = match v {
                serde_json::Value::Array(a) => a
                    .iter()
                    .map(|x| x.as_str().map(String::from))
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| bad_value(k))?,
                serde_json::Value::Object(m) => m
                    .iter()
                    .filter(|(_, on)| on.as_bool().unwrap_or(false))
                    .map(|(name, _)| name.clone())
                    .collect(),
                _ => return Err(bad_value(k)),
            };
            out.insert(k.clone(), values);
        }
        Ok(Filters(out))
    }

    /// Refuses filter names the caller does not support, in dockerd's words.
    pub fn accept_only(&self, names: &[&str]) -> EngineResult<()> {
        for k in self.0.keys() {
            if !names.contains(&k.as_str()) {
                return Err(EngineError::InvalidParameter(format!(
                    "invalid filter '{k}'"
                )));
            }
        }
        Ok(())
    }

    pub fn get(&self, name: &str) -> &[String] {
        self.0.get(name).map(Vec::as_slice).unwrap_or(&[])
    }

    pub fn contains(&self, name: &str) -> bool {
        self.0.get(name).is_some_and(|v| !v.is_empty())
    }

    /// True when the filter is absent or any of its values satisfies `f`.
    pub fn any_or_absent(&self, name: &str, f: impl Fn(&str) -> bool) -> bool {
        let vals = self.get(name);
        vals.is_empty() || vals.iter().any(|v| f(v))
    }

    /// The `label` filter: every `key` or `key=value` must match.
    pub fn labels_match(&self, name: &str, labels: &BTreeMap<String, String>) -> bool {
        self.get(name)
            .iter()
            .all(|want| match want.split_once('=') {
                Some((k, v)) => labels.get(k).is_some_and(|have| have == v),
                None => labels.contains_key(want.as_str()),
            })
    }

    /// A boolean filter (`dangling=true`); errors on other values like dockerd.
    pub fn bool_value(&self, name: &str) -> EngineResult<Option<bool>> {
        let vals = self.get(name);
        let mut result = None;
        for v in vals {
            let b = match v.to_ascii_lowercase().as_str() {
                "true" | "1" => true,
                "false" | "0" => false,
                _ => {
                    return Err(EngineError::InvalidParameter(format!(
                        "invalid filter '{name}={v}'"
                    )))
                }
            };
            result = Some(b);
        }
        Ok(result)
    }
}

fn bad_value(k: &str) -> EngineError {
    EngineError::InvalidParameter(format!("invalid filter: bad value for '{k}'"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_shapes_and_rejects_junk() {
        let f = Filters::parse(r#"{"label":["a=b","c"],"dangling":{"true":true}}"#).unwrap();
        assert_eq!(f.get("label"), ["a=b", "c"]);
        assert_eq!(f.bool_value("dangling").unwrap(), Some(true));
        assert!(f.accept_only(&["label"]).is_err());
        assert!(Filters::parse("[1]").is_err());
        assert!(Filters::parse("{").is_err());
        assert_eq!(Filters::parse("").unwrap(), Filters::default());
        let mut labels = BTreeMap::new();
        labels.insert("a".to_string(), "b".to_string());
        labels.insert("c".to_string(), "x".to_string());
        assert!(f.labels_match("label", &labels));
        labels.insert("a".to_string(), "z".to_string());
        assert!(!f.labels_match("label", &labels));
    }
}
