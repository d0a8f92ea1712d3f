//! The agent image, built in memory exactly as `agent/Dockerfile` describes it: one layer
//! holding the static `kbridge-agent` at `/kbridge-agent` on an empty base, run as a
//! non-root user, entrypoint `/kbridge-agent serve`. A unit test below reads the
//! Dockerfile and checks the two agree.
//!
//! The image is reproducible: the same binary gives the same digests (file times and
//! owners in the layer are fixed, the gzip header carries no time, the config no date).

use super::elf::{self, Architecture, ElfError};
use bytes::Bytes;
use serde_json::json;
use sha2::{Digest, Sha256};
use std::io::Write;

/// Where the binary sits in the image (the Dockerfile's `COPY kbridge-agent /kbridge-agent`).
pub const AGENT_PATH: &str = "/kbridge-agent";
/// The user it runs as (the Dockerfile's `USER`).
pub const USER: &str = "65532:65532";
/// The Dockerfile's `ENTRYPOINT`.
pub const ENTRYPOINT: [&str; 1] = [AGENT_PATH];
/// The Dockerfile's `CMD`.
pub const CMD: [&str; 1] = ["serve"];
/// The Dockerfile's `EXPOSE`: the control (session) port and the health port.
pub const EXPOSED_PORTS: [&str; 2] = ["7311/tcp", "7312/tcp"];

/// Media type of an OCI image manifest.
pub const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
/// Media type of an OCI image config.
pub const CONFIG_MEDIA_TYPE: &str = "application/vnd.oci.image.config.v1+json";
/// Media type of a gzip-compressed layer.
pub const LAYER_MEDIA_TYPE: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// Media type of an OCI image index (one manifest per platform).
pub const INDEX_MEDIA_TYPE: &str = "application/vnd.oci.image.index.v1+json";

/// Why the image cannot be built from a binary.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The binary would not run on an empty base.
    #[error(transparent)]
    NotStatic(#[from] ElfError),
    /// Writing the layer's tar or gzip stream failed.
    #[error("cannot write the image layer: {0}")]
    Layer(std::io::Error),
}

/// Content addressed by its digest, as a registry stores it.
#[derive(Debug, Clone)]
pub struct Blob {
    /// Its media type.
    pub media_type: &'static str,
    /// `sha256:<hex>` of the bytes.
    pub digest: String,
    /// The content.
    pub bytes: Bytes,
}

impl Blob {
    fn new(media_type: &'static str, bytes: Vec<u8>) -> Blob {
        Blob {
            media_type,
            digest: sha256_digest(&bytes),
            bytes: Bytes::from(bytes),
        }
    }

    /// Its OCI descriptor (media type, digest, size).
    fn descriptor(&self) -> serde_json::Value {
        json!({"mediaType": self.media_type, "digest": self.digest, "size": self.bytes.len()})
    }
}

/// A single-platform image: its layer, config and manifest.
#[derive(Debug, Clone)]
pub struct Image {
    /// The platform the binary runs on.
    pub architecture: Architecture,
    /// The one layer (gzip-compressed tar).
    pub layer: Blob,
    /// The image config.
    pub config: Blob,
    /// The manifest naming both.
    pub manifest: Blob,
}

/// Builds the agent image around `binary` (the bytes of a static `kbridge-agent`).
pub fn build(binary: &[u8]) -> Result<Image, BuildError> {
    let architecture = elf::static_executable(binary)?;
    let tar = layer_tar(binary).map_err(BuildError::Layer)?;
    let diff_id = sha256_digest(&tar);
    let layer = Blob::new(LAYER_MEDIA_TYPE, gzip(&tar).map_err(BuildError::Layer)?);
    let config = Blob::new(CONFIG_MEDIA_TYPE, config_json(architecture, &diff_id));
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "config": config.descriptor(),
        "layers": [layer.descriptor()],
    });
    let manifest = Blob::new(MANIFEST_MEDIA_TYPE, manifest.to_string().into_bytes());
    Ok(Image {
        architecture,
        layer,
        config,
        manifest,
    })
}

/// The image index naming each of `images` with its platform (`linux/amd64`,
/// `linux/arm64`): what a multi-arch tag points at, so each node pulls its own.
pub fn index(images: &[Image]) -> Blob {
    let manifests: Vec<serde_json::Value> = images
        .iter()
        .map(|image| {
            let mut descriptor = image.manifest.descriptor();
            descriptor["platform"] =
                json!({"architecture": image.architecture.oci_name(), "os": "linux"});
            descriptor
        })
        .collect();
    let index = json!({
        "schemaVersion": 2,
        "mediaType": INDEX_MEDIA_TYPE,
        "manifests": manifests,
    });
    Blob::new(INDEX_MEDIA_TYPE, index.to_string().into_bytes())
}

/// `sha256:<hex>` of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    let hash = Sha256::digest(bytes);
    let mut text = String::with_capacity(7 + 64);
    text.push_str("sha256:");
    for byte in hash {
        text.push_str(&format!("{byte:02x}"));
    }
    text
}

/// The layer: the binary at [`AGENT_PATH`], root-owned, mode 0755, time 0.
fn layer_tar(binary: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut header = tar::Header::new_ustar();
    header.set_size(binary.len() as u64);
    header.set_mode(0o755);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    header.set_entry_type(tar::EntryType::Regular);
    let mut builder = tar::Builder::new(Vec::new());
    builder.append_data(&mut header, AGENT_PATH.trim_start_matches('/'), binary)?;
    builder.into_inner()
}

fn gzip(bytes: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut encoder = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes)?;
    encoder.finish()
}

fn config_json(architecture: Architecture, diff_id: &str) -> Vec<u8> {
    let exposed: serde_json::Map<String, serde_json::Value> = EXPOSED_PORTS
        .iter()
        .map(|port| (port.to_string(), json!({})))
        .collect();
    json!({
        "architecture": architecture.oci_name(),
        "os": "linux",
        "config": {
            "User": USER,
            "ExposedPorts": exposed,
            "Entrypoint": ENTRYPOINT,
            "Cmd": CMD,
        },
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created_by": "kbridge agent push: COPY kbridge-agent /kbridge-agent"}],
    })
    .to_string()
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A static x86_64 ELF header with no program headers: enough for the checks.
    fn fake_static_binary() -> Vec<u8> {
        let mut bytes = vec![0u8; 4096];
        bytes[..4].copy_from_slice(b"\x7fELF");
        bytes[4] = 2;
        bytes[5] = 1;
        bytes[18..20].copy_from_slice(&62u16.to_le_bytes());
        bytes
    }

    #[test]
    fn the_layer_holds_the_binary_where_the_entrypoint_looks() {
        let binary = fake_static_binary();
        let image = build(&binary).expect("build");
        let tar = {
            let mut out = Vec::new();
            std::io::copy(
                &mut flate2::read::GzDecoder::new(&image.layer.bytes[..]),
                &mut out,
            )
            .expect("gunzip");
            out
        };
        let mut archive = tar::Archive::new(&tar[..]);
        let mut entries = archive.entries().expect("entries");
        let mut entry = entries.next().expect("one entry").expect("entry");
        assert_eq!(
            entry.path().expect("path").to_string_lossy(),
            "kbridge-agent"
        );
        assert_eq!(entry.header().mode().expect("mode"), 0o755);
        let mut content = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut content).expect("read");
        assert_eq!(content, binary);
        drop(entry);
        assert!(entries.next().is_none(), "only the binary");

        let config: serde_json::Value =
            serde_json::from_slice(&image.config.bytes).expect("config json");
        assert_eq!(config["rootfs"]["diff_ids"][0], sha256_digest(&tar));
        assert_eq!(config["architecture"], "amd64");
        let manifest: serde_json::Value =
            serde_json::from_slice(&image.manifest.bytes).expect("manifest json");
        assert_eq!(manifest["config"]["digest"], image.config.digest);
        assert_eq!(manifest["layers"][0]["digest"], image.layer.digest);
        assert_eq!(manifest["layers"][0]["size"], image.layer.bytes.len());
    }

    #[test]
    fn the_same_binary_gives_the_same_image() {
        let binary = fake_static_binary();
        let (a, b) = (build(&binary).expect("a"), build(&binary).expect("b"));
        assert_eq!(a.manifest.digest, b.manifest.digest);
    }

    #[test]
    fn a_dynamic_binary_is_refused() {
        let me = std::fs::read(std::env::current_exe().expect("exe")).expect("read");
        if let Err(error) = elf::static_executable(&me) {
            assert!(
                matches!(build(&me), Err(BuildError::NotStatic(_))),
                "{error}"
            );
        }
    }

    /// The image matches agent/Dockerfile: user, entrypoint, command, ports, path.
    #[test]
    fn matches_the_dockerfile() {
        let dockerfile =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../agent/Dockerfile");
        let text = std::fs::read_to_string(&dockerfile).expect("agent/Dockerfile");
        let instruction = |name: &str| {
            text.lines()
                .find_map(|line| line.strip_prefix(&format!("{name} ")))
                .map(str::trim)
                .unwrap_or_else(|| panic!("no {name} in agent/Dockerfile"))
                .to_string()
        };
        assert_eq!(instruction("FROM"), "scratch");
        assert_eq!(instruction("USER"), USER);
        assert_eq!(instruction("COPY"), format!("kbridge-agent {AGENT_PATH}"));
        let exec_form = |values: &[&str]| serde_json::to_string(values).expect("json");
        assert_eq!(instruction("ENTRYPOINT"), exec_form(&ENTRYPOINT));
        assert_eq!(instruction("CMD"), exec_form(&CMD));
        let ports: Vec<String> = EXPOSED_PORTS
            .iter()
            .map(|p| p.trim_end_matches("/tcp").to_string())
            .collect();
        assert_eq!(instruction("EXPOSE"), ports.join(" "));
    }
}
