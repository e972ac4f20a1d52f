//! `--log-opt` for the json-file driver, validated with dockerd's rules and
//! words: `jsonfilelog.ValidateLogOpt` (known keys) and `jsonfilelog.New`
//! (`max-size` through go-units' `FromHumanSize`, i.e. decimal: `10m` is
//! 10,000,000 bytes; `max-file` through `strconv.Atoi`; `compress` through
//! `strconv.ParseBool`).

use std::collections::BTreeMap;

use crate::logs::LogError;

/// Rotation settings of one container's log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogOpts {
    /// Rotate once the file has reached this many bytes; `None`: never.
    pub max_size: Option<u64>,
    /// Files kept, the live one included (>= 1). With 1 the file is
    /// replaced by an empty one when full.
    pub max_file: u32,
    /// Gzip rotated files. dockerd supports it; we refuse it.
    pub compress: bool,
    /// The `labels`, `labels-regex`, `env`, `env-regex` and `tag` options,
    /// kept verbatim: the caller turns them into `attrs` (see
    /// [`super::JsonFileWriter::set_attrs`]) as it knows the container.
    pub attr_opts: BTreeMap<String, String>,
}

impl Default for LogOpts {
    fn default() -> Self {
        LogOpts {
            max_size: None,
            max_file: 1,
            compress: false,
            attr_opts: BTreeMap::new(),
        }
    }
}

const ATTR_KEYS: [&str; 5] = ["labels", "labels-regex", "env", "env-regex", "tag"];

impl LogOpts {
    /// Parses a `LogConfig.Config` map. Unknown keys are reported first
    /// (in key order, for a stable message), then `max-size`, `max-file`
    /// and `compress`, each with dockerd's message.
    pub fn parse<I, K, V>(config: I) -> Result<LogOpts, LogError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let config: BTreeMap<String, String> = config
            .into_iter()
            .map(|(k, v)| (k.as_ref().to_string(), v.as_ref().to_string()))
            .collect();
        let mut opts = LogOpts::default();
        for (key, value) in &config {
            match key.as_str() {
                "max-file" | "max-size" | "compress" => {}
                k if ATTR_KEYS.contains(&k) => {
                    opts.attr_opts.insert(key.clone(), value.clone());
                }
                _ => {
                    return Err(LogError::InvalidOpt(format!(
                        "unknown log opt '{key}' for json-file log driver"
                    )))
                }
            }
        }
        if let Some(v) = config.get("max-size") {
            let size = from_human_size(v).map_err(LogError::InvalidOpt)?;
            if size <= 0 {
                return Err(invalid("max-size must be a positive number"));
            }
            opts.max_size = Some(size as u64);
        }
        if let Some(v) = config.get("max-file") {
            let n = atoi(v).map_err(LogError::InvalidOpt)?;
            if n < 1 {
                return Err(invalid("max-file cannot be less than 1"));
            }
            opts.max_file = u32::try_from(n).unwrap_or(u32::MAX);
        }
        if let Some(v) = config.get("compress") {
            let compress = parse_bool(v).map_err(LogError::InvalidOpt)?;
            if compress && (opts.max_file == 1 || opts.max_size.is_none()) {
                return Err(invalid(
                    "compress cannot be true when max-file is less than 2 or max-size is not set",
                ));
            }
            if compress {
                return Err(LogError::CompressUnsupported);
            }
        }
        Ok(opts)
    }
}

fn invalid(msg: &str) -> LogError {
    LogError::InvalidOpt(msg.to_string())
}

/// Go's `strconv.Quote` for the strings that appear in its errors.
fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\x07' => out.push_str("\\a"),
            '\x08' => out.push_str("\\b"),
            '\x0b' => out.push_str("\\v"),
            '\x0c' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || c == '\x7f' => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// go-units `FromHumanSize` (v0.5): a number, an optional space, and an
/// optional case-insensitive suffix `b`, `k`, `kb`, `kib`, ... (decimal
/// multiples whatever the spelling).
pub(crate) fn from_human_size(s: &str) -> Result<i64, String> {
    let Some(sep) = s.rfind(|c: char| c.is_ascii_digit() || c == '.' || c == ' ') else {
        return Err(format!("invalid size: '{s}'"));
    };
    let (num, sfx) = if s.as_bytes()[sep] == b' ' {
        (&s[..sep], &s[sep + 1..])
    } else {
        (&s[..sep + 1], &s[sep + 1..])
    };
    let size = parse_float(num)?;
    if size < 0.0 {
        return Err(format!("invalid size: '{s}'"));
    }
    if sfx.is_empty() {
        return Ok(size as i64);
    }
    let bad_suffix = |sfx: &str| format!("invalid suffix: '{sfx}'");
    if sfx.len() > 3 {
        return Err(bad_suffix(sfx));
    }
    let lower = sfx.to_ascii_lowercase();
    let b = lower.as_bytes();
    if b[0] == b'b' {
        return if b.len() == 1 {
            Ok(size as i64)
        } else {
            Err(bad_suffix(&lower))
        };
    }
    let mul: f64 = match b[0] {
        b'k' => 1e3,
        b'm' => 1e6,
        b'g' => 1e9,
        b't' => 1e12,
        b'p' => 1e15,
        _ => return Err(bad_suffix(&lower)),
    };
    match b.len() {
        2 if b[1] != b'b' => return Err(bad_suffix(&lower)),
        3 if &b[1..] != b"ib" => return Err(bad_suffix(&lower)),
        _ => {}
    }
    // Go converts with int64(float): saturates here rather than wrapping.
    Ok((size * mul) as i64)
}

/// Go's `strconv.ParseFloat(s, 64)` for decimal input, with its errors.
fn parse_float(s: &str) -> Result<f64, String> {
    let syntax = || {
        format!(
            "strconv.ParseFloat: parsing {}: invalid syntax",
            go_quote(s)
        )
    };
    // Rust also accepts "inf"/"nan" spellings; Go does too, but a size
    // string only gets here with a digit, dot or space in it.
    let lower = s.to_ascii_lowercase();
    if lower.contains("inf") || lower.contains("nan") || s.contains('_') {
        return Err(syntax());
    }
    let v: f64 = s.parse().map_err(|_| syntax())?;
    if v.is_infinite() {
        return Err(format!(
            "strconv.ParseFloat: parsing {}: value out of range",
            go_quote(s)
        ));
    }
    Ok(v)
}

/// Go's `strconv.Atoi` (64-bit `int`), with its errors.
fn atoi(s: &str) -> Result<i64, String> {
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "strconv.Atoi: parsing {}: invalid syntax",
            go_quote(s)
        ));
    }
    s.parse::<i64>()
        .map_err(|_| format!("strconv.Atoi: parsing {}: value out of range", go_quote(s)))
}

/// Go's `strconv.ParseBool`.
fn parse_bool(s: &str) -> Result<bool, String> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        _ => Err(format!(
            "strconv.ParseBool: parsing {}: invalid syntax",
            go_quote(s)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(pairs: &[(&str, &str)]) -> Result<LogOpts, String> {
        LogOpts::parse(pairs.iter().copied()).map_err(|e| e.to_string())
    }

    #[test]
    fn human_sizes_are_decimal_like_from_human_size() {
        let ok = [
            ("32", 32),
            ("32b", 32),
            ("32B", 32),
            ("1k", 1000),
            ("1K", 1000),
            ("1kb", 1000),
            ("1KiB", 1000),
            ("10m", 10_000_000),
            ("10 MB", 10_000_000),
            ("2g", 2_000_000_000),
            ("1.5k", 1500),
            ("0.5", 0),
            ("1t", 1_000_000_000_000),
            ("1p", 1_000_000_000_000_000),
            ("5.", 5),
            (".5k", 500),
            ("1e3", 1000),
            ("10 ", 10),
        ];
        for (s, want) in ok {
            assert_eq!(from_human_size(s), Ok(want), "{s}");
        }
        let bad = [
            ("", "invalid size: ''"),
            ("m", "invalid size: 'm'"),
            ("abc", "invalid size: 'abc'"),
            ("-1", "invalid size: '-1'"),
            ("-1k", "invalid size: '-1k'"),
            ("10x", "invalid suffix: 'x'"),
            (
                "10kB2",
                "strconv.ParseFloat: parsing \"10kB2\": invalid syntax",
            ),
            ("10mbb", "invalid suffix: 'mbb'"),
            ("10mx", "invalid suffix: 'mx'"),
            ("10kxb", "invalid suffix: 'kxb'"),
            ("10bb", "invalid suffix: 'bb'"),
            ("10kbytes", "invalid suffix: 'kbytes'"),
            (
                "1.2.3",
                "strconv.ParseFloat: parsing \"1.2.3\": invalid syntax",
            ),
            ("k10", "strconv.ParseFloat: parsing \"k10\": invalid syntax"),
            (" 5", "strconv.ParseFloat: parsing \" 5\": invalid syntax"),
            (
                "1e999",
                "strconv.ParseFloat: parsing \"1e999\": value out of range",
            ),
        ];
        for (s, want) in bad {
            assert_eq!(from_human_size(s), Err(want.to_string()), "{s}");
        }
    }

    #[test]
    fn parses_dockerd_options() {
        assert_eq!(parse(&[]).unwrap(), LogOpts::default());
        let o = parse(&[
            ("max-size", "10m"),
            ("max-file", "3"),
            ("compress", "false"),
        ])
        .unwrap();
        assert_eq!(o.max_size, Some(10_000_000));
        assert_eq!(o.max_file, 3);
        assert!(!o.compress);
        let o = parse(&[("tag", "{{.Name}}"), ("labels", "a,b")]).unwrap();
        assert_eq!(
            o.attr_opts.get("tag").map(String::as_str),
            Some("{{.Name}}")
        );
        assert_eq!(o.attr_opts.len(), 2);
    }

    #[test]
    fn errors_read_like_dockerd() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (
                &[("max-sise", "1m")],
                "unknown log opt 'max-sise' for json-file log driver",
            ),
            (
                &[("zz", "1"), ("aa", "1")],
                "unknown log opt 'aa' for json-file log driver",
            ),
            (&[("max-size", "0")], "max-size must be a positive number"),
            (&[("max-size", "0.5")], "max-size must be a positive number"),
            (&[("max-size", "ten")], "invalid size: 'ten'"),
            (&[("max-file", "0")], "max-file cannot be less than 1"),
            (&[("max-file", "-2")], "max-file cannot be less than 1"),
            (
                &[("max-file", "two")],
                "strconv.Atoi: parsing \"two\": invalid syntax",
            ),
            (
                &[("max-file", "")],
                "strconv.Atoi: parsing \"\": invalid syntax",
            ),
            (
                &[("max-file", "99999999999999999999")],
                "strconv.Atoi: parsing \"99999999999999999999\": value out of range",
            ),
            (
                &[("compress", "yes")],
                "strconv.ParseBool: parsing \"yes\": invalid syntax",
            ),
            (
                &[("compress", "true"), ("max-size", "1m")],
                "compress cannot be true when max-file is less than 2 or max-size is not set",
            ),
            (
                &[("compress", "1"), ("max-file", "3")],
                "compress cannot be true when max-file is less than 2 or max-size is not set",
            ),
        ];
        for (pairs, want) in cases {
            assert_eq!(parse(pairs).unwrap_err(), *want, "{pairs:?}");
        }
        // Valid for dockerd, refused here.
        let e = LogOpts::parse([("compress", "true"), ("max-size", "1m"), ("max-file", "2")])
            .unwrap_err();
        assert!(matches!(e, LogError::CompressUnsupported));
        // Plus signs and leading zeros, as Atoi allows.
        assert_eq!(parse(&[("max-file", "+05")]).unwrap().max_file, 5);
    }
}
