//! Distribution documents shared by pulls and loads: media types, OCI
//! descriptors, image manifests and indexes (and their Docker schema 2
//! equivalents), and the choice of the host platform's entry in an index.

use std::collections::BTreeMap;

use serde::Deserialize;

pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_MANIFEST_V1: &str = "application/vnd.docker.distribution.manifest.v1+json";
pub const DOCKER_MANIFEST_V1_SIGNED: &str =
    "application/vnd.docker.distribution.manifest.v1+prettyjws";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";

#[derive(Debug, Clone, Deserialize)]
pub struct Descriptor {
    #[serde(rename = "mediaType", default)]
    pub media_type: String,
    #[serde(default)]
    pub digest: String,
    #[serde(default)]
    pub size: i64,
    #[serde(default)]
    pub annotations: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub platform: Option<Platform>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Platform {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default)]
    pub variant: Option<String>,
}

/// An image manifest or an index (manifest list): which one it is shows in
/// its media type, or for untyped OCI documents in its fields.
#[derive(Debug, Clone, Deserialize)]
pub struct Document {
    #[serde(rename = "schemaVersion", default)]
    pub schema_version: i64,
    #[serde(rename = "mediaType", default)]
    pub media_type: Option<String>,
    #[serde(default)]
    pub config: Option<Descriptor>,
    #[serde(default)]
    pub layers: Option<Vec<Descriptor>>,
    #[serde(default)]
    pub manifests: Option<Vec<Descriptor>>,
}

impl Document {
    pub fn is_index(&self) -> bool {
        matches!(
            self.media_type.as_deref(),
            Some(DOCKER_MANIFEST_LIST) | Some(OCI_INDEX)
        ) || (self.config.is_none() && self.manifests.is_some())
    }

    /// Docker's schema 1, which dockerd no longer pulls.
    pub fn is_schema1(&self) -> bool {
        let mt = self.media_type.as_deref().unwrap_or("");
        self.schema_version == 1 || mt == DOCKER_MANIFEST_V1 || mt == DOCKER_MANIFEST_V1_SIGNED
    }
}

/// The host platform in Go's names, as registries use them.
pub fn host_platform() -> (&'static str, Option<&'static str>) {
    match std::env::consts::ARCH {
        "x86_64" => ("amd64", None),
        "aarch64" => ("arm64", Some("v8")),
        "x86" => ("386", None),
        "arm" => ("arm", Some("v7")),
        "powerpc64" => ("ppc64le", None),
        "s390x" => ("s390x", None),
        "riscv64" => ("riscv64", None),
        other => (other, None),
    }
}

/// The host platform's entry of an index: linux on our architecture,
/// preferring the exact variant, then one without a variant, then any.
pub fn pick_platform(manifests: &[Descriptor]) -> Option<&Descriptor> {
    let (arch, variant) = host_platform();
    let candidates: Vec<&Descriptor> = manifests
        .iter()
        .filter(|m| {
            m.platform
                .as_ref()
                .is_some_and(|p| p.os == "linux" && p.architecture == arch)
        })
        .collect();
    candidates
        .iter()
        .find(|m| m.platform.as_ref().and_then(|p| p.variant.as_deref()) == variant)
        .or_else(|| {
            candidates
                .iter()
                .find(|m| m.platform.as_ref().is_some_and(|p| p.variant.is_none()))
        })
        .or(candidates.first())
        .copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desc(arch: &str, d: &str) -> Descriptor {
        Descriptor {
            media_type: OCI_MANIFEST.into(),
            digest: d.into(),
            size: 1,
            annotations: None,
            platform: Some(Platform {
                architecture: arch.into(),
                os: "linux".into(),
                variant: None,
            }),
        }
    }

    #[test]
    fn picks_the_host_platform() {
        let (arch, _) = host_platform();
        let list = vec![desc("s390x", "a"), desc(arch, "b")];
        assert_eq!(pick_platform(&list).unwrap().digest, "b");
        assert!(pick_platform(&[desc("s390x", "a")]).is_none());
    }

    #[test]
    fn kinds_of_documents() {
        let idx: Document = serde_json::from_str(r#"{"schemaVersion":2,"manifests":[]}"#).unwrap();
        assert!(idx.is_index());
        let v1: Document = serde_json::from_str(r#"{"schemaVersion":1}"#).unwrap();
        assert!(v1.is_schema1());
        let m: Document = serde_json::from_str(
            r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"digest":"x"},"layers":[]}"#,
        )
        .unwrap();
        assert!(!m.is_index());
    }
}
