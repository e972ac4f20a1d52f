//! Docker image references: parsing, normalisation and formatting.
//!
//! This mirrors `github.com/distribution/reference` as dockerd uses it
//! (`ParseNormalizedNamed`, `FamiliarString`, `TagNameOnly`, `WithTag`,
//! `WithDigest`) together with the digest validation of
//! `github.com/opencontainers/go-digest`, so that names are accepted,
//! rejected and printed exactly as Docker does. The grammar is:
//!
//! ```text
//! reference        := name [ ":" tag ] [ "@" digest ]
//! name             := [domain "/"] path-component ["/" path-component]*
//! domain           := host [":" port-number]
//! host             := domain-name | "[" IPv6address "]"
//! domain-name      := domain-component ["." domain-component]*
//! domain-component := /([a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])/
//! port-number      := /[0-9]+/
//! path-component   := alpha-numeric [separator alpha-numeric]*
//! alpha-numeric    := /[a-z0-9]+/
//! separator        := /[_.]|__|[-]+/
//! tag              := /[\w][\w.-]{0,127}/
//! digest           := algorithm ":" /[0-9a-fA-F]{32,}/
//! algorithm        := /[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*/
//! ```
//!
//! Normalisation: a first path element that contains `.` or `:`, equals
//! `localhost`, or contains an uppercase letter is a registry domain;
//! otherwise the domain is `docker.io`. `index.docker.io` becomes `docker.io`,
//! and single-element Docker Hub names get the `library/` prefix. The parser is
//! hand-written; where Go's regular expression could match in more than one
//! way, the comments say which way Go's leftmost-first matching picks.

use std::fmt;
use std::str::FromStr;

/// Registry domain used when a name carries none.
pub const DEFAULT_DOMAIN: &str = "docker.io";
/// Old Docker Hub domain, rewritten to [`DEFAULT_DOMAIN`].
const LEGACY_DEFAULT_DOMAIN: &str = "index.docker.io";
/// Namespace of the official Docker Hub images.
const OFFICIAL_REPO_PREFIX: &str = "library/";
/// Tag implied by `TagNameOnly` when a reference has neither tag nor digest.
pub const DEFAULT_TAG: &str = "latest";
/// Longest allowed name (domain included), in bytes.
pub const NAME_TOTAL_LENGTH_MAX: usize = 255;
/// Longest allowed tag, in bytes.
const TAG_LENGTH_MAX: usize = 128;
/// Name dockerd reserves for "no base image"; it can never be pulled.
const NO_BASE_IMAGE: &str = "scratch";

/// Why a reference was refused. Messages are dockerd's, word for word.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    /// The string does not match the reference grammar.
    #[error("invalid reference format")]
    InvalidFormat,
    /// The repository path (after normalisation) contains uppercase letters.
    #[error("invalid reference format: repository name must be lowercase")]
    NotLowercase,
    /// distribution's `Parse` found uppercase where only lowercase may go,
    /// e.g. an uppercase first element that is taken as a domain but is not
    /// a valid one (`Foo_Bar/x`).
    #[error("repository name must be lowercase")]
    NameContainsUppercase,
    /// Domain plus path is longer than [`NAME_TOTAL_LENGTH_MAX`].
    #[error("repository name must not be more than 255 characters")]
    NameTooLong,
    /// Digest matched the reference grammar but go-digest refused its
    /// encoding (e.g. uppercase hex for sha256), or the algorithm is malformed.
    #[error("invalid checksum digest format")]
    BadDigest,
    /// Known algorithm with the wrong number of hex digits.
    #[error("invalid checksum digest length")]
    BadDigestLength,
    /// Well-formed digest with an algorithm other than sha256/sha384/sha512.
    #[error("unsupported digest algorithm")]
    UnsupportedDigest,
    /// A tag given separately (`?tag=`) does not match the tag grammar;
    /// this is also what a digest passed as a tag to `docker tag` gets.
    #[error("invalid tag format")]
    InvalidTag,
    /// The whole input is 64 lowercase hex characters, i.e. an image ID.
    #[error("invalid repository name ({0}), cannot specify 64-byte hexadecimal strings")]
    HexRepositoryName(String),
    /// `repo` of `POST /images/{name}/tag` or `/commit` carried a digest.
    #[error("cannot import digest reference")]
    DigestReference,
    /// Tagging as repository `sha256` would be ambiguous with digests.
    #[error("refusing to create an ambiguous tag using digest algorithm as name")]
    AmbiguousDigestName,
    /// Pulling `scratch`; dockerd answers this with 403 Forbidden, not 400.
    #[error("'{0}' is a reserved name")]
    ReservedName(String),
}

/// A normalised, named image reference.
///
/// `domain` is the registry (`docker.io` for Docker Hub) and `path` the
/// repository path on it (`library/busybox`). `digest` is `algorithm:hex`.
/// `domain` is empty only in one corner that distribution/reference allows:
/// an explicit first element that looks like a domain but is not a valid one
/// while still being a valid path component (`a_b.com/x`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    pub domain: String,
    pub path: String,
    pub tag: Option<String>,
    pub digest: Option<String>,
}

impl Reference {
    /// `ParseNormalizedNamed`: parse a user-supplied reference, filling in
    /// the default domain and `library/` namespace. No tag is added
    /// (`busybox` -> `docker.io/library/busybox`); see [`Self::with_default_tag`].
    pub fn parse_normalized(s: &str) -> Result<Reference, ReferenceError> {
        // An image ID must never be mistaken for (or stored as) a name.
        if is_identifier(s) {
            return Err(ReferenceError::HexRepositoryName(s.to_string()));
        }
        let (domain, remainder) = split_docker_domain(s);
        // Checked before the grammar so uppercase names get the specific
        // message; the tag (after the first ':') may legally be uppercase.
        let remote = remainder.split(':').next().unwrap_or_default();
        if go_to_lower(remote) != remote {
            return Err(ReferenceError::NotLowercase);
        }
        parse(&format!("{domain}/{remainder}"))
    }

    /// `TagNameOnly`: add the `latest` tag when there is neither tag nor digest.
    pub fn with_default_tag(mut self) -> Reference {
        if self.is_name_only() {
            self.tag = Some(DEFAULT_TAG.to_string());
        }
        self
    }

    /// `WithTag`: set (or replace) the tag, keeping any digest.
    pub fn with_tag(mut self, tag: &str) -> Result<Reference, ReferenceError> {
        if !is_valid_tag(tag) {
            return Err(ReferenceError::InvalidTag);
        }
        self.tag = Some(tag.to_string());
        Ok(self)
    }

    /// `WithDigest(TrimNamed(ref), digest)`: replace tag and digest by `digest`,
    /// which must be a valid, supported digest.
    pub fn with_digest(mut self, digest: &str) -> Result<Reference, ReferenceError> {
        validate_digest(digest)?;
        self.tag = None;
        self.digest = Some(digest.to_string());
        Ok(self)
    }

    /// `TrimNamed`: the bare repository, without tag or digest.
    pub fn name_only(&self) -> Reference {
        Reference {
            domain: self.domain.clone(),
            path: self.path.clone(),
            tag: None,
            digest: None,
        }
    }

    /// `IsNameOnly`: neither tag nor digest. dockerd pulls *all tags* of such
    /// a reference (`docker pull -a`).
    pub fn is_name_only(&self) -> bool {
        self.tag.is_none() && self.digest.is_none()
    }

    /// `Name()`: `docker.io/library/busybox`.
    pub fn repository(&self) -> String {
        if self.domain.is_empty() {
            self.path.clone()
        } else {
            format!("{}/{}", self.domain, self.path)
        }
    }

    /// `FamiliarName`: `busybox`, `user/app`, `127.0.0.1:5000/busybox`.
    pub fn familiar_repository(&self) -> String {
        if self.domain != DEFAULT_DOMAIN {
            return self.repository();
        }
        // Only one level below `library/` is shortened, like upstream.
        match self.path.strip_prefix(OFFICIAL_REPO_PREFIX) {
            Some(rest) if !rest.contains('/') => rest.to_string(),
            _ => self.path.clone(),
        }
    }

    /// `FamiliarString`: familiar name plus `:tag` and/or `@digest`.
    pub fn familiar(&self) -> String {
        self.with_suffixes(self.familiar_repository())
    }

    /// `String()`: `docker.io/library/busybox:latest`, `...@sha256:...`.
    pub fn full(&self) -> String {
        self.with_suffixes(self.repository())
    }

    fn with_suffixes(&self, mut s: String) -> String {
        if let Some(t) = &self.tag {
            s.push(':');
            s.push_str(t);
        }
        if let Some(d) = &self.digest {
            s.push('@');
            s.push_str(d);
        }
        s
    }

    /// Whether the reference lives on Docker Hub.
    pub fn is_docker_hub(&self) -> bool {
        self.domain == DEFAULT_DOMAIN
    }

    /// The registry domain as written (`docker.io` for Docker Hub; callers
    /// map that to the real endpoint). May include a port or IPv6 brackets.
    pub fn registry_host(&self) -> &str {
        &self.domain
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.full())
    }
}

impl FromStr for Reference {
    type Err = ReferenceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Reference::parse_normalized(s)
    }
}

/// dockerd's handling of `fromImage` + `tag` for `POST /images/create`.
///
/// A single trailing `:` on `from_image` is dropped (old `pull -a` clients
/// send `busybox:`). A non-empty `tag` that is a valid digest replaces tag
/// and digest; any other non-empty `tag` replaces the tag and must be a
/// valid tag. With an empty `tag`, the reference is returned as parsed:
/// if it is then name-only, dockerd pulls every tag of the repository;
/// callers that do not support that should apply [`Reference::with_default_tag`].
/// `scratch` yields [`ReferenceError::ReservedName`], which dockerd reports
/// as 403 rather than 400.
pub fn parse_from_image_and_tag(from_image: &str, tag: &str) -> Result<Reference, ReferenceError> {
    let image = from_image.strip_suffix(':').unwrap_or(from_image);
    let mut r = Reference::parse_normalized(image)?;
    if !tag.is_empty() {
        // The "tag" may actually be a digest.
        r = if validate_digest(tag).is_ok() {
            r.with_digest(tag)?
        } else {
            r.with_tag(tag)?
        };
    }
    if r.familiar_repository() == NO_BASE_IMAGE {
        return Err(ReferenceError::ReservedName(NO_BASE_IMAGE.to_string()));
    }
    Ok(r)
}

/// dockerd's `RepoTagReference` for `POST /images/{name}/tag?repo=&tag=`
/// (and `/commit`): the result always has a tag (`latest` by default) and
/// never a digest. A non-empty `tag` replaces any tag inside `repo`; a digest
/// passed as `tag` fails as [`ReferenceError::InvalidTag`]. A 64-hex `repo`
/// fails as [`ReferenceError::HexRepositoryName`].
///
/// An empty `repo` yields [`ReferenceError::InvalidFormat`]; callers for which
/// no repo is fine (commit without a name) must check for that first.
pub fn parse_repo_and_tag(repo: &str, tag: &str) -> Result<Reference, ReferenceError> {
    if repo.is_empty() {
        return Err(ReferenceError::InvalidFormat);
    }
    let r = Reference::parse_normalized(repo)?;
    if r.digest.is_some() {
        return Err(ReferenceError::DigestReference);
    }
    let r = if tag.is_empty() {
        r.with_default_tag()
    } else {
        r.with_tag(tag)?
    };
    if r.familiar_repository() == "sha256" {
        return Err(ReferenceError::AmbiguousDigestName);
    }
    Ok(r)
}

/// A full image ID: 64 lowercase hex digits, optionally prefixed `sha256:`.
pub fn is_full_id(s: &str) -> bool {
    is_identifier(s.strip_prefix("sha256:").unwrap_or(s))
}

/// A plausible (possibly truncated) image ID for prefix lookup: 4 to 64
/// lowercase hex digits, optionally prefixed `sha256:` (the rule of dockerd's
/// containerd image store). Callers try a name lookup first, as dockerd does.
pub fn is_id_prefix(s: &str) -> bool {
    id_prefix_hex(s).is_some()
}

/// The hex part of a plausible image ID prefix (see [`is_id_prefix`]).
pub fn id_prefix_hex(s: &str) -> Option<&str> {
    let hex = s.strip_prefix("sha256:").unwrap_or(s);
    ((4..=64).contains(&hex.len()) && hex.bytes().all(is_lower_hex)).then_some(hex)
}

/// go-digest's `Digest.Validate`: `algorithm:encoded` with a supported
/// algorithm and exactly the right number of lowercase hex digits.
pub fn validate_digest(d: &str) -> Result<(), ReferenceError> {
    let (alg, enc) = match d.split_once(':') {
        Some((a, e)) if !a.is_empty() && !e.is_empty() => (a, e),
        _ => return Err(ReferenceError::BadDigest),
    };
    let hex_len = match alg {
        "sha256" => 64,
        "sha384" => 96,
        "sha512" => 128,
        // Unknown algorithms are "unsupported" only if otherwise well formed.
        _ if is_go_digest_syntax(alg, enc) => return Err(ReferenceError::UnsupportedDigest),
        _ => return Err(ReferenceError::BadDigest),
    };
    if enc.len() != hex_len {
        return Err(ReferenceError::BadDigestLength);
    }
    if !enc.bytes().all(is_lower_hex) {
        return Err(ReferenceError::BadDigest);
    }
    Ok(())
}

/// The pieces of a string matched by distribution's `ReferenceRegexp`.
struct Parts<'a> {
    domain: Option<&'a str>,
    path: &'a str,
    tag: Option<&'a str>,
    digest: Option<&'a str>,
}

/// distribution's `Parse`, for the already normalised string.
fn parse(s: &str) -> Result<Reference, ReferenceError> {
    let Some(p) = match_reference(s) else {
        // Same fallback as upstream: name the uppercase problem if that's all.
        if match_reference(&go_to_lower(s)).is_some() {
            return Err(ReferenceError::NameContainsUppercase);
        }
        return Err(ReferenceError::InvalidFormat);
    };
    let name_len = p.domain.map_or(0, |d| d.len() + 1) + p.path.len();
    if name_len > NAME_TOTAL_LENGTH_MAX {
        return Err(ReferenceError::NameTooLong);
    }
    if let Some(d) = p.digest {
        validate_digest(d)?;
    }
    Ok(Reference {
        domain: p.domain.unwrap_or_default().to_string(),
        path: p.path.to_string(),
        tag: p.tag.map(str::to_string),
        digest: p.digest.map(str::to_string),
    })
}

/// Match `name [":" tag] ["@" digest]` and split it the way Go's regexp does.
fn match_reference(s: &str) -> Option<Parts<'_>> {
    // Only the digest may follow '@', and none of the parts contain one.
    let (rest, digest) = match s.split_once('@') {
        Some((r, d)) if is_digest_syntax(d) => (r, Some(d)),
        Some(_) => return None,
        None => (s, None),
    };
    // A ':' in the name lies in the domain and is followed by '/', and tags
    // have no ':' or '/': so a tag, if any, follows the last ':' with no '/'.
    let (name, tag) = match rest.rfind(':') {
        Some(i) if !rest[i + 1..].contains('/') => {
            let t = &rest[i + 1..];
            if !is_valid_tag(t) {
                return None;
            }
            (&rest[..i], Some(t))
        }
        _ => (rest, None),
    };
    // The optional domain group is greedy: take the first element as the
    // domain whenever that still lets the rest match as a path.
    if let Some((first, path)) = name.split_once('/') {
        if is_domain(first) && is_path(path) {
            return Some(Parts {
                domain: Some(first),
                path,
                tag,
                digest,
            });
        }
    }
    is_path(name).then_some(Parts {
        domain: None,
        path: name,
        tag,
        digest,
    })
}

/// `splitDockerDomain`: decide the registry and add `library/` on Docker Hub.
fn split_docker_domain(name: &str) -> (&str, String) {
    let (domain, remainder) = match name.split_once('/') {
        Some((first, rest))
            if first == "localhost"
                || first.contains(['.', ':'])
                // Docker Hub namespaces are lowercase, so this must be a host.
                || go_to_lower(first) != first =>
        {
            (first, rest)
        }
        _ => (DEFAULT_DOMAIN, name),
    };
    let domain = if domain == LEGACY_DEFAULT_DOMAIN {
        DEFAULT_DOMAIN
    } else {
        domain
    };
    if domain == DEFAULT_DOMAIN && !remainder.contains('/') {
        return (domain, format!("{OFFICIAL_REPO_PREFIX}{remainder}"));
    }
    (domain, remainder.to_string())
}

/// `host [":" port]` where host is a domain name or a bracketed IPv6 address.
fn is_domain(s: &str) -> bool {
    let (host, port) = if let Some(inner) = s.strip_prefix('[') {
        let Some((addr, after)) = inner.split_once(']') else {
            return false;
        };
        let addr_ok = !addr.is_empty() && addr.bytes().all(|b| b.is_ascii_hexdigit() || b == b':');
        if !addr_ok {
            return false;
        }
        match after {
            "" => return true,
            _ => match after.strip_prefix(':') {
                Some(port) => ("", Some(port)),
                None => return false,
            },
        }
    } else {
        match s.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    let host_ok = s.starts_with('[') || host.split('.').all(is_domain_component);
    let port_ok = port.is_none_or(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    host_ok && port_ok
}

/// `[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]`
fn is_domain_component(c: &str) -> bool {
    let b = c.as_bytes();
    !b.is_empty()
        && b.iter().all(|&x| x.is_ascii_alphanumeric() || x == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// One or more path components separated by single slashes.
fn is_path(s: &str) -> bool {
    s.split('/').all(is_path_component)
}

/// `[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*`
fn is_path_component(c: &str) -> bool {
    let is_alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let b = c.as_bytes();
    if b.is_empty() || !is_alnum(b[0]) || !is_alnum(b[b.len() - 1]) {
        return false;
    }
    // Every maximal run of non-alphanumerics must be one whole separator.
    b.split(|&x| is_alnum(x))
        .all(|sep| matches!(sep, b"" | b"." | b"_" | b"__") || sep.iter().all(|&x| x == b'-'))
}

/// `[\w][\w.-]{0,127}`
fn is_valid_tag(t: &str) -> bool {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let b = t.as_bytes();
    !b.is_empty()
        && b.len() <= TAG_LENGTH_MAX
        && word(b[0])
        && b.iter().all(|&x| word(x) || x == b'.' || x == b'-')
}

/// distribution's digest pattern (looser than go-digest's validation):
/// `[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}`
fn is_digest_syntax(d: &str) -> bool {
    let Some((alg, hex)) = d.split_once(':') else {
        return false;
    };
    let alg_ok = alg.split(['-', '_', '+', '.']).all(|c| {
        let b = c.as_bytes();
        !b.is_empty() && b[0].is_ascii_alphabetic() && b.iter().all(u8::is_ascii_alphanumeric)
    });
    alg_ok && hex.len() >= 32 && hex.bytes().all(|b| b.is_ascii_hexdigit())
}

/// go-digest's `DigestRegexp`: `[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+`
fn is_go_digest_syntax(alg: &str, enc: &str) -> bool {
    let alg_ok = alg.split(['.', '+', '_', '-']).all(|c| {
        !c.is_empty()
            && c.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    });
    let enc_ok = !enc.is_empty()
        && enc
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'=' | b'_' | b'-'));
    alg_ok && enc_ok
}

/// distribution's `anchoredIdentifierRegexp`: `^[a-f0-9]{64}$`.
fn is_identifier(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(is_lower_hex)
}

fn is_lower_hex(b: u8) -> bool {
    b.is_ascii_digit() || (b'a'..=b'f').contains(&b)
}

/// Go's `strings.ToLower`: simple per-character mapping, so no final-sigma
/// rule and U+0130 maps to a plain `i` (Rust's full mapping differs there).
fn go_to_lower(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c == '\u{130}' {
                return 'i';
            }
            let mut l = c.to_lowercase();
            match (l.next(), l.next()) {
                (Some(one), None) => one,
                _ => c,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn p(s: &str) -> Result<Reference, ReferenceError> {
        Reference::parse_normalized(s)
    }

    fn ok(s: &str) -> Reference {
        p(s).unwrap_or_else(|e| panic!("{s:?} should parse: {e}"))
    }

    fn err(s: &str) -> ReferenceError {
        match p(s) {
            Ok(r) => panic!("{s:?} should fail, got {r:?}"),
            Err(e) => e,
        }
    }

    /// (domain, path, tag, digest)
    fn parts(r: &Reference) -> (&str, &str, Option<&str>, Option<&str>) {
        (&r.domain, &r.path, r.tag.as_deref(), r.digest.as_deref())
    }

    #[test]
    fn docker_hub_names() {
        let r = ok("busybox");
        assert_eq!(parts(&r), ("docker.io", "library/busybox", None, None));
        assert!(r.is_name_only());
        assert!(r.is_docker_hub());
        assert_eq!(r.registry_host(), "docker.io");
        assert_eq!(r.repository(), "docker.io/library/busybox");
        assert_eq!(r.full(), "docker.io/library/busybox");
        assert_eq!(r.familiar(), "busybox");

        for s in [
            "library/busybox",
            "docker.io/busybox",
            "docker.io/library/busybox",
            "index.docker.io/busybox",
            "index.docker.io/library/busybox",
        ] {
            assert_eq!(ok(s), r, "{s}");
        }

        let r = ok("busybox:1.36");
        assert_eq!(
            parts(&r),
            ("docker.io", "library/busybox", Some("1.36"), None)
        );
        assert_eq!(r.familiar(), "busybox:1.36");
        assert_eq!(r.to_string(), "docker.io/library/busybox:1.36");

        let r = ok("user/app:v1");
        assert_eq!(parts(&r), ("docker.io", "user/app", Some("v1"), None));
        assert_eq!(r.familiar_repository(), "user/app");
        assert_eq!(r.familiar(), "user/app:v1");
        assert_eq!(r.full(), "docker.io/user/app:v1");

        // Only one level below library/ is shortened.
        let r = ok("library/a/b");
        assert_eq!(r.path, "library/a/b");
        assert_eq!(r.familiar(), "library/a/b");

        // Without a slash nothing is a domain: the ':' starts a tag.
        let r = ok("localhost:5000");
        assert_eq!(
            parts(&r),
            ("docker.io", "library/localhost", Some("5000"), None)
        );
        let r = ok("example.com");
        assert_eq!(parts(&r), ("docker.io", "library/example.com", None, None));
        assert_eq!(ok("index.docker.io").path, "library/index.docker.io");
    }

    #[test]
    fn other_registries() {
        let r = ok("localhost/app");
        assert_eq!(parts(&r), ("localhost", "app", None, None));
        assert!(!r.is_docker_hub());
        assert_eq!(r.familiar(), "localhost/app");

        let r = ok("localhost:5000/app");
        assert_eq!(parts(&r), ("localhost:5000", "app", None, None));
        assert_eq!(r.registry_host(), "localhost:5000");

        let r = ok("127.0.0.1:5000/busybox");
        assert_eq!(parts(&r), ("127.0.0.1:5000", "busybox", None, None));
        assert_eq!(r.familiar_repository(), "127.0.0.1:5000/busybox");
        assert_eq!(
            r.with_default_tag().familiar(),
            "127.0.0.1:5000/busybox:latest"
        );

        let r = ok("registry.example.com/a/b/c:tag");
        assert_eq!(
            parts(&r),
            ("registry.example.com", "a/b/c", Some("tag"), None)
        );
        assert_eq!(r.full(), "registry.example.com/a/b/c:tag");
        assert_eq!(r.familiar(), "registry.example.com/a/b/c:tag");

        // Not library/-prefixed outside Docker Hub.
        assert_eq!(ok("quay.io/app").path, "app");
        // A port-only "domain" (contains ':').
        assert_eq!(ok("myhost:443/x").domain, "myhost:443");
        // Dashes inside domain components.
        assert_eq!(ok("my-registry.local/x").domain, "my-registry.local");
        // Lowercase single-word first element is a Hub namespace, not a host.
        assert_eq!(
            parts(&ok("myhost/x")),
            ("docker.io", "myhost/x", None, None)
        );
    }

    #[test]
    fn ipv6_domains() {
        let r = ok("[::1]:5000/x");
        assert_eq!(parts(&r), ("[::1]:5000", "x", None, None));
        assert_eq!(r.familiar(), "[::1]:5000/x");
        let r = ok("[::1]/x:v1");
        assert_eq!(parts(&r), ("[::1]", "x", Some("v1"), None));
        let r = ok("[2001:DB8::1]:5000/a/b:t");
        assert_eq!(parts(&r), ("[2001:DB8::1]:5000", "a/b", Some("t"), None));
        assert_eq!(err("[::1]:/x"), ReferenceError::InvalidFormat);
        assert_eq!(err("[]:5000/x"), ReferenceError::InvalidFormat);
        assert_eq!(err("[::g]/x"), ReferenceError::InvalidFormat);
        assert_eq!(err("[::1]x/y"), ReferenceError::InvalidFormat);
    }

    #[test]
    fn digests() {
        let d = format!("sha256:{HEX}");
        let r = ok(&format!("busybox@{d}"));
        assert_eq!(
            parts(&r),
            ("docker.io", "library/busybox", None, Some(d.as_str()))
        );
        assert!(!r.is_name_only());
        assert_eq!(r.familiar(), format!("busybox@{d}"));
        assert_eq!(r.full(), format!("docker.io/library/busybox@{d}"));
        // A digest means no default tag.
        assert_eq!(r.clone().with_default_tag(), r);

        let r = ok(&format!("localhost:5000/app:v2@{d}"));
        assert_eq!(
            parts(&r),
            ("localhost:5000", "app", Some("v2"), Some(d.as_str()))
        );
        assert_eq!(r.familiar(), format!("localhost:5000/app:v2@{d}"));
        assert_eq!(r.name_only().full(), "localhost:5000/app");

        let sha512 = format!("sha512:{HEX}{HEX}");
        assert_eq!(
            ok(&format!("a@{sha512}")).digest.as_deref(),
            Some(sha512.as_str())
        );
        let sha384 = format!("sha384:{HEX}{}", &HEX[..32]);
        assert!(p(&format!("a@{sha384}")).is_ok());

        // Fewer than 32 hex digits does not match the grammar at all.
        assert_eq!(err("busybox@sha256:abc"), ReferenceError::InvalidFormat);
        // Grammar ok, but go-digest wants exactly 64 lowercase hex for sha256.
        let short = format!("busybox@sha256:{}", &HEX[..32]);
        assert_eq!(err(&short), ReferenceError::BadDigestLength);
        let upper = format!("busybox@sha256:{}", HEX.to_uppercase());
        assert_eq!(err(&upper), ReferenceError::BadDigest);
        // Unknown algorithms pass the grammar and are then unsupported.
        let unknown = format!("busybox@foo+bar:{HEX}");
        assert_eq!(err(&unknown), ReferenceError::UnsupportedDigest);
        // Uppercase algorithm: fine for the grammar, malformed for go-digest.
        let upper_alg = format!("busybox:v1@SHA256:{HEX}");
        assert_eq!(err(&upper_alg), ReferenceError::BadDigest);
        // Without a tag, the lowercase check sees "library/busybox@SHA256"
        // (everything before the first ':'), as upstream does.
        let upper_alg = format!("busybox@SHA256:{HEX}");
        assert_eq!(err(&upper_alg), ReferenceError::NotLowercase);
        // Grammar violations.
        for bad in [
            format!("busybox@sha256:{HEX}g"),
            format!("busybox@1sha:{HEX}"),
            format!("busybox@sha256:{HEX}@x"),
            format!("busybox@:{HEX}"),
            format!("busybox@sha--256:{HEX}"),
            "busybox@".to_string(),
            format!("busybox@{d}:tag"),
        ] {
            assert_eq!(err(&bad), ReferenceError::InvalidFormat, "{bad}");
        }
    }

    #[test]
    fn validate_digest_rules() {
        assert_eq!(validate_digest(&format!("sha256:{HEX}")), Ok(()));
        assert_eq!(validate_digest("sha256"), Err(ReferenceError::BadDigest));
        assert_eq!(validate_digest("sha256:"), Err(ReferenceError::BadDigest));
        assert_eq!(
            validate_digest(&format!(":{HEX}")),
            Err(ReferenceError::BadDigest)
        );
        assert_eq!(
            validate_digest("sha256:abc"),
            Err(ReferenceError::BadDigestLength)
        );
        assert_eq!(
            validate_digest("md5:abc"),
            Err(ReferenceError::UnsupportedDigest)
        );
        assert_eq!(validate_digest("latest"), Err(ReferenceError::BadDigest));
        assert_eq!(validate_digest("Md5:abc"), Err(ReferenceError::BadDigest));
    }

    #[test]
    fn uppercase() {
        assert_eq!(err("Busybox"), ReferenceError::NotLowercase);
        assert_eq!(err("library/Busybox"), ReferenceError::NotLowercase);
        assert_eq!(err("user/App:v1"), ReferenceError::NotLowercase);
        assert_eq!(err("localhost:5000/App"), ReferenceError::NotLowercase);
        assert_eq!(
            err("registry.example.com/a/B"),
            ReferenceError::NotLowercase
        );
        assert_eq!(
            err("Busybox").to_string(),
            "invalid reference format: repository name must be lowercase"
        );
        // Uppercase is fine in domains and tags.
        let r = ok("UPPER.example.com/x:Tag_1");
        assert_eq!(parts(&r), ("UPPER.example.com", "x", Some("Tag_1"), None));
        // An uppercase first element is taken as a domain, as upstream does.
        assert_eq!(parts(&ok("FOO/bar")), ("FOO", "bar", None, None));
        // ... and if it is not a valid domain, Parse's own message applies.
        assert_eq!(err("Foo_Bar/baz"), ReferenceError::NameContainsUppercase);
        // Uppercase Docker Hub domain spelling is not normalised.
        assert_eq!(parts(&ok("Docker.io/x")), ("Docker.io", "x", None, None));
    }

    #[test]
    fn invalid_names() {
        for s in [
            "",
            ":tag",
            "@sha256:x",
            "/",
            "a//b",
            "a/",
            "busybox/",
            "/busybox",
            "a___b",
            "a..b",
            "a._b",
            "a-_b",
            "-a",
            "a-",
            "_a",
            "a.",
            "busybox:",
            "busybox:-tag",
            "busybox:.tag",
            "busybox:ta/g",
            "busybox:a:b",
            "busybox tag",
            "busybox@",
            "localhost:/x",
            "localhost:abc/x",
            "-host.com/x",
            "host-.com/x",
            "host..com/x",
            "a:b:c/d",
            "ubuntu:latest/x",
            "a/b:c/D",
            "café",
        ] {
            assert_eq!(p(s), Err(ReferenceError::InvalidFormat), "{s:?}");
        }
    }

    #[test]
    fn valid_separators() {
        for s in [
            "a__b",
            "a_b",
            "a.b",
            "a-b",
            "a---b",
            "a.b-c__d_e",
            "0",
            "a1/b2.c_d/e--f",
        ] {
            assert!(p(s).is_ok(), "{s:?}");
        }
        // A malformed "domain" that is a valid path component stays in the
        // path with an empty domain, exactly as distribution/reference does.
        let r = ok("a_b.com/foo");
        assert_eq!(parts(&r), ("", "a_b.com/foo", None, None));
        assert_eq!(r.repository(), "a_b.com/foo");
        assert_eq!(r.with_default_tag().familiar(), "a_b.com/foo:latest");
    }

    #[test]
    fn tags() {
        let t128 = format!("a{}", "b".repeat(127));
        let r = ok(&format!("busybox:{t128}"));
        assert_eq!(r.tag.as_deref(), Some(t128.as_str()));
        let t129 = format!("{t128}c");
        assert_eq!(
            err(&format!("busybox:{t129}")),
            ReferenceError::InvalidFormat
        );
        assert_eq!(ok("busybox:_x.Y-1").tag.as_deref(), Some("_x.Y-1"));
        assert_eq!(
            ok("busybox:latest").with_default_tag().tag.as_deref(),
            Some("latest")
        );
        assert_eq!(
            ok("busybox").with_default_tag().familiar(),
            "busybox:latest"
        );
        assert_eq!(
            ok("busybox").with_default_tag().full(),
            "docker.io/library/busybox:latest"
        );
    }

    #[test]
    fn name_length() {
        // docker.io/library/ (18 bytes) counts towards the limit.
        let fits = "a".repeat(NAME_TOTAL_LENGTH_MAX - "docker.io/library/".len());
        assert!(p(&fits).is_ok());
        assert_eq!(err(&format!("{fits}a")), ReferenceError::NameTooLong);
        // The tag does not count.
        assert!(p(&format!("{fits}:{}", "t".repeat(100))).is_ok());
        let host = format!("{}.com/{}", "h".repeat(200), "p".repeat(51));
        assert_eq!(host.len(), 256);
        assert_eq!(err(&host), ReferenceError::NameTooLong);
        assert_eq!(
            err(&host).to_string(),
            "repository name must not be more than 255 characters"
        );
    }

    #[test]
    fn hex_ids() {
        let e = err(HEX);
        assert_eq!(e, ReferenceError::HexRepositoryName(HEX.to_string()));
        assert_eq!(
            e.to_string(),
            format!("invalid repository name ({HEX}), cannot specify 64-byte hexadecimal strings")
        );
        // Only the bare 64-hex string is refused, as upstream.
        assert_eq!(ok(&format!("{HEX}:v1")).path, format!("library/{HEX}"));
        assert!(p(&HEX[..63]).is_ok());

        assert!(is_full_id(HEX));
        assert!(is_full_id(&format!("sha256:{HEX}")));
        assert!(!is_full_id(&HEX[..63]));
        assert!(!is_full_id(&format!("{HEX}0")));
        assert!(!is_full_id(&HEX.to_uppercase()));
        assert!(!is_full_id(&format!("sha512:{HEX}")));

        assert!(is_id_prefix("abcd"));
        assert!(is_id_prefix("sha256:0123456789ab"));
        assert!(is_id_prefix(HEX));
        assert!(!is_id_prefix("abc"));
        assert!(!is_id_prefix("busybox"));
        assert!(!is_id_prefix("ABCD"));
        assert!(!is_id_prefix(&format!("{HEX}0")));
        assert!(!is_id_prefix("sha256:"));
        assert_eq!(id_prefix_hex("sha256:abcd1234"), Some("abcd1234"));
    }

    #[test]
    fn from_image_and_tag() {
        let f = parse_from_image_and_tag;
        // Empty tag: no tag added (dockerd would pull all tags).
        let r = f("busybox", "").unwrap();
        assert!(r.is_name_only());
        assert_eq!(r.with_default_tag().familiar(), "busybox:latest");

        assert_eq!(f("busybox", "1.36").unwrap().familiar(), "busybox:1.36");
        assert_eq!(f("busybox:", "").unwrap().familiar(), "busybox");
        assert_eq!(
            f("busybox:", "latest").unwrap().familiar(),
            "busybox:latest"
        );
        // A tag in fromImage is kept when tag is empty, replaced otherwise.
        assert_eq!(f("busybox:1.35", "").unwrap().familiar(), "busybox:1.35");
        assert_eq!(
            f("busybox:1.35", "1.36").unwrap().familiar(),
            "busybox:1.36"
        );

        // The tag may be a digest; it then replaces the tag.
        let d = format!("sha256:{HEX}");
        let r = f("busybox:1.36", &d).unwrap();
        assert_eq!(
            parts(&r),
            ("docker.io", "library/busybox", None, Some(d.as_str()))
        );
        assert_eq!(
            f(&format!("busybox@{d}"), "").unwrap().digest,
            Some(d.clone())
        );
        // A tag on a digested reference keeps the digest.
        let r = f(&format!("busybox@{d}"), "v1").unwrap();
        assert_eq!(r.familiar(), format!("busybox:v1@{d}"));

        // Things that are neither a digest nor a tag.
        assert_eq!(f("busybox", "sha256:abc"), Err(ReferenceError::InvalidTag));
        assert_eq!(f("busybox", "a/b"), Err(ReferenceError::InvalidTag));
        assert_eq!(
            f("busybox", &format!("sha256:{}", HEX.to_uppercase())),
            Err(ReferenceError::InvalidTag)
        );
        assert_eq!(f("Busybox", "latest"), Err(ReferenceError::NotLowercase));
        assert_eq!(f("", "latest"), Err(ReferenceError::InvalidFormat));
        assert_eq!(f("busybox::", ""), Err(ReferenceError::InvalidFormat));
        assert!(matches!(
            f(HEX, ""),
            Err(ReferenceError::HexRepositoryName(_))
        ));

        let e = f("scratch", "latest").unwrap_err();
        assert_eq!(e, ReferenceError::ReservedName("scratch".to_string()));
        assert_eq!(e.to_string(), "'scratch' is a reserved name");
        assert!(f("library/scratch", "").is_err());
        assert!(f("localhost/scratch", "").is_ok());
        assert!(f("user/scratch", "").is_ok());

        let r = f("localhost:5000/app", "v1").unwrap();
        assert_eq!(r.full(), "localhost:5000/app:v1");
    }

    #[test]
    fn repo_and_tag() {
        let f = parse_repo_and_tag;
        assert_eq!(
            f("myapp", "").unwrap().full(),
            "docker.io/library/myapp:latest"
        );
        assert_eq!(f("myapp", "v1").unwrap().familiar(), "myapp:v1");
        assert_eq!(f("user/app:v1", "").unwrap().familiar(), "user/app:v1");
        assert_eq!(f("user/app:v1", "v2").unwrap().familiar(), "user/app:v2");
        assert_eq!(
            f("localhost:5000/app", "v1").unwrap().full(),
            "localhost:5000/app:v1"
        );

        let d = format!("sha256:{HEX}");
        assert_eq!(f("myapp", &d), Err(ReferenceError::InvalidTag));
        assert_eq!(
            f(&format!("myapp@{d}"), ""),
            Err(ReferenceError::DigestReference)
        );
        assert_eq!(
            f(&format!("myapp@{d}"), "v1"),
            Err(ReferenceError::DigestReference)
        );
        assert_eq!(f("myapp", "bad/tag"), Err(ReferenceError::InvalidTag));
        assert_eq!(
            f("myapp", &"t".repeat(129)),
            Err(ReferenceError::InvalidTag)
        );
        assert_eq!(f("MyApp", "v1"), Err(ReferenceError::NotLowercase));
        assert_eq!(f("", "v1"), Err(ReferenceError::InvalidFormat));

        let e = f(HEX, "v1").unwrap_err();
        assert_eq!(e, ReferenceError::HexRepositoryName(HEX.to_string()));

        let e = f("sha256", "v1").unwrap_err();
        assert_eq!(e, ReferenceError::AmbiguousDigestName);
        assert_eq!(
            e.to_string(),
            "refusing to create an ambiguous tag using digest algorithm as name"
        );
        // Only the familiar name "sha256" is ambiguous.
        assert!(f("user/sha256", "v1").is_ok());
    }

    #[test]
    fn builders_and_traits() {
        let d = format!("sha256:{HEX}");
        let r = ok("busybox:1").with_digest(&d).unwrap();
        assert_eq!(r.familiar(), format!("busybox@{d}"));
        assert_eq!(
            ok("busybox").with_digest("sha256:x"),
            Err(ReferenceError::BadDigestLength)
        );
        assert_eq!(
            ok("busybox").with_tag("x:y"),
            Err(ReferenceError::InvalidTag)
        );
        let r: Reference = "user/app:v1".parse().unwrap();
        assert_eq!(format!("{r}"), "docker.io/user/app:v1");
        assert_eq!(
            "Bad".parse::<Reference>(),
            Err(ReferenceError::NotLowercase)
        );
        // Hashable and comparable after normalisation.
        let set: std::collections::HashSet<_> = ["busybox", "library/busybox", "docker.io/busybox"]
            .map(ok)
            .into();
        assert_eq!(set.len(), 1);
    }

    #[test]
    fn go_lowercase_quirks() {
        assert_eq!(go_to_lower("ABC"), "abc");
        assert_eq!(go_to_lower("\u{130}"), "i");
        // Kelvin sign lowercases to ASCII 'k' in Go too.
        assert_eq!(go_to_lower("\u{212a}"), "k");
        assert_eq!(err("\u{212a}ube"), ReferenceError::NotLowercase);
        assert_eq!(
            err("busybox:t\u{130}"),
            ReferenceError::NameContainsUppercase
        );
        assert_eq!(err("busybox:é"), ReferenceError::InvalidFormat);
    }
}
