//! One json-file line, both ways, byte for byte as dockerd writes it.
//!
//! dockerd does not use Go's `encoding/json` for the `log` string but a
//! hand-written encoder (`jsonlog.ffjsonWriteJSONBytesAsString`): `\n`,
//! `\r`, `\"` and `\\` get short escapes, every other byte below 0x20 and
//! `<`, `>`, `&` become `\u00XX` (so a tab is `\u0009`), each byte of
//! invalid UTF-8 becomes `\ufffd`, and U+2028/U+2029 are escaped. The
//! `attrs` object is Go's `json.Marshal` of a map, which escapes like that
//! plus `\t`, `\b` and `\f` short forms. `time` is `time.RFC3339Nano`.
//!
//! Reading has a fast path for exactly the shape we write and falls back
//! to serde_json for anything else (other key orders, `attrs`, whitespace).

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::Deserialize;

use crate::logs::{LogEntry, Stream, UnixNanos};

const HEX: &[u8; 16] = b"0123456789abcdef";

/// ASCII bytes that need an escape in a JSON string as Go writes it.
static ESCAPE: [bool; 128] = {
    let mut t = [false; 128];
    let mut i = 0;
    while i < 128 {
        let b = i as u8;
        t[i] = b < 0x20 || b == b'\\' || b == b'"' || b == b'<' || b == b'>' || b == b'&';
        i += 1;
    }
    t
};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Flavor {
    /// dockerd's `log` encoder: only `\n` and `\r` get short escapes.
    Dockerd,
    /// Go's `encoding/json` (1.22+): also `\t`, `\b`, `\f`.
    EncodingJson,
}

/// Appends `s` as the JSON string dockerd writes for the `log` field.
pub(crate) fn push_log_string(out: &mut Vec<u8>, s: &[u8]) {
    push_string(out, s, Flavor::Dockerd);
}

/// Appends `s` as Go's `encoding/json` would (used for `attrs`).
pub(crate) fn push_json_string(out: &mut Vec<u8>, s: &[u8]) {
    push_string(out, s, Flavor::EncodingJson);
}

fn push_string(out: &mut Vec<u8>, s: &[u8], flavor: Flavor) {
    out.push(b'"');
    let mut start = 0;
    let mut i = 0;
    while i < s.len() {
        let b = s[i];
        if b < 0x80 {
            if !ESCAPE[b as usize] {
                i += 1;
                continue;
            }
            out.extend_from_slice(&s[start..i]);
            match b {
                b'\\' | b'"' => out.extend_from_slice(&[b'\\', b]),
                b'\n' => out.extend_from_slice(b"\\n"),
                b'\r' => out.extend_from_slice(b"\\r"),
                b'\t' if flavor == Flavor::EncodingJson => out.extend_from_slice(b"\\t"),
                0x08 if flavor == Flavor::EncodingJson => out.extend_from_slice(b"\\b"),
                0x0c if flavor == Flavor::EncodingJson => out.extend_from_slice(b"\\f"),
                _ => out.extend_from_slice(&[
                    b'\\',
                    b'u',
                    b'0',
                    b'0',
                    HEX[(b >> 4) as usize],
                    HEX[(b & 0xf) as usize],
                ]),
            }
            i += 1;
            start = i;
            continue;
        }
        match utf8_len(&s[i..]) {
            // U+2028 and U+2029 (E2 80 A8/A9) break JavaScript parsers.
            Some(3) if s[i] == 0xE2 && s[i + 1] == 0x80 && matches!(s[i + 2], 0xA8 | 0xA9) => {
                out.extend_from_slice(&s[start..i]);
                out.extend_from_slice(b"\\u202");
                out.push(HEX[(s[i + 2] & 0xf) as usize]);
                i += 3;
                start = i;
            }
            Some(n) => i += n,
            None => {
                // Like Go's utf8.DecodeRune: one replacement per bad byte.
                out.extend_from_slice(&s[start..i]);
                out.extend_from_slice(b"\\ufffd");
                i += 1;
                start = i;
            }
        }
    }
    out.extend_from_slice(&s[start..]);
    out.push(b'"');
}

/// Length of the well-formed UTF-8 sequence at the start of `s` (whose
/// first byte is >= 0x80), or `None`: the same table as Go's decoder, so
/// surrogates, overlongs and truncated sequences are all invalid.
fn utf8_len(s: &[u8]) -> Option<usize> {
    let (n, lo, hi) = match s[0] {
        0xC2..=0xDF => (2, 0x80, 0xBF),
        0xE0 => (3, 0xA0, 0xBF),
        0xE1..=0xEC | 0xEE..=0xEF => (3, 0x80, 0xBF),
        0xED => (3, 0x80, 0x9F),
        0xF0 => (4, 0x90, 0xBF),
        0xF1..=0xF3 => (4, 0x80, 0xBF),
        0xF4 => (4, 0x80, 0x8F),
        _ => return None,
    };
    if s.len() < n || !(lo..=hi).contains(&s[1]) {
        return None;
    }
    if s[2..n].iter().all(|c| (0x80..=0xBF).contains(c)) {
        Some(n)
    } else {
        None
    }
}

/// Renders a pre-sorted attrs map as Go's `json.Marshal(map[string]string)`.
pub(crate) fn render_attrs(attrs: &BTreeMap<String, String>) -> Vec<u8> {
    let mut out = Vec::new();
    out.push(b'{');
    for (i, (k, v)) in attrs.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        push_json_string(&mut out, k.as_bytes());
        out.push(b':');
        push_json_string(&mut out, v.as_bytes());
    }
    out.push(b'}');
    out
}

/// Appends one whole entry line, newline included, as
/// `jsonlog.JSONLogs.MarshalJSONBuf` lays it out.
pub(crate) fn push_entry(
    out: &mut Vec<u8>,
    log: &[u8],
    stream: Stream,
    time: UnixNanos,
    attrs: Option<&[u8]>,
) {
    out.push(b'{');
    if !log.is_empty() {
        out.extend_from_slice(b"\"log\":");
        push_log_string(out, log);
        out.push(b',');
    }
    out.extend_from_slice(b"\"stream\":\"");
    out.extend_from_slice(stream.as_str().as_bytes());
    out.extend_from_slice(b"\",");
    if let Some(attrs) = attrs {
        out.extend_from_slice(b"\"attrs\":");
        out.extend_from_slice(attrs);
        out.push(b',');
    }
    out.extend_from_slice(b"\"time\":\"");
    push_time(out, time, false);
    out.extend_from_slice(b"\"}\n");
}

// ---- byte search ----

const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;

/// Flags (high bit of each byte) where `word` has byte `b`. The lowest
/// flag is exact; flags above it may be false (borrow), which is fine for
/// finding the first match.
#[inline]
fn flags(word: u64, b: u8) -> u64 {
    let x = word ^ (LO * u64::from(b));
    x.wrapping_sub(LO) & !x & HI
}

/// First index of `a` or `b` in `hay`, eight bytes at a time: log lines
/// are mostly long runs without either, and this is the reader's hot loop.
#[inline]
pub(crate) fn find2(hay: &[u8], a: u8, b: u8) -> Option<usize> {
    let mut chunks = hay.chunks_exact(8);
    for (k, chunk) in chunks.by_ref().enumerate() {
        let mut w = [0u8; 8];
        w.copy_from_slice(chunk);
        let word = u64::from_le_bytes(w);
        let m = flags(word, a) | flags(word, b);
        if m != 0 {
            return Some(k * 8 + (m.trailing_zeros() / 8) as usize);
        }
    }
    let base = hay.len() - chunks.remainder().len();
    chunks
        .remainder()
        .iter()
        .position(|&c| c == a || c == b)
        .map(|p| base + p)
}

/// First index of `b` in `hay`.
#[inline]
pub(crate) fn find(hay: &[u8], b: u8) -> Option<usize> {
    find2(hay, b, b)
}

// ---- time ----

/// Days since 1970-01-01 to a proleptic Gregorian (year, month, day).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// The inverse of [`civil_from_days`].
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = i64::from((month + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// A formatted time: at most 30 bytes, built on the stack.
pub(crate) struct TimeText {
    buf: [u8; 30],
    len: usize,
}

impl TimeText {
    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    fn push(&mut self, b: u8) {
        self.buf[self.len] = b;
        self.len += 1;
    }

    fn digits(&mut self, v: u64, width: usize) {
        let mut v = v;
        for slot in self.buf[self.len..self.len + width].iter_mut().rev() {
            *slot = b'0' + (v % 10) as u8;
            v /= 10;
        }
        self.len += width;
    }
}

/// `nanos` as RFC 3339 in UTC with a `Z`: nine fractional digits when
/// `fixed` (`RFC3339NanoFixed`), else Go's `RFC3339Nano` (trailing zeros
/// trimmed, no fraction at all for whole seconds).
pub(crate) fn format_time(nanos: UnixNanos, fixed: bool) -> TimeText {
    let mut t = TimeText {
        buf: [0; 30],
        len: 0,
    };
    let secs = nanos.div_euclid(1_000_000_000);
    let frac = nanos.rem_euclid(1_000_000_000) as u64;
    let (year, month, day) = civil_from_days(secs.div_euclid(86_400));
    let sod = secs.rem_euclid(86_400) as u64;
    t.digits(year as u64, 4); // i64 nanos: always 1677..=2262
    t.push(b'-');
    t.digits(u64::from(month), 2);
    t.push(b'-');
    t.digits(u64::from(day), 2);
    t.push(b'T');
    t.digits(sod / 3600, 2);
    t.push(b':');
    t.digits(sod / 60 % 60, 2);
    t.push(b':');
    t.digits(sod % 60, 2);
    if fixed {
        t.push(b'.');
        t.digits(frac, 9);
    } else if frac != 0 {
        let mut width = 9;
        let mut f = frac;
        while f.is_multiple_of(10) {
            f /= 10;
            width -= 1;
        }
        t.push(b'.');
        t.digits(f, width);
    }
    t.push(b'Z');
    t
}

/// Appends [`format_time`] to `out`.
pub(crate) fn push_time(out: &mut Vec<u8>, nanos: UnixNanos, fixed: bool) {
    out.extend_from_slice(format_time(nanos, fixed).as_bytes());
}

fn digits(s: &[u8]) -> Option<u32> {
    let mut v: u32 = 0;
    for &b in s {
        if !b.is_ascii_digit() {
            return None;
        }
        v = v * 10 + u32::from(b - b'0');
    }
    Some(v)
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Parses an RFC 3339 time to Unix nanoseconds. The UTC `Z` form we write
/// is parsed by hand; offsets and other forms go through chrono.
pub(crate) fn parse_time(s: &[u8]) -> Option<UnixNanos> {
    parse_time_utc(s).or_else(|| {
        let s = std::str::from_utf8(s).ok()?;
        chrono::DateTime::parse_from_rfc3339(s)
            .ok()?
            .timestamp_nanos_opt()
    })
}

fn parse_time_utc(s: &[u8]) -> Option<UnixNanos> {
    if s.len() < 20
        || s[4] != b'-'
        || s[7] != b'-'
        || s[10] != b'T'
        || s[13] != b':'
        || s[16] != b':'
        || s.last() != Some(&b'Z')
    {
        return None;
    }
    let year = i64::from(digits(&s[0..4])?);
    let month = digits(&s[5..7])?;
    let day = digits(&s[8..10])?;
    let hour = i64::from(digits(&s[11..13])?);
    let min = i64::from(digits(&s[14..16])?);
    let sec = i64::from(digits(&s[17..19])?);
    if !(1..=12).contains(&month)
        || day == 0
        || day > days_in_month(year, month)
        || hour > 23
        || min > 59
        || sec > 59
    {
        return None;
    }
    let rest = &s[19..s.len() - 1];
    let frac = match rest {
        [] => 0,
        [b'.', f @ ..] if (1..=9).contains(&f.len()) => {
            i64::from(digits(f)?) * 10i64.pow(9 - f.len() as u32)
        }
        _ => return None,
    };
    let secs = days_from_civil(year, month, day) * 86_400 + hour * 3600 + min * 60 + sec;
    secs.checked_mul(1_000_000_000)?.checked_add(frac)
}

// ---- decoding ----

/// Decodes one line (with or without its `\n`). `None` for a line that is
/// not a json-file entry or names a stream other than stdout/stderr
/// (dockerd's logs endpoint drops those too).
pub(crate) fn decode_line(line: &[u8]) -> Option<LogEntry> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    decode_fast(line).or_else(|| decode_slow(line))
}

/// Exactly `{"log":"..","stream":"stdout|stderr","time":"..."}`.
fn decode_fast(l: &[u8]) -> Option<LogEntry> {
    let rest = l.strip_prefix(b"{\"log\":\"")?;
    let (log, rest) = parse_string_body(rest)?;
    let rest = rest.strip_prefix(b",\"stream\":\"")?;
    let (stream, rest) = if let Some(r) = rest.strip_prefix(b"stdout\"") {
        (Stream::Stdout, r)
    } else {
        (Stream::Stderr, rest.strip_prefix(b"stderr\"")?)
    };
    let rest = rest.strip_prefix(b",\"time\":\"")?;
    let end = find(rest, b'"')?;
    if &rest[end..] != b"\"}" {
        return None;
    }
    Some(LogEntry {
        stream,
        time_nanos: parse_time(&rest[..end])?,
        line: log,
        attrs: Vec::new(),
    })
}

/// Parses the rest of a JSON string after its opening quote; returns the
/// unescaped bytes and what follows the closing quote. Lone surrogates
/// become U+FFFD, as in Go.
fn parse_string_body(s: &[u8]) -> Option<(Vec<u8>, &[u8])> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    loop {
        let run = find2(&s[i..], b'"', b'\\')?;
        out.extend_from_slice(&s[i..i + run]);
        i += run;
        if s[i] == b'"' {
            return Some((out, &s[i + 1..]));
        }
        let esc = *s.get(i + 1)?;
        i += 2;
        match esc {
            b'"' | b'\\' | b'/' => out.push(esc),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'b' => out.push(0x08),
            b'f' => out.push(0x0c),
            b'u' => {
                let hi = hex4(s.get(i..i + 4)?)?;
                i += 4;
                let c = if (0xD800..0xDC00).contains(&hi) {
                    match s.get(i..i + 6) {
                        Some([b'\\', b'u', h @ ..]) => match hex4(h) {
                            Some(lo) if (0xDC00..0xE000).contains(&lo) => {
                                i += 6;
                                char::from_u32(0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00))
                            }
                            _ => None,
                        },
                        _ => None,
                    }
                } else {
                    char::from_u32(hi)
                };
                let c = c.unwrap_or(char::REPLACEMENT_CHARACTER);
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
            _ => return None,
        }
    }
}

fn hex4(h: &[u8]) -> Option<u32> {
    if h.len() != 4 {
        return None;
    }
    let mut v = 0;
    for &b in h {
        v = v * 16 + (b as char).to_digit(16)?;
    }
    Some(v)
}

#[derive(Deserialize)]
struct RawLine<'a> {
    #[serde(default)]
    log: String,
    #[serde(default, borrow)]
    stream: Cow<'a, str>,
    #[serde(borrow)]
    time: Cow<'a, str>,
    #[serde(default)]
    attrs: Option<BTreeMap<String, String>>,
}

fn decode_slow(l: &[u8]) -> Option<LogEntry> {
    let raw: RawLine = serde_json::from_slice(l).ok()?;
    Some(LogEntry {
        stream: Stream::from_name(&raw.stream)?,
        time_nanos: parse_time(raw.time.as_bytes())?,
        line: raw.log.into_bytes(),
        attrs: raw.attrs.unwrap_or_default().into_iter().collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, SecondsFormat};

    fn log_string(s: &[u8]) -> String {
        let mut out = Vec::new();
        push_log_string(&mut out, s);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn escapes_like_dockerd() {
        assert_eq!(log_string(b"plain text"), r#""plain text""#);
        assert_eq!(log_string(b"a \"q\" \\ b"), r#""a \"q\" \\ b""#);
        assert_eq!(
            log_string(b"<a href=\"x\">&amp;</a>"),
            r#""\u003ca href=\"x\"\u003e\u0026amp;\u003c/a\u003e""#
        );
        assert_eq!(log_string(b"line\r\n"), r#""line\r\n""#);
        // Tab, backspace, form feed: \u00XX here (dockerd's encoder has no
        // short forms for them), unlike encoding/json.
        assert_eq!(log_string(b"\t\x08\x0c"), r#""\u0009\u0008\u000c""#);
        assert_eq!(
            log_string(b"\x00\x01\x1b[0m\x1f\x7f"),
            "\"\\u0000\\u0001\\u001b[0m\\u001f\x7f\""
        );
        // Valid multi-byte UTF-8 stays raw; U+2028/2029 are escaped.
        assert_eq!(log_string("héllo ✓ 😀".as_bytes()), "\"héllo ✓ 😀\"");
        assert_eq!(
            log_string("a\u{2028}b\u{2029}c".as_bytes()),
            r#""a\u2028b\u2029c""#
        );
        // A well-formed U+FFFD is not an error: kept raw.
        assert_eq!(log_string("\u{fffd}".as_bytes()), "\"\u{fffd}\"");
    }

    #[test]
    fn invalid_utf8_one_replacement_per_byte() {
        assert_eq!(log_string(b"a\xffb"), r#""a\ufffdb""#);
        // Truncated 3-byte sequence: two bytes, two replacements (Go's
        // DecodeRune returns size 1 for each).
        assert_eq!(log_string(b"\xe2\x82"), r#""\ufffd\ufffd""#);
        assert_eq!(log_string(b"\xe2\x82x"), r#""\ufffd\ufffdx""#);
        // Encoded surrogate half and overlong '/'.
        assert_eq!(log_string(b"\xed\xa0\x80"), r#""\ufffd\ufffd\ufffd""#);
        assert_eq!(log_string(b"\xc0\xaf"), r#""\ufffd\ufffd""#);
        // Above U+10FFFF.
        assert_eq!(
            log_string(b"\xf4\x90\x80\x80"),
            r#""\ufffd\ufffd\ufffd\ufffd""#
        );
        assert_eq!(log_string(b"\xf4\x8f\xbf\xbf"), "\"\u{10ffff}\"");
    }

    #[test]
    fn attrs_use_encoding_json_escapes() {
        let mut m = BTreeMap::new();
        m.insert("z".to_string(), "1".to_string());
        m.insert("a<".to_string(), "t\tb\x08f\x0c\n".to_string());
        assert_eq!(
            String::from_utf8(render_attrs(&m)).unwrap(),
            r#"{"a\u003c":"t\tb\bf\f\n","z":"1"}"#
        );
    }

    #[test]
    fn time_formats_match_chrono_and_go() {
        let cases = [
            0i64,
            1,
            999_999_999,
            1_000_000_000,
            1_795_819_470_932_718_959,
            1_795_819_470_932_718_950,
            1_795_819_470_000_000_000,
            951_782_400_123_000_000, // 2000-02-29
            -1,
            -86_400_000_000_001,
            4_102_444_799_999_999_999,
            i64::MIN,
            i64::MAX,
        ];
        for n in cases {
            let dt = DateTime::from_timestamp_nanos(n);
            let mut fixed = Vec::new();
            push_time(&mut fixed, n, true);
            assert_eq!(
                String::from_utf8(fixed).unwrap(),
                dt.to_rfc3339_opts(SecondsFormat::Nanos, true),
                "{n}"
            );
            let mut trimmed = Vec::new();
            push_time(&mut trimmed, n, false);
            let trimmed = String::from_utf8(trimmed).unwrap();
            // Go's RFC3339Nano: the nine digits with trailing zeros cut.
            let nine = dt.to_rfc3339_opts(SecondsFormat::Nanos, true);
            let go = nine
                .trim_end_matches('Z')
                .trim_end_matches('0')
                .trim_end_matches('.')
                .to_string()
                + "Z";
            assert_eq!(trimmed, go, "{n}");
            assert_eq!(parse_time(trimmed.as_bytes()), Some(n), "{trimmed}");
        }
        let mut out = Vec::new();
        push_time(&mut out, 1_795_819_470_932_718_950, false);
        assert_eq!(out, b"2026-11-27T22:44:30.93271895Z");
        out.clear();
        push_time(&mut out, 1_795_819_470_000_000_000, false);
        assert_eq!(out, b"2026-11-27T22:44:30Z");
    }

    #[test]
    fn parses_other_rfc3339_forms() {
        assert_eq!(parse_time(b"1970-01-01T00:00:01.5Z"), Some(1_500_000_000));
        assert_eq!(
            parse_time(b"1970-01-01T01:00:01+01:00"),
            Some(1_000_000_000)
        );
        assert_eq!(parse_time(b"2023-02-29T00:00:00Z"), None);
        assert_eq!(parse_time(b"garbage"), None);
        assert_eq!(parse_time(b"2023-01-01T00:00:00.Z"), None);
    }

    #[test]
    fn decode_round_trips_every_byte() {
        let mut all: Vec<u8> = (0u8..=255).collect();
        all.extend_from_slice("\u{2028}😀\n".as_bytes());
        let mut line = Vec::new();
        push_entry(
            &mut line,
            &all,
            Stream::Stderr,
            1_795_819_470_932_718_959,
            None,
        );
        let e = decode_line(&line).unwrap();
        assert_eq!(e.stream, Stream::Stderr);
        assert_eq!(e.time_nanos, 1_795_819_470_932_718_959);
        // 0x80..=0xFF alone are each invalid: one U+FFFD per byte, as Go.
        let mut expect: Vec<u8> = Vec::new();
        for b in 0u8..=255 {
            if b < 0x80 {
                expect.push(b);
            } else {
                expect.extend_from_slice("\u{fffd}".as_bytes());
            }
        }
        expect.extend_from_slice("\u{2028}😀\n".as_bytes());
        assert_eq!(e.line, expect);
    }

    #[test]
    fn byte_search_finds_the_first() {
        let mut hay = vec![b'x'; 40];
        assert_eq!(find(&hay, b'\n'), None);
        for pos in 0..40 {
            let mut h = hay.clone();
            h[pos] = b'\n';
            if pos + 3 < 40 {
                h[pos + 3] = b'"';
            }
            assert_eq!(find(&h, b'\n'), Some(pos));
            assert_eq!(find2(&h, b'"', b'\n'), Some(pos));
            assert_eq!(find2(&h[..pos], b'"', b'\n'), None);
        }
        // Bytes that make the borrow trick produce flags above a match.
        hay[9] = 0x0a;
        hay[10] = 0x0b;
        hay[8] = 0x8a;
        assert_eq!(find(&hay, 0x0b), Some(10));
        assert_eq!(find(&hay, 0x0a), Some(9));
        assert_eq!(find(&[], b'a'), None);
    }

    #[test]
    fn decode_fallback_and_garbage() {
        let e = decode_line(
            br#"{"time":"2026-11-27T22:44:30.5Z","stream":"stdout","log":"x\u00e9\ud83d\ude00\/\n","attrs":{"b":"2","a":"1"}}"#,
        )
        .unwrap();
        assert_eq!(e.line, "xé😀/\n".as_bytes());
        assert_eq!(
            e.attrs,
            vec![("a".into(), "1".into()), ("b".into(), "2".into())]
        );
        // Lone surrogate: U+FFFD (fast path).
        let e =
            decode_line(br#"{"log":"\ud800x","stream":"stdout","time":"2026-11-27T22:44:30Z"}"#)
                .unwrap();
        assert_eq!(e.line, "\u{fffd}x".as_bytes());
        assert!(decode_line(b"{\"log\":\"unterminated").is_none());
        assert!(
            decode_line(br#"{"log":"x","stream":"other","time":"2026-11-27T22:44:30Z"}"#).is_none()
        );
        assert!(decode_line(br#"{"log":"x","stream":"stdout"}"#).is_none());
        assert!(decode_line(b"").is_none());
    }
}
