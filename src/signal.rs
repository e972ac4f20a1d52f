//! Signal names and numbers as dockerd reads them (moby's `signal.ParseSignal`
//! over its Linux `SignalMap`), for `docker kill -s`, `docker stop -s`,
//! `--stop-signal` and the `STOPSIGNAL` change.

use thiserror::Error;

use crate::error::EngineError;

/// dockerd's wording for a signal it cannot parse, or cannot send.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum SignalError {
    #[error("Invalid signal: {0}")]
    Invalid(String),
    #[error("the linux daemon does not support signal {0}")]
    Unsupported(i32),
}

impl From<SignalError> for EngineError {
    fn from(e: SignalError) -> Self {
        EngineError::InvalidParameter(e.to_string())
    }
}

/// The first and last real-time signals as Go (and glibc) number them.
const RTMIN: i32 = 34;
const RTMAX: i32 = 64;

/// The names of dockerd's Linux signal map, without `SIG`.
const NAMES: &[(&str, i32)] = &[
    ("ABRT", libc::SIGABRT),
    ("ALRM", libc::SIGALRM),
    ("BUS", libc::SIGBUS),
    ("CHLD", libc::SIGCHLD),
    ("CLD", libc::SIGCHLD),
    ("CONT", libc::SIGCONT),
    ("FPE", libc::SIGFPE),
    ("HUP", libc::SIGHUP),
    ("ILL", libc::SIGILL),
    ("INT", libc::SIGINT),
    ("IO", libc::SIGIO),
    ("IOT", libc::SIGIOT),
    ("KILL", libc::SIGKILL),
    ("PIPE", libc::SIGPIPE),
    ("POLL", libc::SIGPOLL),
    ("PROF", libc::SIGPROF),
    ("PWR", libc::SIGPWR),
    ("QUIT", libc::SIGQUIT),
    ("SEGV", libc::SIGSEGV),
    ("STKFLT", libc::SIGSTKFLT),
    ("STOP", libc::SIGSTOP),
    ("SYS", libc::SIGSYS),
    ("TERM", libc::SIGTERM),
    ("TRAP", libc::SIGTRAP),
    ("TSTP", libc::SIGTSTP),
    ("TTIN", libc::SIGTTIN),
    ("TTOU", libc::SIGTTOU),
    ("URG", libc::SIGURG),
    ("USR1", libc::SIGUSR1),
    ("USR2", libc::SIGUSR2),
    ("VTALRM", libc::SIGVTALRM),
    ("WINCH", libc::SIGWINCH),
    ("XCPU", libc::SIGXCPU),
    ("XFSZ", libc::SIGXFSZ),
    ("RTMIN", RTMIN),
    ("RTMAX", RTMAX),
];

/// A signal by number (any but 0), or by name with or without `SIG` in any
/// case, including `RTMIN+1`..`RTMIN+15` and `RTMAX-14`..`RTMAX-1`.
/// Like dockerd, a number is not checked against the platform here: see
/// [`parse_supported`].
pub fn parse(s: &str) -> Result<i32, SignalError> {
    let invalid = || SignalError::Invalid(s.to_string());
    if let Ok(n) = s.parse::<i32>() {
        return if n == 0 { Err(invalid()) } else { Ok(n) };
    }
    let upper = s.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    if let Some(&(_, n)) = NAMES.iter().find(|(k, _)| *k == name) {
        return Ok(n);
    }
    // The map spells offsets exactly: `RTMIN+01` is not in it.
    let offset = |rest: &str, max: i32| {
        rest.parse::<i32>()
            .ok()
            .filter(|n| (1..=max).contains(n) && n.to_string() == rest)
    };
    if let Some(n) = name.strip_prefix("RTMIN+").and_then(|r| offset(r, 15)) {
        return Ok(RTMIN + n);
    }
    if let Some(n) = name.strip_prefix("RTMAX-").and_then(|r| offset(r, 14)) {
        return Ok(RTMAX - n);
    }
    Err(invalid())
}

/// [`parse`], then refuses numbers the Linux signal map does not hold
/// (what dockerd checks before it sends one).
pub fn parse_supported(s: &str) -> Result<i32, SignalError> {
    let n = parse(s)?;
    if supported(n) {
        Ok(n)
    } else {
        Err(SignalError::Unsupported(n))
    }
}

/// Whether `n` is a signal of dockerd's Linux map: the standard 1..=31 and
/// the real-time ones glibc leaves to programs.
pub fn supported(n: i32) -> bool {
    (1..=31).contains(&n) || (RTMIN..=RTMAX).contains(&n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_names() {
        assert_eq!(parse("9"), Ok(9));
        assert_eq!(parse("+15"), Ok(15));
        assert_eq!(parse("SIGTERM"), Ok(15));
        assert_eq!(parse("term"), Ok(15));
        assert_eq!(parse("SigHup"), Ok(1));
        assert_eq!(parse("hup"), Ok(1));
        assert_eq!(parse("SIGQUIT"), Ok(libc::SIGQUIT));
        assert_eq!(parse("cld"), Ok(libc::SIGCHLD));
        assert_eq!(parse("RTMIN"), Ok(34));
        assert_eq!(parse("SIGRTMIN+3"), Ok(37));
        assert_eq!(parse("rtmin+15"), Ok(49));
        assert_eq!(parse("RTMAX-14"), Ok(50));
        assert_eq!(parse("SIGRTMAX"), Ok(64));
        // dockerd parses any non-zero number; sending checks the platform.
        assert_eq!(parse("100"), Ok(100));
        assert_eq!(parse("-5"), Ok(-5));
    }

    #[test]
    fn refusals_in_dockerds_words() {
        for bad in [
            "0", "NOPE", "SIGNOPE", "", "SIG", "RTMIN+0", "RTMIN+16", "RTMIN+01", "RTMAX-15",
            "RTMAX+1", "9x",
        ] {
            assert_eq!(
                parse(bad),
                Err(SignalError::Invalid(bad.to_string())),
                "{bad}"
            );
        }
        assert_eq!(
            parse("NOPE").unwrap_err().to_string(),
            "Invalid signal: NOPE"
        );
        assert_eq!(parse_supported("KILL"), Ok(9));
        assert_eq!(parse_supported("64"), Ok(64));
        assert_eq!(parse_supported("RTMAX-1"), Ok(63));
        for n in [32, 33, 65, 100, -5] {
            assert_eq!(
                parse_supported(&n.to_string()),
                Err(SignalError::Unsupported(n))
            );
        }
        assert_eq!(
            parse_supported("100").unwrap_err().to_string(),
            "the linux daemon does not support signal 100"
        );
        assert!(matches!(
            EngineError::from(parse("0").unwrap_err()),
            EngineError::InvalidParameter(m) if m == "Invalid signal: 0"
        ));
    }
}
