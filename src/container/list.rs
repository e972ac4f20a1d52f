//! `GET /containers/json`: which containers, with dockerd's filters.

use super::{Container, ContainerService, Status};
use crate::error::{EngineError, EngineResult};
use crate::filters::Filters;

#[derive(Clone, Debug, Default)]
pub struct ListOptions {
    pub all: bool,
    /// Newest N (implies all); 0 or less: no limit.
    pub limit: i64,
    pub filters: Filters,
}

impl ContainerService {
    /// The containers selected, newest first.
    pub async fn list(&self, opts: &ListOptions) -> EngineResult<Vec<Container>> {
        let f = &opts.filters;
        f.accept_only(&[
            "id", "name", "label", "status", "ancestor", "exited", "before", "since", "volume",
        ])?;
        let mounts = if f.contains("volume") {
            self.all_mount_points().await?
        } else {
            Default::default()
        };
        for s in f.get("status") {
            if !Status::is_filter_value(s) {
                return Err(EngineError::InvalidParameter(format!(
                    "invalid filter 'status={s}'"
                )));
            }
        }
        let mut exited = vec![];
        for e in f.get("exited") {
            exited.push(e.parse::<i32>().map_err(|_| {
                EngineError::InvalidParameter(format!("invalid filter 'exited={e}'"))
            })?);
        }
        let mut ancestors = vec![];
        for a in f.get("ancestor") {
            // dockerd ignores ancestors it cannot find.
            if let Ok(img) = self.images.resolve(a).await {
                ancestors.push(img.row.id);
            }
        }
        let mut bounds = [None, None];
        for (i, key) in ["before", "since"].iter().enumerate() {
            if let Some(n) = f.get(key).first() {
                bounds[i] = Some(self.get(n).await?.row.created_at);
            }
        }
        let [before, since] = bounds;

        let all = opts.all
            || opts.limit > 0
            || f.contains("status")
            || f.contains("exited")
            || before.is_some()
            || since.is_some();
        let mut out = vec![];
        for c in self.all().await? {
            let status = c.state.status_str();
            if !all && !c.state.running_or_restarting() {
                continue;
            }
            if !f.any_or_absent("id", |v| c.row.id.starts_with(v)) {
                continue;
            }
            if !f.any_or_absent("name", |v| name_matches(&c.row.name, v)) {
                continue;
            }
            if !f.labels_match("label", &c.config.labels.clone().unwrap_or_default()) {
                continue;
            }
            if !f.any_or_absent("status", |v| v == status) {
                continue;
            }
            let exit_ok = exited.is_empty()
                || (c.state.status == Status::Exited && exited.contains(&c.state.exit_code));
            if !exit_ok {
                continue;
            }
            let points = mounts.get(c.id()).map(Vec::as_slice).unwrap_or(&[]);
            if !f.any_or_absent("volume", |v| super::mounts::mounts_match(points, v)) {
                continue;
            }
            if f.contains("ancestor") && !ancestors.contains(&c.row.image_id) {
                continue;
            }
            if before.is_some_and(|b| c.row.created_at >= b)
                || since.is_some_and(|s| c.row.created_at <= s)
            {
                continue;
            }
            out.push(c);
            if opts.limit > 0 && out.len() as i64 >= opts.limit {
                break;
            }
        }
        Ok(out)
    }
}

/// dockerd matches `name` as a regular expression against `/name`; plain
/// names (the common case) match as substrings, `^`/`$` anchor.
fn name_matches(name: &str, pattern: &str) -> bool {
    let full = format!("/{name}");
    let (anchored_start, p) = match pattern.strip_prefix('^') {
        Some(p) => (true, p),
        None => (false, pattern),
    };
    let (anchored_end, p) = match p.strip_suffix('$') {
        Some(p) => (true, p),
        None => (false, p),
    };
    match (anchored_start, anchored_end) {
        (true, true) => full == p || name == p,
        (true, false) => full.starts_with(p) || name.starts_with(p),
        (false, true) => full.ends_with(p),
        (false, false) => full.contains(p),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_like_dockerd_for_plain_patterns() {
        assert!(name_matches("web-1", "web"));
        assert!(name_matches("web-1", "^/web"));
        assert!(name_matches("web-1", "^web-1$"));
        assert!(!name_matches("web-1", "^eb"));
        assert!(name_matches("web-1", "-1$"));
    }
}
