//! The one error type of this crate: a configuration that cannot be used, and why.

/// A launch configuration or config file that cannot be used as written.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A key holds a value of the wrong shape or an unknown key is present.
    #[error("invalid launch configuration: `{path}`: {message}")]
    Invalid {
        /// Dotted path of the key, e.g. `bridge.ports[0].local`.
        path: String,
        /// What is wrong and what is allowed.
        message: String,
    },
    /// `KubernetesLocalProcessConfig.yaml` (or another config file) is not usable.
    #[error("{file}: line {line}: {message}")]
    File {
        /// The file, as named by the user.
        file: String,
        /// 1-based line of the problem (0 when unknown).
        line: usize,
        /// What is wrong, naming the key.
        message: String,
    },
    /// A `kbridge dap` target flag holds a value of the wrong shape.
    #[error("invalid `kbridge dap` flag `{flag}`: {message}")]
    Flag {
        /// The flag, e.g. `--ports`.
        flag: String,
        /// What is wrong and what is allowed.
        message: String,
    },
    /// Keys that are valid one by one but not together.
    #[error("invalid launch configuration: {0}")]
    Conflict(String),
}

impl ConfigError {
    /// Builds an [`ConfigError::Invalid`] for `path`.
    pub fn invalid(path: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError::Invalid {
            path: path.into(),
            message: message.into(),
        }
    }
}
