//! Dockerfile-style `changes` (`docker import --change`): parsing the
//! instructions dockerd accepts and applying them to an image's run config.

use std::collections::BTreeMap;

use super::invalid;
use crate::duration::parse_go_duration;
use crate::error::{EngineError, EngineResult};
use crate::image::config::RunConfig;

/// The Dockerfile instructions `docker import` and `docker commit` accept
/// (dockerd's `validCommitCommands`).
const VALID_CHANGES: &[&str] = &[
    "cmd",
    "entrypoint",
    "env",
    "expose",
    "healthcheck",
    "label",
    "onbuild",
    "stopsignal",
    "user",
    "volume",
    "workdir",
];

/// Parsed `changes`: Dockerfile instructions applied to an image config.
#[derive(Debug, Clone, Default)]
pub struct Changes {
    instructions: Vec<Instruction>,
}

#[derive(Debug, Clone)]
struct Instruction {
    /// Lowercase, as dockerd's parser reports it.
    keyword: String,
    /// Leading `--name[=value]` words, without the dashes.
    flags: Vec<String>,
    args: String,
}

/// Parses `changes` (one instruction per element, or several separated by
/// newlines) the way dockerd's `BuildFromConfig` does, and checks that they
/// apply.
pub fn parse_changes(c: &[String]) -> EngineResult<Changes> {
    let text = c.join("\n");
    let mut instructions = vec![];
    for line in logical_lines(&text) {
        let (word, rest) = split_first_word(&line);
        let keyword = word.to_ascii_lowercase();
        if !VALID_CHANGES.contains(&keyword.as_str()) {
            return Err(invalid(format!("{keyword} is not a valid change command")));
        }
        let (flags, args) = take_flags(rest);
        instructions.push(Instruction {
            keyword,
            flags,
            args: args.to_string(),
        });
    }
    let changes = Changes { instructions };
    // Fail now (400 before anything streams) rather than mid-import.
    changes.apply(&mut RunConfig::default())?;
    Ok(changes)
}

/// Dockerfile lines: continuations joined, comments and blank lines dropped.
fn logical_lines(text: &str) -> Vec<String> {
    let mut out = vec![];
    let mut cur = String::new();
    for raw in text.lines() {
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        match raw.trim_end().strip_suffix('\\') {
            Some(body) => cur.push_str(body),
            None => {
                cur.push_str(raw);
                out.push(cur.trim().to_string());
                cur.clear();
            }
        }
    }
    if !cur.trim().is_empty() {
        out.push(cur.trim().to_string());
    }
    out
}

fn split_first_word(s: &str) -> (&str, &str) {
    let s = s.trim_start();
    match s.find(char::is_whitespace) {
        Some(i) => (&s[..i], s[i..].trim_start()),
        None => (s, ""),
    }
}

/// Splits leading `--flag` words off an instruction's arguments.
fn take_flags(mut rest: &str) -> (Vec<String>, &str) {
    let mut flags = vec![];
    while rest.starts_with("--") {
        let (word, after) = split_first_word(rest);
        rest = after;
        if word == "--" {
            break;
        }
        flags.push(word[2..].to_string());
    }
    (flags, rest)
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.instructions.is_empty()
    }

    /// Applies the instructions to `config` in order.
    pub fn apply(&self, config: &mut RunConfig) -> EngineResult<()> {
        let mut cmd_set = false;
        for ins in &self.instructions {
            let upper = ins.keyword.to_ascii_uppercase();
            if ins.keyword != "healthcheck" {
                if let Some(f) = ins.flags.first() {
                    return Err(invalid(format!("unknown flag: {}", flag_name(f))));
                }
            }
            let env = config.env.clone().unwrap_or_default();
            let args = ins.args.trim();
            match ins.keyword.as_str() {
                "cmd" => {
                    config.cmd = Some(command_line(args, config, &upper)?);
                    cmd_set = true;
                }
                "entrypoint" => {
                    config.entrypoint = Some(command_line(args, config, &upper)?);
                    // An ENTRYPOINT resets a CMD that these changes did not set.
                    if !cmd_set {
                        config.cmd = None;
                    }
                }
                "env" => {
                    for (k, v) in name_values(args, &upper, &env)? {
                        set_env(config, &k, &v);
                    }
                }
                "label" => {
                    let labels = config.labels.get_or_insert_with(BTreeMap::new);
                    for (k, v) in name_values(args, &upper, &env)? {
                        labels.insert(k, v);
                    }
                }
                "expose" => {
                    let words = split_words(args);
                    if words.is_empty() {
                        return Err(at_least_one(&upper));
                    }
                    let ports = config.exposed_ports.get_or_insert_with(BTreeMap::new);
                    for w in words {
                        for p in expose_ports(&expand(&w, &env))? {
                            ports.insert(p, serde_json::json!({}));
                        }
                    }
                }
                "user" => {
                    let user = expand(args, &env);
                    if user.is_empty() {
                        return Err(exactly_one(&upper));
                    }
                    config.user = Some(user);
                }
                "workdir" => {
                    let dir = expand(args, &env);
                    if dir.is_empty() {
                        return Err(exactly_one(&upper));
                    }
                    let joined = if dir.starts_with('/') {
                        dir
                    } else {
                        let base = config.working_dir.clone().unwrap_or_default();
                        format!("/{base}/{dir}")
                    };
                    config.working_dir = Some(clean_abs_path(&joined));
                }
                "volume" => {
                    let list = match json_array(args) {
                        Some(v) => v,
                        None => split_words(args).iter().map(|w| expand(w, &env)).collect(),
                    };
                    if list.is_empty() {
                        return Err(at_least_one(&upper));
                    }
                    let volumes = config.volumes.get_or_insert_with(BTreeMap::new);
                    for v in list {
                        let v = v.trim().to_string();
                        if v.is_empty() {
                            return Err(invalid("VOLUME specified can not be an empty string"));
                        }
                        volumes.insert(v, serde_json::json!({}));
                    }
                }
                "onbuild" => {
                    if args.is_empty() {
                        return Err(at_least_one(&upper));
                    }
                    let (trigger, _) = split_first_word(args);
                    match trigger.to_ascii_uppercase().as_str() {
                        "ONBUILD" => {
                            return Err(invalid(
                                "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed",
                            ))
                        }
                        t @ ("FROM" | "MAINTAINER") => {
                            return Err(invalid(format!("{t} isn't allowed as an ONBUILD trigger")))
                        }
                        _ => {}
                    }
                    config
                        .on_build
                        .get_or_insert_with(Vec::new)
                        .push(args.to_string());
                }
                "stopsignal" => {
                    let sig = expand(args, &env);
                    if sig.is_empty() {
                        return Err(exactly_one(&upper));
                    }
                    crate::signal::parse(&sig)?;
                    config.stop_signal = Some(sig);
                }
                "healthcheck" => {
                    config.healthcheck = Some(healthcheck(&ins.flags, args)?);
                }
                other => return Err(invalid(format!("{other} is not a valid change command"))),
            }
        }
        Ok(())
    }
}

fn at_least_one(instr: &str) -> EngineError {
    invalid(format!("{instr} requires at least one argument"))
}

fn exactly_one(instr: &str) -> EngineError {
    invalid(format!("{instr} requires exactly one argument"))
}

fn flag_name(f: &str) -> &str {
    f.split('=').next().unwrap_or(f)
}

/// A JSON array of strings, if `s` is one (Dockerfile "exec form").
fn json_array(s: &str) -> Option<Vec<String>> {
    if !s.starts_with('[') {
        return None;
    }
    serde_json::from_str::<Vec<String>>(s).ok()
}

/// CMD/ENTRYPOINT: exec form as is, shell form through the image's shell.
fn command_line(args: &str, config: &RunConfig, instr: &str) -> EngineResult<Vec<String>> {
    if let Some(v) = json_array(args) {
        return Ok(v);
    }
    if args.is_empty() {
        return Err(at_least_one(instr));
    }
    let mut cmd = match &config.shell {
        Some(s) if !s.is_empty() => s.clone(),
        _ => vec!["/bin/sh".to_string(), "-c".to_string()],
    };
    cmd.push(args.to_string());
    Ok(cmd)
}

fn set_env(config: &mut RunConfig, key: &str, value: &str) {
    let env = config.env.get_or_insert_with(Vec::new);
    let entry = format!("{key}={value}");
    match env
        .iter_mut()
        .find(|e| e.split_once('=').map(|(k, _)| k).unwrap_or(e) == key)
    {
        Some(e) => *e = entry,
        None => env.push(entry),
    }
}

/// ENV/LABEL arguments: `k=v k2="v 2"`, or the legacy `k value with spaces`.
fn name_values(args: &str, instr: &str, env: &[String]) -> EngineResult<Vec<(String, String)>> {
    let words = split_words(args);
    let Some(first) = words.first() else {
        return Err(at_least_one(instr));
    };
    let mut pairs = vec![];
    if !first.contains('=') {
        let (name, value) = split_first_word(args);
        if value.is_empty() {
            return Err(invalid(format!("{instr} must have two arguments")));
        }
        pairs.push((expand(name, env), expand(value, env)));
    } else {
        for w in &words {
            let Some((k, v)) = w.split_once('=') else {
                return Err(invalid(format!(
                    "Syntax error - can't find = in {w:?}. Must be of the form: name=value"
                )));
            };
            pairs.push((expand(k, env), expand(v, env)));
        }
    }
    if pairs.iter().any(|(k, _)| k.is_empty()) {
        return Err(invalid(format!("{instr} names can not be blank")));
    }
    Ok(pairs)
}

/// Splits on unquoted whitespace, keeping quotes and escapes for [`expand`].
fn split_words(s: &str) -> Vec<String> {
    let mut words = vec![];
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match quote {
            Some(q) => {
                cur.push(c);
                if c == '\\' && q == '"' {
                    if let Some(n) = chars.next() {
                        cur.push(n);
                    }
                } else if c == q {
                    quote = None;
                }
            }
            None if c.is_whitespace() => {
                if !cur.is_empty() {
                    words.push(std::mem::take(&mut cur));
                }
            }
            None => {
                cur.push(c);
                if c == '\\' {
                    if let Some(n) = chars.next() {
                        cur.push(n);
                    }
                } else if c == '"' || c == '\'' {
                    quote = Some(c);
                }
            }
        }
    }
    if !cur.is_empty() {
        words.push(cur);
    }
    words
}

fn env_lookup<'a>(env: &'a [String], name: &str) -> Option<&'a str> {
    env.iter().rev().find_map(|e| {
        e.split_once('=')
            .filter(|(k, _)| *k == name)
            .map(|(_, v)| v)
    })
}

/// The Dockerfile shell-word rules: quotes removed, `\` escapes, and
/// `$VAR`, `${VAR}`, `${VAR:-x}`, `${VAR:+x}` from `env`.
fn expand(word: &str, env: &[String]) -> String {
    let chars: Vec<char> = word.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '\'' => {
                i += 1;
                while i < chars.len() && chars[i] != '\'' {
                    out.push(chars[i]);
                    i += 1;
                }
                i += 1;
            }
            '"' => {
                i += 1;
                while i < chars.len() && chars[i] != '"' {
                    match chars[i] {
                        '\\' if matches!(chars.get(i + 1), Some('"' | '\\' | '$')) => {
                            out.push(chars[i + 1]);
                            i += 2;
                        }
                        '$' => i = expand_var(&chars, i, env, &mut out),
                        c => {
                            out.push(c);
                            i += 1;
                        }
                    }
                }
                i += 1;
            }
            '\\' => {
                match chars.get(i + 1) {
                    Some(&n) => out.push(n),
                    None => out.push('\\'),
                }
                i += 2;
            }
            '$' => i = expand_var(&chars, i, env, &mut out),
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}

/// Expands the variable at `chars[i] == '$'`; returns the index after it.
fn expand_var(chars: &[char], i: usize, env: &[String], out: &mut String) -> usize {
    let is_name = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let j = i + 1;
    match chars.get(j) {
        Some('{') => {
            let Some(close) = chars[j..].iter().position(|&c| c == '}').map(|p| p + j) else {
                out.extend(&chars[i..]);
                return chars.len();
            };
            let inner: String = chars[j + 1..close].iter().collect();
            let name_end = inner.find(|c: char| !is_name(c)).unwrap_or(inner.len());
            let (name, modifier) = inner.split_at(name_end);
            let value = env_lookup(env, name);
            let result = if let Some(w) = modifier.strip_prefix(":-") {
                match value {
                    Some(v) if !v.is_empty() => v.to_string(),
                    _ => expand(w, env),
                }
            } else if let Some(w) = modifier.strip_prefix(":+") {
                match value {
                    Some(v) if !v.is_empty() => expand(w, env),
                    _ => String::new(),
                }
            } else if let Some(w) = modifier.strip_prefix('-') {
                value.map(String::from).unwrap_or_else(|| expand(w, env))
            } else if let Some(w) = modifier.strip_prefix('+') {
                value.map(|_| expand(w, env)).unwrap_or_default()
            } else {
                value.unwrap_or_default().to_string()
            };
            out.push_str(&result);
            close + 1
        }
        Some(&c) if c.is_ascii_alphabetic() || c == '_' => {
            let end = chars[j..]
                .iter()
                .position(|&c| !is_name(c))
                .map(|p| p + j)
                .unwrap_or(chars.len());
            let name: String = chars[j..end].iter().collect();
            out.push_str(env_lookup(env, &name).unwrap_or_default());
            end
        }
        _ => {
            out.push('$');
            j
        }
    }
}

/// `EXPOSE` specs (`80`, `53/udp`, `8000-8002/tcp`) as `port/proto` keys.
fn expose_ports(spec: &str) -> EngineResult<Vec<String>> {
    // `ip:host:container` forms expose only the container part.
    let spec = spec.rsplit(':').next().unwrap_or(spec);
    let (ports, proto) = match spec.split_once('/') {
        Some((p, proto)) => (p, proto.to_ascii_lowercase()),
        None => (spec, "tcp".to_string()),
    };
    if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
        return Err(invalid(format!("invalid proto: {proto}")));
    }
    let bad = || invalid(format!("invalid containerPort: {ports}"));
    let parse = |s: &str| s.parse::<u16>().map_err(|_| bad());
    let (start, end) = match ports.split_once('-') {
        Some((a, b)) => (parse(a)?, parse(b)?),
        None => {
            let p = parse(ports)?;
            (p, p)
        }
    };
    if end < start {
        return Err(bad());
    }
    Ok((start..=end).map(|p| format!("{p}/{proto}")).collect())
}

/// A lexically cleaned absolute path (Go's `path.Clean` of `/...`).
pub(super) fn clean_abs_path(p: &str) -> String {
    let mut parts: Vec<&str> = vec![];
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    format!("/{}", parts.join("/"))
}

/// `HEALTHCHECK NONE` or `HEALTHCHECK [--flags] CMD ...` as the config's
/// `Healthcheck` object.
fn healthcheck(flags: &[String], args: &str) -> EngineResult<serde_json::Value> {
    let (kind, rest) = split_first_word(args);
    let mut hc = serde_json::Map::new();
    match kind.to_ascii_uppercase().as_str() {
        "NONE" => {
            if !rest.is_empty() || !flags.is_empty() {
                return Err(invalid("HEALTHCHECK NONE takes no arguments"));
            }
            hc.insert("Test".into(), serde_json::json!(["NONE"]));
            return Ok(serde_json::Value::Object(hc));
        }
        "CMD" => {
            let test = match json_array(rest) {
                Some(v) => std::iter::once("CMD".to_string())
                    .chain(v)
                    .collect::<Vec<_>>(),
                None if rest.is_empty() => {
                    return Err(invalid("Missing command after HEALTHCHECK CMD"))
                }
                None => vec!["CMD-SHELL".to_string(), rest.to_string()],
            };
            hc.insert("Test".into(), serde_json::json!(test));
        }
        "" => return Err(at_least_one("HEALTHCHECK")),
        other => {
            return Err(invalid(format!(
                "Unknown type {other:?} in HEALTHCHECK (try CMD)"
            )))
        }
    }
    for f in flags {
        let (name, value) = f.split_once('=').unwrap_or((f.as_str(), ""));
        let field = match name {
            "interval" => "Interval",
            "timeout" => "Timeout",
            "start-period" => "StartPeriod",
            "start-interval" => "StartInterval",
            "retries" => {
                let n: i64 = value
                    .parse()
                    .map_err(|_| invalid(format!("invalid value {value:?} for --retries")))?;
                if n < 0 {
                    return Err(invalid(format!("--retries cannot be negative ({n})")));
                }
                if n > 0 {
                    hc.insert("Retries".into(), serde_json::json!(n));
                }
                continue;
            }
            other => return Err(invalid(format!("unknown flag: {other}"))),
        };
        let d = parse_go_duration(value).map_err(|e| invalid(e.to_string()))?;
        if d != 0 && d < 1_000_000 {
            return Err(invalid(format!(
                "{field} {value:?} cannot be less than 1ms"
            )));
        }
        if d != 0 {
            hc.insert(field.into(), serde_json::json!(d));
        }
    }
    Ok(serde_json::Value::Object(hc))
}

#[cfg(test)]
mod tests {
    use super::super::test_support::strings;
    use super::*;

    #[test]
    fn changes_parse_like_dockerd() {
        let apply = |c: &[&str]| {
            let mut rc = RunConfig::default();
            parse_changes(&strings(c))?.apply(&mut rc)?;
            Ok::<_, EngineError>(rc)
        };
        let rc = apply(&["CMD echo hi", "ENTRYPOINT [\"/e\"]"]).unwrap();
        assert_eq!(rc.cmd, Some(strings(&["/bin/sh", "-c", "echo hi"])));
        assert_eq!(rc.entrypoint, Some(strings(&["/e"])));
        let rc = apply(&["ENTRYPOINT /run.sh"]).unwrap();
        assert_eq!(rc.entrypoint, Some(strings(&["/bin/sh", "-c", "/run.sh"])));
        assert_eq!(rc.cmd, None);

        let rc = apply(&[
            "ENV PATH /usr/bin:/bin",
            "ENV A=$PATH B=${NOPE:-dflt} C='$lit'",
            "ENV A=2",
        ])
        .unwrap();
        assert_eq!(
            rc.env,
            Some(strings(&["PATH=/usr/bin:/bin", "A=2", "B=dflt", "C=$lit"]))
        );
        let rc = apply(&["LABEL a=b \"c d\"=\"e f\"", "LABEL legacy value here"]).unwrap();
        let labels = rc.labels.unwrap();
        assert_eq!(labels["a"], "b");
        assert_eq!(labels["c d"], "e f");
        assert_eq!(labels["legacy"], "value here");

        let rc = apply(&[
            "EXPOSE 8000-8001/udp 22",
            "VOLUME [\"/data\", \"/logs\"]",
            "VOLUME /a /b",
        ])
        .unwrap();
        let ports: Vec<String> = rc.exposed_ports.unwrap().keys().cloned().collect();
        assert_eq!(ports, strings(&["22/tcp", "8000/udp", "8001/udp"]));
        let vols: Vec<String> = rc.volumes.unwrap().keys().cloned().collect();
        assert_eq!(vols, strings(&["/a", "/b", "/data", "/logs"]));

        let rc = apply(&[
            "WORKDIR /srv",
            "WORKDIR app/../web",
            "USER 1000:1000",
            "STOPSIGNAL SIGQUIT",
            "ONBUILD RUN make",
        ])
        .unwrap();
        assert_eq!(rc.working_dir.as_deref(), Some("/srv/web"));
        assert_eq!(rc.user.as_deref(), Some("1000:1000"));
        assert_eq!(rc.stop_signal.as_deref(), Some("SIGQUIT"));
        assert_eq!(rc.on_build, Some(strings(&["RUN make"])));
        let rc = apply(&["STOPSIGNAL rtmin+3"]).unwrap();
        assert_eq!(rc.stop_signal.as_deref(), Some("rtmin+3"));

        let rc = apply(&["HEALTHCHECK --interval=30s --retries=3 CMD curl -f http://x/"]).unwrap();
        assert_eq!(
            rc.healthcheck,
            Some(
                serde_json::json!({"Test": ["CMD-SHELL", "curl -f http://x/"], "Interval": 30_000_000_000i64, "Retries": 3})
            )
        );
        let rc = apply(&["HEALTHCHECK NONE"]).unwrap();
        assert_eq!(rc.healthcheck, Some(serde_json::json!({"Test": ["NONE"]})));

        // Several instructions in one element, continuations and comments.
        let rc = apply(&["# note\nUSER a\nCMD echo \\\n  more"]).unwrap();
        assert_eq!(rc.user.as_deref(), Some("a"));
        assert_eq!(rc.cmd, Some(strings(&["/bin/sh", "-c", "echo   more"])));

        let msg = |c: &[&str]| match apply(c) {
            Err(EngineError::InvalidParameter(m)) => m,
            other => panic!("expected InvalidParameter, got {other:?}"),
        };
        assert_eq!(msg(&["FROM busybox"]), "from is not a valid change command");
        assert_eq!(msg(&["RUN true"]), "run is not a valid change command");
        assert_eq!(
            msg(&["ENV a=b c"]),
            "Syntax error - can't find = in \"c\". Must be of the form: name=value"
        );
        assert_eq!(msg(&["ENV lonely"]), "ENV must have two arguments");
        assert_eq!(msg(&["EXPOSE 80/foo"]), "invalid proto: foo");
        assert_eq!(msg(&["EXPOSE abc"]), "invalid containerPort: abc");
        assert_eq!(msg(&["STOPSIGNAL SIGNOPE"]), "Invalid signal: SIGNOPE");
        assert_eq!(msg(&["STOPSIGNAL 0"]), "Invalid signal: 0");
        assert_eq!(
            msg(&["ONBUILD FROM x"]),
            "FROM isn't allowed as an ONBUILD trigger"
        );
        assert_eq!(msg(&["CMD --foo=bar x"]), "unknown flag: foo");
        assert_eq!(
            msg(&["HEALTHCHECK --interval=1us CMD x"]),
            "Interval \"1us\" cannot be less than 1ms"
        );
        assert_eq!(
            msg(&["HEALTHCHECK --timeout=5 CMD x"]),
            "time: missing unit in duration \"5\""
        );
        assert!(parse_changes(&[]).unwrap().is_empty());
    }
}
