//! Image references as `docker pull` reads them: `[REGISTRY/]REPOSITORY[:TAG][@DIGEST]`.

use std::fmt;

/// Why an image reference cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReferenceError {
    /// Empty, or a part is missing.
    #[error("'{0}' is not an image reference (expected [REGISTRY/]REPOSITORY[:TAG], e.g. registry.example.com/kbridge/agent:0.1.0)")]
    Malformed(String),
    /// The repository has characters a registry refuses.
    #[error("'{reference}': the repository '{repository}' may only hold lowercase letters, digits and the separators . _ - /")]
    Repository {
        /// The whole reference.
        reference: String,
        /// The repository part.
        repository: String,
    },
    /// The tag is too long or has characters a registry refuses.
    #[error("'{reference}': the tag '{tag}' may only hold letters, digits, _ . - (at most 128, not starting with . or -)")]
    Tag {
        /// The whole reference.
        reference: String,
        /// The tag part.
        tag: String,
    },
}

/// The host `docker.io` names mean, and the one its API is served from.
const DOCKER_HUB: &str = "docker.io";
const DOCKER_HUB_API: &str = "registry-1.docker.io";

/// A parsed image reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageReference {
    /// The registry as written (`docker.io` when none was), with its port if any.
    pub registry: String,
    /// The repository inside it (`library/` added for Docker Hub's official images).
    pub repository: String,
    /// The tag (`latest` when neither tag nor digest was given).
    pub tag: Option<String>,
    /// The digest (`sha256:…`), when the reference pins one.
    pub digest: Option<String>,
}

impl ImageReference {
    /// Parses `text` as Docker does.
    pub fn parse(text: &str) -> Result<ImageReference, ReferenceError> {
        let malformed = || ReferenceError::Malformed(text.to_string());
        let text = text.trim();
        let (name, digest) = match text.split_once('@') {
            Some((name, digest)) if digest.contains(':') => (name, Some(digest.to_string())),
            Some(_) => return Err(malformed()),
            None => (text, None),
        };
        // A tag is after the last ':' that follows the last '/' (a ':' before it is a port).
        let last_slash = name.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match name[last_slash..].rfind(':') {
            Some(i) => (&name[..last_slash + i], Some(&name[last_slash + i + 1..])),
            None => (name, None),
        };
        let (registry, repository) = split_registry(name);
        if repository.is_empty() || registry.is_empty() {
            return Err(malformed());
        }
        let repository = if registry == DOCKER_HUB && !repository.contains('/') {
            format!("library/{repository}")
        } else {
            repository.to_string()
        };
        if !valid_repository(&repository) {
            return Err(ReferenceError::Repository {
                reference: text.to_string(),
                repository,
            });
        }
        if let Some(tag) = tag.filter(|tag| !valid_tag(tag)) {
            return Err(ReferenceError::Tag {
                reference: text.to_string(),
                tag: tag.to_string(),
            });
        }
        let tag = match (tag, &digest) {
            (Some(tag), _) => Some(tag.to_string()),
            (None, Some(_)) => None,
            (None, None) => Some("latest".to_string()),
        };
        Ok(ImageReference {
            registry: registry.to_string(),
            repository,
            tag,
            digest,
        })
    }

    /// What the manifest is addressed by: the digest when pinned, else the tag.
    pub fn manifest_reference(&self) -> &str {
        self.digest
            .as_deref()
            .or(self.tag.as_deref())
            .unwrap_or("latest")
    }

    /// The host and port the registry's API is served from.
    pub fn api_host(&self) -> &str {
        if self.registry == DOCKER_HUB {
            DOCKER_HUB_API
        } else {
            &self.registry
        }
    }

    /// Whether the registry is on this machine's loopback (spoken to over plain http).
    pub fn is_loopback(&self) -> bool {
        let host = host_of(&self.registry);
        host == "localhost"
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    }
}

impl fmt::Display for ImageReference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

/// `host:port` or `[v6]:port` without the port.
pub fn host_of(authority: &str) -> &str {
    if let Some(rest) = authority.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    authority.split(':').next().unwrap_or(authority)
}

/// Splits off the registry: the first component when it looks like a host (has a `.`
/// or a `:`, or is `localhost`) and more follows, else Docker Hub.
fn split_registry(name: &str) -> (&str, &str) {
    match name.split_once('/') {
        Some((first, rest))
            if first.contains('.') || first.contains(':') || first == "localhost" =>
        {
            (first, rest)
        }
        _ => (DOCKER_HUB, name),
    }
}

fn valid_repository(repository: &str) -> bool {
    repository.split('/').all(|part| {
        !part.is_empty()
            && part.bytes().all(|b| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
            })
            && part.as_bytes()[0].is_ascii_alphanumeric()
    })
}

fn valid_tag(tag: &str) -> bool {
    (1..=128).contains(&tag.len())
        && !tag.starts_with(['.', '-'])
        && tag
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> ImageReference {
        ImageReference::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn registry_port_and_tag() {
        let r = parse("127.0.0.1:5000/kbridge/agent:dev");
        assert_eq!(r.registry, "127.0.0.1:5000");
        assert_eq!(r.repository, "kbridge/agent");
        assert_eq!(r.tag.as_deref(), Some("dev"));
        assert!(r.is_loopback());
        assert_eq!(r.to_string(), "127.0.0.1:5000/kbridge/agent:dev");
    }

    #[test]
    fn docker_hub_names() {
        let r = parse("busybox");
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str()),
            ("docker.io", "library/busybox")
        );
        assert_eq!(r.tag.as_deref(), Some("latest"));
        assert_eq!(r.api_host(), "registry-1.docker.io");
        let r = parse("kbridge/agent:0.1.0");
        assert_eq!(r.repository, "kbridge/agent");
        assert!(!r.is_loopback());
    }

    #[test]
    fn port_without_tag_and_digests() {
        let r = parse("localhost:5000/agent");
        assert_eq!(r.registry, "localhost:5000");
        assert_eq!(r.tag.as_deref(), Some("latest"));
        let r = parse("ghcr.io/kbridge/agent@sha256:abcd");
        assert_eq!(r.tag, None);
        assert_eq!(r.manifest_reference(), "sha256:abcd");
        let r = parse("[::1]:5000/agent:v1");
        assert!(r.is_loopback());
    }

    #[test]
    fn refuses_what_a_registry_would() {
        for bad in [
            "",
            "ghcr.io/",
            "ghcr.io/Kbridge/agent",
            "agent:-x",
            "agent@nodigest",
        ] {
            assert!(ImageReference::parse(bad).is_err(), "{bad}");
        }
    }
}
