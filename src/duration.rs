//! Go's `time.ParseDuration`, which dockerd applies wherever it takes a
//! duration as text (`--since 10m`, `HEALTHCHECK --interval=30s`).

use thiserror::Error;

/// Go's error values, in Go's words.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum DurationError {
    #[error("time: invalid duration {}", go_quote(.0))]
    Invalid(String),
    #[error("time: missing unit in duration {}", go_quote(.0))]
    MissingUnit(String),
    #[error("time: unknown unit {} in duration {}", go_quote(.unit), go_quote(.input))]
    UnknownUnit { unit: String, input: String },
}

/// Parses a duration like `300ms`, `-1.5h` or `1h2m3.5s` into nanoseconds:
/// an optional sign, then one or more decimal numbers each with a unit
/// (`ns`, `us`/`µs`/`μs`, `ms`, `s`, `m`, `h`); a bare `0` needs none.
pub fn parse_go_duration(input: &str) -> Result<i64, DurationError> {
    let invalid = || DurationError::Invalid(input.to_string());
    let (neg, mut s) = match input.as_bytes().first() {
        Some(b'-') => (true, &input[1..]),
        Some(b'+') => (false, &input[1..]),
        _ => (false, input),
    };
    if s == "0" {
        return Ok(0);
    }
    if s.is_empty() {
        return Err(invalid());
    }
    // Go sums the magnitude as uint64 and allows up to 1<<63 (for i64::MIN).
    const LIMIT: u64 = 1 << 63;
    let mut total: u64 = 0;
    while !s.is_empty() {
        let (int, rest) = split_digits(s);
        let v: u64 = if int.is_empty() {
            0
        } else {
            int.parse().map_err(|_| invalid())?
        };
        if v > LIMIT {
            return Err(invalid());
        }
        s = rest;
        let mut frac = "";
        if let Some(rest) = s.strip_prefix('.') {
            (frac, s) = split_digits(rest);
        }
        if int.is_empty() && frac.is_empty() {
            return Err(invalid());
        }
        let unit_len = s
            .find(|c: char| c == '.' || c.is_ascii_digit())
            .unwrap_or(s.len());
        if unit_len == 0 {
            return Err(DurationError::MissingUnit(input.to_string()));
        }
        let (unit, rest) = s.split_at(unit_len);
        s = rest;
        let scale: u64 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => {
                return Err(DurationError::UnknownUnit {
                    unit: unit.to_string(),
                    input: input.to_string(),
                })
            }
        };
        if v > LIMIT / scale {
            return Err(invalid());
        }
        let mut v = v * scale;
        let (f, f_scale) = leading_fraction(frac);
        if f > 0 {
            // Through f64 as Go does: exact to the nanosecond for fractions
            // of an hour.
            v += (f as f64 * (scale as f64 / f_scale)) as u64;
            if v > LIMIT {
                return Err(invalid());
            }
        }
        total = total
            .checked_add(v)
            .filter(|t| *t <= LIMIT)
            .ok_or_else(invalid)?;
    }
    if neg {
        Ok((total as i64).wrapping_neg())
    } else {
        i64::try_from(total).map_err(|_| invalid())
    }
}

fn split_digits(s: &str) -> (&str, &str) {
    s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()))
}

/// The digits after a decimal point as Go keeps them: as many as fit in an
/// int64, with the power of ten they were scaled by.
fn leading_fraction(digits: &str) -> (u64, f64) {
    let mut x: u64 = 0;
    let mut scale = 1.0;
    for d in digits.bytes() {
        let Some(y) = x
            .checked_mul(10)
            .and_then(|y| y.checked_add(u64::from(d - b'0')))
        else {
            break;
        };
        if x > (i64::MAX as u64) / 10 || y > 1 << 63 {
            break;
        }
        x = y;
        scale *= 10.0;
    }
    (x, scale)
}

/// Go's `time.quote`: double quotes, `"` and `\` escaped, bytes outside
/// printable ASCII as `\xNN`.
fn go_quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        if c.is_ascii() && c >= ' ' {
            if c == '"' || c == '\\' {
                out.push('\\');
            }
            out.push(c);
        } else {
            let mut buf = [0; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("\\x{b:02x}"));
            }
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_like_go() {
        let ok = |s: &str| parse_go_duration(s).unwrap();
        assert_eq!(ok("0"), 0);
        assert_eq!(ok("-0"), 0);
        assert_eq!(ok("0s"), 0);
        assert_eq!(ok("300ms"), 300_000_000);
        assert_eq!(ok("1h30m"), 5_400_000_000_000);
        assert_eq!(ok("1h2m3.5s"), 3_723_500_000_000);
        assert_eq!(ok("-1.5h"), -5_400_000_000_000);
        assert_eq!(ok("+45s"), 45_000_000_000);
        assert_eq!(ok("1.5s"), 1_500_000_000);
        assert_eq!(ok(".5s"), 500_000_000);
        assert_eq!(ok("1.s"), 1_000_000_000);
        assert_eq!(ok("10ns"), 10);
        assert_eq!(ok("1us"), 1_000);
        assert_eq!(ok("1µs"), 1_000);
        assert_eq!(ok("1μs"), 1_000);
        assert_eq!(ok("1h1h"), 7_200_000_000_000);
        assert_eq!(ok("0.3333333333333333333h"), 1_200_000_000_000);
        assert_eq!(ok("9223372036854775807ns"), i64::MAX);
        assert_eq!(ok("-9223372036854775808ns"), i64::MIN);
        assert_eq!(ok("2562047h"), 2_562_047 * 3_600_000_000_000);
    }

    #[test]
    fn errors_in_gos_words() {
        let err = |s: &str| parse_go_duration(s).unwrap_err().to_string();
        assert_eq!(err(""), "time: invalid duration \"\"");
        assert_eq!(err("-"), "time: invalid duration \"-\"");
        assert_eq!(err(".s"), "time: invalid duration \".s\"");
        assert_eq!(err("1.5.5s"), "time: missing unit in duration \"1.5.5s\"");
        assert_eq!(err("10"), "time: missing unit in duration \"10\"");
        assert_eq!(err("3000000h"), "time: invalid duration \"3000000h\"");
        assert_eq!(
            err("9223372036854775808ns"),
            "time: invalid duration \"9223372036854775808ns\""
        );
        assert_eq!(err("1d"), "time: unknown unit \"d\" in duration \"1d\"");
        assert_eq!(err("1S"), "time: unknown unit \"S\" in duration \"1S\"");
        assert_eq!(
            err("1é"),
            "time: unknown unit \"\\xc3\\xa9\" in duration \"1\\xc3\\xa9\""
        );
        assert_eq!(err("s"), "time: invalid duration \"s\"");
    }
}
