//! Detach keys (`--detach-keys`, default ctrl-p ctrl-q): a key sequence in
//! an attached client's input that ends the attachment and leaves the
//! container running. The sequence is held back while it may still match
//! and passed on when it turns out not to.

use crate::error::{EngineError, EngineResult};

pub const DEFAULT: &str = "ctrl-p,ctrl-q";

/// Parses `ctrl-p,ctrl-q` / `a,ctrl-[`, as dockerd's term package does.
pub fn parse(spec: &str) -> EngineResult<Vec<u8>> {
    let bad = || EngineError::InvalidParameter(format!("Invalid detach keys ({spec}) provided"));
    let mut out = vec![];
    for key in spec.split(',') {
        let b = key.as_bytes();
        match b {
            [c] => out.push(*c),
            _ => {
                let rest = key.strip_prefix("ctrl-").ok_or_else(bad)?;
                let c = match rest.as_bytes() {
                    [c @ b'a'..=b'z'] => c - b'a' + 1,
                    [c @ b'A'..=b'Z'] => c - b'A' + 1,
                    [b'@'] => 0,
                    [b'['] => 27,
                    [b'\\'] => 28,
                    [b']'] => 29,
                    [b'^'] => 30,
                    [b'_'] => 31,
                    _ => return Err(bad()),
                };
                out.push(c);
            }
        }
    }
    if out.is_empty() {
        return Err(bad());
    }
    Ok(out)
}

/// Watches input for the sequence.
#[derive(Debug)]
pub struct DetachScanner {
    keys: Vec<u8>,
    /// How many bytes of `keys` the input ended with so far.
    matched: usize,
}

/// What to do with a chunk of input.
#[derive(Debug, PartialEq, Eq)]
pub enum Scan {
    /// Pass these bytes on.
    Forward(Vec<u8>),
    /// The sequence was typed: pass these bytes on (those before it), then
    /// detach.
    Detach(Vec<u8>),
}

impl DetachScanner {
    pub fn new(keys: Vec<u8>) -> DetachScanner {
        DetachScanner { keys, matched: 0 }
    }

    pub fn scan(&mut self, input: &[u8]) -> Scan {
        let mut out = Vec::with_capacity(input.len());
        for &b in input {
            if b == self.keys[self.matched] {
                self.matched += 1;
                if self.matched == self.keys.len() {
                    self.matched = 0;
                    return Scan::Detach(out);
                }
                continue;
            }
            // A partial match that fails: its bytes were input after all.
            out.extend_from_slice(&self.keys[..self.matched]);
            self.matched = 0;
            if b == self.keys[0] {
                self.matched = 1;
            } else {
                out.push(b);
            }
        }
        Scan::Forward(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_like_docker() {
        assert_eq!(parse(DEFAULT).unwrap(), vec![16, 17]);
        assert_eq!(parse("a,ctrl-[").unwrap(), vec![b'a', 27]);
        assert!(parse("ctrl-").is_err());
        assert!(parse("ctrl-1").is_err());
        assert!(parse("ab").is_err());
    }

    #[test]
    fn scans_across_chunks() {
        let mut s = DetachScanner::new(vec![16, 17]);
        assert_eq!(s.scan(b"ls\n"), Scan::Forward(b"ls\n".to_vec()));
        assert_eq!(s.scan(&[b'x', 16]), Scan::Forward(b"x".to_vec()));
        assert_eq!(s.scan(&[17, b'y']), Scan::Detach(vec![]));
        // A lone ctrl-p followed by something else goes through.
        let mut s = DetachScanner::new(vec![16, 17]);
        assert_eq!(s.scan(&[16, b'a']), Scan::Forward(vec![16, b'a']));
        assert_eq!(s.scan(&[16, 16, 17]), Scan::Detach(vec![16]));
    }
}
