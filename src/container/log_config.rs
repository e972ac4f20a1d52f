//! `HostConfig.LogConfig` (`--log-driver`, `--log-opt`): the json-file
//! driver and its options, validated like dockerd's.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::error::{EngineError, EngineResult};

/// Options of the json-file driver that we apply.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JsonFileOptions {
    pub max_size: Option<u64>,
    pub max_file: Option<u32>,
}

fn bad(m: impl Into<String>) -> EngineError {
    EngineError::InvalidParameter(m.into())
}

/// Go-units' `RAMInBytes`: `10m`, `1.5g`, `512k`, `100` (binary units,
/// optional `b`/`ib` suffix, any case).
pub fn ram_in_bytes(s: &str) -> Option<u64> {
    let t = s.trim().to_ascii_lowercase();
    let num_end = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(num_end);
    let n: f64 = num.parse().ok()?;
    let unit = unit.trim();
    let unit = unit
        .strip_suffix("ib")
        .or_else(|| unit.strip_suffix('b'))
        .unwrap_or(unit);
    let mul: u64 = match unit {
        "" => 1,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        "t" => 1 << 40,
        "p" => 1 << 50,
        _ => return None,
    };
    let v = n * mul as f64;
    (v.is_finite() && v >= 0.0 && v < u64::MAX as f64).then_some(v as u64)
}

/// Checks a LogConfig, returns it normalised (as stored and shown by
/// inspect) and the options the writer applies.
pub fn parse(lc: Option<&Value>) -> EngineResult<(Value, JsonFileOptions)> {
    let kind = lc
        .and_then(|l| l.get("Type"))
        .and_then(Value::as_str)
        .unwrap_or("");
    if !matches!(kind, "" | "json-file") {
        return Err(bad(format!(
            "log driver {kind:?} is not supported by mydocker yet"
        )));
    }
    let config: BTreeMap<String, String> = match lc.and_then(|l| l.get("Config")) {
        None | Some(Value::Null) => BTreeMap::new(),
        Some(c) => serde_json::from_value(c.clone())
            .map_err(|e| bad(format!("invalid LogConfig.Config: {e}")))?,
    };
    let mut opts = JsonFileOptions::default();
    for (k, v) in &config {
        match k.as_str() {
            "max-size" => {
                let n = ram_in_bytes(v).ok_or_else(|| bad(format!("invalid max-size: {v}")))?;
                if n == 0 {
                    return Err(bad("max-size must be a positive number"));
                }
                opts.max_size = Some(n);
            }
            "max-file" => {
                let n: i64 = v
                    .parse()
                    .map_err(|_| bad(format!("invalid max-file: {v}")))?;
                if n < 1 {
                    return Err(bad("max-file cannot be less than 1"));
                }
                opts.max_file = Some(u32::try_from(n).unwrap_or(u32::MAX));
            }
            // Attributes for the log entries: accepted, and json-file
            // writes none of them unless asked, which we do not yet.
            "labels" | "labels-regex" | "env" | "env-regex" | "tag" => {}
            "compress" if matches!(v.as_str(), "false" | "") => {}
            _ => {
                return Err(bad(format!(
                    "unknown log opt '{k}' for json-file log driver"
                )))
            }
        }
    }
    if opts.max_file.is_some_and(|n| n > 1) && opts.max_size.is_none() {
        return Err(bad(
            "max-file can only be used with max-size (rotation needs a size)",
        ));
    }
    Ok((json!({"Type": "json-file", "Config": config}), opts))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(ram_in_bytes("10m"), Some(10 << 20));
        assert_eq!(ram_in_bytes("1.5k"), Some(1536));
        assert_eq!(ram_in_bytes("100"), Some(100));
        assert_eq!(ram_in_bytes("2GiB"), Some(2 << 30));
        assert_eq!(ram_in_bytes("1x"), None);
        assert_eq!(ram_in_bytes(""), None);
    }

    #[test]
    fn options() {
        let (v, o) = parse(Some(
            &json!({"Type": "json-file", "Config": {"max-size": "1k", "max-file": "3"}}),
        ))
        .unwrap();
        assert_eq!(o.max_size, Some(1024));
        assert_eq!(o.max_file, Some(3));
        assert_eq!(v["Config"]["max-file"], "3");
        assert!(parse(None).is_ok());
        assert!(parse(Some(&json!({"Type": "syslog"}))).is_err());
        let e = parse(Some(&json!({"Config": {"nope": "1"}})))
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown log opt 'nope'"), "{e}");
        assert!(parse(Some(&json!({"Config": {"max-file": "0"}}))).is_err());
        assert!(parse(Some(&json!({"Config": {"max-size": "junk"}}))).is_err());
    }
}
