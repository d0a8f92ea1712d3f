//! Pushing a built [`Image`] to a registry: the blobs it does not have yet, then the
//! manifest under the reference's tag, with a progress line for each step.

use super::agent_image::{self, Blob, Image};
use super::reference::ImageReference;
use super::registry::{Access, Patience, Registry, RegistryError};
use std::time::Instant;

/// Pushes `image` as `reference` (which must carry a tag); returns the manifest's
/// digest. `report` gets the progress lines.
pub async fn push(
    image: &Image,
    reference: &ImageReference,
    insecure: bool,
    report: fn(&str),
) -> Result<String, RegistryError> {
    let mut registry = connect(reference, insecure, report).await?;
    push_blobs(&mut registry, image, report).await?;
    let tag = reference.tag.as_deref().unwrap_or("latest");
    put_manifest(&mut registry, tag, &image.manifest, report).await
}

/// Pushes each of `images` (one per platform) by digest, then the index naming them all
/// under the reference's tag; returns the index's digest.
pub async fn push_multi_platform(
    images: &[Image],
    reference: &ImageReference,
    insecure: bool,
    report: fn(&str),
) -> Result<String, RegistryError> {
    let mut registry = connect(reference, insecure, report).await?;
    for image in images {
        push_blobs(&mut registry, image, report).await?;
        let digest = &image.manifest.digest;
        put_manifest(&mut registry, digest, &image.manifest, report).await?;
        report(&format!(
            "manifest {} (linux/{}): pushed",
            short(digest),
            image.architecture.oci_name()
        ));
    }
    let tag = reference.tag.as_deref().unwrap_or("latest");
    put_manifest(&mut registry, tag, &agent_image::index(images), report).await
}

/// The registry of `reference`, answering.
async fn connect(
    reference: &ImageReference,
    insecure: bool,
    report: fn(&str),
) -> Result<Registry, RegistryError> {
    let mut registry = Registry::new(reference, insecure, Access::Push, Patience::PUSH, report);
    report(&format!(
        "registry {} ({})",
        reference.registry,
        registry.base_url()
    ));
    registry.ping().await?;
    Ok(registry)
}

/// Uploads the image's layer and config, unless the registry has them already.
async fn push_blobs(
    registry: &mut Registry,
    image: &Image,
    report: fn(&str),
) -> Result<(), RegistryError> {
    for (what, blob) in [("layer", &image.layer), ("config", &image.config)] {
        let size = human_size(blob.bytes.len());
        let digest = short(&blob.digest);
        if registry.blob_exists(&blob.digest).await? {
            report(&format!(
                "{what} {digest} ({size}): already in the registry"
            ));
            continue;
        }
        report(&format!("{what} {digest} ({size}): uploading"));
        let started = Instant::now();
        registry
            .upload_blob(&blob.digest, blob.bytes.clone())
            .await?;
        report(&format!(
            "{what} {digest} ({size}): uploaded in {:.1}s",
            started.elapsed().as_secs_f64()
        ));
    }
    Ok(())
}

/// `PUT`s `manifest` (an image manifest or an index) under `reference` (a tag or its own
/// digest); returns the digest the registry serves it by.
async fn put_manifest(
    registry: &mut Registry,
    reference: &str,
    manifest: &Blob,
    report: fn(&str),
) -> Result<String, RegistryError> {
    let given = registry
        .put_manifest(reference, manifest.media_type, manifest.bytes.clone())
        .await?;
    if let Some(given) = given.filter(|d| *d != manifest.digest) {
        // A registry that rewrote the manifest: it still serves the reference.
        report(&format!(
            "note: the registry stored the manifest as {given} (sent {})",
            manifest.digest
        ));
        return Ok(given);
    }
    Ok(manifest.digest.clone())
}

/// Whether `reference` resolves in its registry (a `HEAD` of its manifest with the
/// user's credentials): its digest, or `None` when the registry does not have it.
pub async fn resolve(
    reference: &ImageReference,
    insecure: bool,
) -> Result<Option<String>, RegistryError> {
    Registry::new(reference, insecure, Access::Pull, Patience::CHECK, |_| {})
        .manifest_digest()
        .await
}

/// `sha256:0123456789ab` (the first 12 hex digits, as `docker` shows them).
fn short(digest: &str) -> &str {
    digest.get(..19).unwrap_or(digest)
}

/// 1.5 MiB, 312 B.
fn human_size(bytes: usize) -> String {
    const MIB: f64 = 1024.0 * 1024.0;
    match bytes {
        0..1024 => format!("{bytes} B"),
        1024..1_048_576 => format!("{:.1} KiB", bytes as f64 / 1024.0),
        _ => format!("{:.1} MiB", bytes as f64 / MIB),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_digests_for_people() {
        assert_eq!(human_size(312), "312 B");
        assert_eq!(human_size(2048), "2.0 KiB");
        assert_eq!(human_size(5 * 1024 * 1024 + 1024 * 512), "5.5 MiB");
        assert_eq!(short("sha256:0123456789abcdef0123"), "sha256:0123456789ab");
        assert_eq!(short("odd"), "odd");
    }
}
