//! Names of everything isolation creates, and the route name itself: `isolateAs: "alice"`
//! is checked to be a DNS label (it becomes a label value, a Host prefix and part of object
//! names), and `isolateAs: true` picks `<user>-<4 hex>` as Bridge to Kubernetes did.

use crate::session::cluster::errors::ClusterError;

/// Object names are shared with the in-cluster restorer, so they are the cluster contract's.
pub use kbridge_protocol::contract::isolation_record::{
    clone_name, fit, ingress_copy_name, label_value, origin_name, router_name, MAX_LABEL, MAX_NAME,
};
/// Longest route name: it must leave room in `<workload>-kbridge-<name>` and in hosts.
pub const MAX_ROUTE_NAME: usize = 30;

/// A route name for `isolateAs: true`: the user name made DNS-label safe, a dash and four
/// random hex digits, e.g. `alice-3f9a`.
pub fn generated_name(user: &str) -> String {
    let suffix = kbridge_protocol::handshake::generate_token()
        .map(|t| t.chars().take(4).collect::<String>())
        .unwrap_or_else(|_| {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or(0);
            format!("{:04x}", (nanos ^ std::process::id()) & 0xffff)
        });
    let base = dns_label(user, MAX_ROUTE_NAME - 5);
    let base = if base.is_empty() {
        "user".to_string()
    } else {
        base
    };
    format!("{base}-{suffix}")
}

/// `text` lowercased, every run of other characters turned into one `-`, trimmed of dashes
/// at both ends and cut to `max` characters.
pub fn dns_label(text: &str, max: usize) -> String {
    let mut out = String::new();
    for c in text.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    let cut: String = out.trim_matches('-').chars().take(max).collect();
    cut.trim_end_matches('-').to_string()
}

/// Checks a route name (`isolateAs`): 1–30 characters of `a-z`, `0-9` and `-`, starting
/// and ending with a letter or digit.
pub fn check_route_name(name: &str) -> Result<(), ClusterError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_ROUTE_NAME
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(ClusterError::InvalidSetting(format!(
            "isolateAs '{name}' is not a valid route name: use 1-{MAX_ROUTE_NAME} lowercase letters, digits and '-', starting and ending with a letter or digit (e.g. '{}'), or `isolateAs: true` for a generated one",
            {
                let s = dns_label(name, MAX_ROUTE_NAME);
                if s.is_empty() { "alice".to_string() } else { s }
            }
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_names_are_user_dash_four_hex() {
        let name = generated_name("Alice.Smith@CORP");
        let (user, hex) = name.rsplit_once('-').expect("dash");
        assert_eq!(user, "alice-smith-corp");
        assert_eq!(hex.len(), 4);
        assert!(hex
            .chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert!(check_route_name(&name).is_ok(), "{name}");
        let odd = generated_name("___");
        assert!(odd.starts_with("user-"), "{odd}");
        let long = generated_name(&"x".repeat(100));
        assert!(check_route_name(&long).is_ok(), "{long}");
        assert_ne!(
            generated_name("bob"),
            generated_name("bob"),
            "random suffix"
        );
    }

    #[test]
    fn route_names_are_checked() {
        for good in ["alice", "bob-2", "a1"] {
            assert!(check_route_name(good).is_ok(), "{good}");
        }
        for bad in ["", "Alice", "-a", "a-", "a.b", "a_b", &"a".repeat(31)] {
            let err = check_route_name(bad).expect_err(bad);
            assert!(err.to_string().contains("isolateAs"), "{err}");
        }
    }
}
