//! The kbridge agent and its wire protocol.
