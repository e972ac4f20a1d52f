//! Query-string helpers with dockerd's parsing rules.

use std::collections::HashMap;

use super::error::ApiError;
use crate::filters::Filters;

pub type Query = HashMap<String, String>;

/// dockerd's BoolValue: absent, "", "0", "no", "false", "none" are false;
/// anything else is true.
pub fn flag(q: &Query, name: &str) -> bool {
    match q.get(name) {
        None => false,
        Some(v) => !matches!(
            v.trim().to_ascii_lowercase().as_str(),
            "" | "0" | "no" | "false" | "none"
        ),
    }
}

pub fn string<'a>(q: &'a Query, name: &str) -> &'a str {
    q.get(name).map(String::as_str).unwrap_or("")
}

pub fn filters(q: &Query) -> Result<Filters, ApiError> {
    Ok(Filters::parse(string(q, "filters"))?)
}

/// A Unix timestamp parameter (`since`, `until`), fractional allowed, or
/// RFC 3339; returns nanoseconds.
pub fn time_nanos(q: &Query, name: &str) -> Result<Option<i64>, ApiError> {
    let v = string(q, name).trim();
    if v.is_empty() {
        return Ok(None);
    }
    if let Ok(f) = v.parse::<f64>() {
        return Ok(Some((f * 1e9) as i64));
    }
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(v) {
        return Ok(t.timestamp_nanos_opt());
    }
    if let Ok(d) = crate::duration::parse_go_duration(v) {
        let now = crate::store::images::now_nanos();
        return Ok(Some(now - d));
    }
    Err(ApiError::bad_request(format!(
        "failed to parse value as time or duration: \"{v}\""
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_and_times() {
        let mut q = Query::new();
        q.insert("a".into(), "1".into());
        q.insert("b".into(), "False".into());
        q.insert("c".into(), "yes".into());
        assert!(flag(&q, "a"));
        assert!(!flag(&q, "b"));
        assert!(flag(&q, "c"));
        assert!(!flag(&q, "d"));
        q.insert("t".into(), "1.5".into());
        assert_eq!(time_nanos(&q, "t").unwrap(), Some(1_500_000_000));
        q.insert("t".into(), "junk".into());
        assert!(time_nanos(&q, "t").is_err());
        // A Go duration is that long before now.
        q.insert("t".into(), "1h30m".into());
        let before = crate::store::images::now_nanos() - 5_400_000_000_000;
        let t = time_nanos(&q, "t").unwrap().unwrap();
        assert!((before..before + 60_000_000_000).contains(&t), "{t}");
        q.insert("t".into(), "10d".into());
        assert!(time_nanos(&q, "t").is_err());
    }
}
