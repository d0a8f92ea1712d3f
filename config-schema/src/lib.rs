//! Typed kbridge configuration.
