//! `kbridge agent push IMAGE`: the agent image built in-process from a static
//! `kbridge-agent` and pushed through the registry API (see docs/agent-image.md).

use kbridge::cli::AgentPushArgs;
use kbridge::image::agent_image::{self, BuildError, Image};
use kbridge::image::elf::ElfError;
use kbridge::image::push;
use kbridge::image::reference::{ImageReference, ReferenceError};
use kbridge::image::registry::RegistryError;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// How to get a static agent, for the errors that need one.
const BUILD_HINT: &str = "Build a static agent with `agent/build-static.sh` in a kbridge checkout \
(it runs `RUSTFLAGS='-C target-feature=+crt-static' cargo build --release -p kbridge-agent \
--target x86_64-unknown-linux-gnu`; `--target x86_64-unknown-linux-musl` works too) and pass it \
with --agent-binary PATH";

/// Why `kbridge agent push` failed.
#[derive(Debug, thiserror::Error)]
pub enum AgentPushError {
    /// IMAGE is not an image reference.
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    /// IMAGE pins a digest: a push needs a tag.
    #[error("'{0}' names a digest; push to a tag (REGISTRY/REPOSITORY:TAG) and the registry gives the digest")]
    Digest(String),
    /// No binary given and none next to kbridge.
    #[error("no kbridge-agent next to kbridge in {dir}. {BUILD_HINT}")]
    NotFound {
        /// The directory looked in.
        dir: PathBuf,
    },
    /// The binary cannot be read.
    #[error("cannot read the agent binary {path}: {error}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        error: std::io::Error,
    },
    /// The binary would not run on an empty base.
    #[error("{path} cannot go into the agent image: {problem}. {BUILD_HINT}")]
    NotStatic {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        problem: ElfError,
    },
    /// Two binaries for one platform: which one should the index name?
    #[error("{first} and {second} are both linux/{architecture} agents; give one --agent-binary per platform")]
    SamePlatform {
        /// The platform.
        architecture: &'static str,
        /// The first binary.
        first: PathBuf,
        /// The second.
        second: PathBuf,
    },
    /// Writing the layer failed.
    #[error("cannot build the image layer: {0}")]
    Layer(std::io::Error),
    /// The registry said no, or could not be reached.
    #[error(transparent)]
    Registry(#[from] RegistryError),
}

/// Builds and pushes; prints progress on stderr and the pushed reference on stdout.
pub async fn run(args: &AgentPushArgs) -> Result<ExitCode, AgentPushError> {
    let reference = ImageReference::parse(&args.image)?;
    if reference.tag.is_none() {
        return Err(AgentPushError::Digest(args.image.clone()));
    }
    let paths = match args.agent_binary.as_slice() {
        [] => vec![next_to_kbridge()?],
        given => given.to_vec(),
    };
    let mut images: Vec<(PathBuf, Image)> = Vec::new();
    for path in paths {
        let image = build_image(&path)?;
        if let Some((first, _)) = images
            .iter()
            .find(|(_, built)| built.architecture == image.architecture)
        {
            return Err(AgentPushError::SamePlatform {
                architecture: image.architecture.oci_name(),
                first: first.clone(),
                second: path,
            });
        }
        progress(&format!(
            "agent {} (static, linux/{}): image {}",
            path.display(),
            image.architecture.oci_name(),
            image.manifest.digest
        ));
        images.push((path, image));
    }
    let images: Vec<Image> = images.into_iter().map(|(_, image)| image).collect();
    let digest = match images.as_slice() {
        [image] => push::push(image, &reference, args.insecure, progress).await?,
        several => push::push_multi_platform(several, &reference, args.insecure, progress).await?,
    };
    println!("pushed {reference}@{digest}");
    println!(
        "use it with --agent-image {reference}, KBRIDGE_AGENT_IMAGE={reference}, or \"bridge\": {{\"agentImage\": \"{reference}\"}}"
    );
    Ok(ExitCode::SUCCESS)
}

/// The agent image around the static binary at `path`.
fn build_image(path: &Path) -> Result<Image, AgentPushError> {
    let binary = std::fs::read(path).map_err(|error| AgentPushError::Read {
        path: path.to_path_buf(),
        error,
    })?;
    agent_image::build(&binary).map_err(|error| match error {
        BuildError::NotStatic(problem) => AgentPushError::NotStatic {
            path: path.to_path_buf(),
            problem,
        },
        BuildError::Layer(error) => AgentPushError::Layer(error),
    })
}

/// `kbridge-agent` in the directory of the running kbridge.
fn next_to_kbridge() -> Result<PathBuf, AgentPushError> {
    let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("kbridge"));
    let dir = exe.parent().unwrap_or(Path::new(".")).to_path_buf();
    let candidate = dir.join("kbridge-agent");
    if candidate.is_file() {
        Ok(candidate)
    } else {
        Err(AgentPushError::NotFound { dir })
    }
}

fn progress(line: &str) {
    eprintln!("kbridge: {line}");
}
