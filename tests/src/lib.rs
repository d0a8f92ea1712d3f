//! Shared helpers for kbridge's end-to-end tests.
