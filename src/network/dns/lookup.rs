//! Which addresses a name stands for, as seen by one container: container
//! names, network aliases (compose's service names) and 12-character short
//! IDs of the containers on the user-defined networks the asker is on,
//! optionally qualified with the network's name (`web.mynet`) or with one
//! of the asker's search domains; and back from those addresses to
//! `<name>.<network>`. The default `bridge` network has no name
//! resolution, as in dockerd.

use std::net::Ipv4Addr;

use crate::store::networks::NameRow;

/// The predefined network without names.
const DEFAULT_BRIDGE: &str = "bridge";

/// The addresses `qname` resolves to for `asker`; empty when the name is
/// not ours (the query then goes upstream).
pub fn resolve(rows: &[NameRow], asker: &str, qname: &str, search: &[String]) -> Vec<Ipv4Addr> {
    let name = qname.trim_end_matches('.').to_ascii_lowercase();
    if name.is_empty() {
        return vec![];
    }
    let asker_nets: Vec<&str> = rows
        .iter()
        .filter(|r| r.container_id == asker && r.network_name != DEFAULT_BRIDGE)
        .map(|r| r.network_id.as_str())
        .collect();
    let mut candidates: Vec<(&str, Option<&str>)> = vec![(name.as_str(), None)];
    for r in rows
        .iter()
        .filter(|r| asker_nets.contains(&r.network_id.as_str()))
    {
        if let Some(short) = name.strip_suffix(&format!(".{}", r.network_name.to_ascii_lowercase()))
        {
            candidates.push((short, Some(r.network_id.as_str())));
        }
    }
    for domain in search {
        let domain = domain.trim_end_matches('.').to_ascii_lowercase();
        if let Some(short) = name.strip_suffix(&format!(".{domain}")) {
            candidates.push((short, None));
        }
    }
    let mut out = vec![];
    for (wanted, only_net) in candidates {
        for r in rows {
            if !asker_nets.contains(&r.network_id.as_str())
                || only_net.is_some_and(|n| n != r.network_id)
                || !answers_to(r, wanted)
            {
                continue;
            }
            if let Ok(ip) = r.address.parse::<Ipv4Addr>() {
                if !out.contains(&ip) {
                    out.push(ip);
                }
            }
        }
        if !out.is_empty() {
            break;
        }
    }
    out
}

/// The name of `addr` for `asker` (`<container>.<network>`, as dockerd
/// answers PTR queries), if it is an address on one of its networks.
pub fn reverse(rows: &[NameRow], asker: &str, addr: Ipv4Addr) -> Option<String> {
    let asker_nets: Vec<&str> = rows
        .iter()
        .filter(|r| r.container_id == asker && r.network_name != DEFAULT_BRIDGE)
        .map(|r| r.network_id.as_str())
        .collect();
    rows.iter()
        .find(|r| asker_nets.contains(&r.network_id.as_str()) && r.address.parse() == Ok(addr))
        .map(|r| format!("{}.{}", r.container_name, r.network_name))
}

/// `4.3.2.1.in-addr.arpa` to 1.2.3.4.
pub fn arpa_to_ipv4(qname: &str) -> Option<Ipv4Addr> {
    let rest = qname
        .trim_end_matches('.')
        .to_ascii_lowercase()
        .strip_suffix(".in-addr.arpa")?
        .to_string();
    let mut parts: Vec<u8> = rest
        .split('.')
        .map(|p| p.parse::<u8>().ok())
        .collect::<Option<_>>()?;
    if parts.len() != 4 {
        return None;
    }
    parts.reverse();
    Some(Ipv4Addr::new(parts[0], parts[1], parts[2], parts[3]))
}

fn answers_to(r: &NameRow, name: &str) -> bool {
    if r.container_name.eq_ignore_ascii_case(name) {
        return true;
    }
    if name.len() == 12 && r.container_id.starts_with(name) {
        return true;
    }
    aliases(r).iter().any(|a| a.eq_ignore_ascii_case(name))
}

fn aliases(r: &NameRow) -> Vec<String> {
    r.endpoint_config
        .as_deref()
        .and_then(|c| serde_json::from_str::<super::super::endpoint::EndpointConfig>(c).ok())
        .map(|c| c.aliases)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(net: &str, cid: &str, name: &str, ip: &str, aliases: &[&str]) -> NameRow {
        NameRow {
            network_id: format!("{net}-id"),
            network_name: net.into(),
            container_id: cid.into(),
            container_name: name.into(),
            address: ip.into(),
            endpoint_config: Some(serde_json::json!({ "aliases": aliases }).to_string()),
        }
    }

    fn rows() -> Vec<NameRow> {
        vec![
            row("front", &"a".repeat(64), "web", "172.30.1.2", &["www"]),
            row("front", &"b".repeat(64), "db", "172.30.1.3", &["database"]),
            row("back", &"b".repeat(64), "db", "172.30.2.3", &[]),
            row("back", &"c".repeat(64), "cache", "172.30.2.4", &[]),
            row("bridge", &"a".repeat(64), "web", "172.17.0.2", &[]),
            row("bridge", &"d".repeat(64), "lonely", "172.17.0.3", &[]),
        ]
    }

    fn ask(asker: char, q: &str) -> Vec<String> {
        resolve(
            &rows(),
            &asker.to_string().repeat(64),
            q,
            &["corp.example".into()],
        )
        .iter()
        .map(|i| i.to_string())
        .collect()
    }

    #[test]
    fn names_aliases_and_short_ids_on_shared_networks() {
        assert_eq!(ask('a', "db"), ["172.30.1.3"]);
        assert_eq!(ask('a', "DATABASE."), ["172.30.1.3"]);
        assert_eq!(ask('a', "bbbbbbbbbbbb"), ["172.30.1.3"]);
        assert_eq!(ask('a', "web"), ["172.30.1.2"]);
        assert_eq!(ask('b', "db"), ["172.30.1.3", "172.30.2.3"]);
    }

    #[test]
    fn only_networks_the_asker_is_on() {
        assert!(ask('a', "cache").is_empty());
        assert_eq!(ask('b', "cache"), ["172.30.2.4"]);
        // Not through the default bridge, where nobody has names.
        assert!(ask('a', "lonely").is_empty());
        assert!(ask('d', "web").is_empty());
        assert!(
            ask('a', "bbbbbbbbbbb").is_empty(),
            "11 characters are no short ID"
        );
    }

    #[test]
    fn reverse_names_on_shared_networks_only() {
        let r = rows();
        let a = "a".repeat(64);
        let ip = arpa_to_ipv4("3.1.30.172.in-addr.arpa.").unwrap();
        assert_eq!(ip, Ipv4Addr::new(172, 30, 1, 3));
        assert_eq!(reverse(&r, &a, ip).as_deref(), Some("db.front"));
        assert_eq!(reverse(&r, &a, Ipv4Addr::new(172, 30, 2, 4)), None);
        assert_eq!(reverse(&r, &a, Ipv4Addr::new(172, 17, 0, 3)), None);
        assert_eq!(arpa_to_ipv4("1.2.3.in-addr.arpa"), None);
        assert_eq!(arpa_to_ipv4("example.com"), None);
    }

    #[test]
    fn network_and_search_domain_suffixes() {
        assert_eq!(ask('b', "db.back"), ["172.30.2.3"]);
        assert_eq!(ask('a', "web.corp.example"), ["172.30.1.2"]);
        assert!(ask('a', "web.elsewhere").is_empty());
        assert!(ask('a', "").is_empty());
    }
}
