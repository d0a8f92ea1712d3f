//! Names of everything isolation creates, and the route name itself: `isolateAs: "alice"`
//! is checked to be a DNS label (it becomes a label value, a Host prefix and part of object
//! names), and `isolateAs: true` picks `<user>-<4 hex>` as Bridge to Kubernetes did.

use crate::session::cluster::errors::ClusterError;

/// Longest name of a Service (a DNS-1035 label) and of a label value.
pub const MAX_LABEL: usize = 63;
/// Longest name of most other objects (a DNS-1123 subdomain).
pub const MAX_NAME: usize = 253;
/// Longest route name: it must leave room in `<workload>-kbridge-<name>` and in hosts.
pub const MAX_ROUTE_NAME: usize = 30;

/// A route name for `isolateAs: true`: the user name made DNS-label safe, a dash and four
/// random hex digits, e.g. `alice-3f9a`.
pub fn generated_name(user: &str) -> String {
    let suffix = kbridge_agent::handshake::generate_token()
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
        Err(ClusterError::Unsupported(format!(
            "isolateAs '{name}' is not a valid route name: use 1-{MAX_ROUTE_NAME} lowercase letters, digits and '-', starting and ending with a letter or digit (e.g. '{}'), or `isolateAs: true` for a generated one",
            {
                let s = dns_label(name, MAX_ROUTE_NAME);
                if s.is_empty() { "alice".to_string() } else { s }
            }
        )))
    }
}

/// `name` if it fits in `max` characters, else its start and a short hash of the whole,
/// so long names stay unique and valid.
pub fn fit(name: &str, max: usize) -> String {
    if name.len() <= max {
        return name.to_string();
    }
    // FNV-1a: stable across runs and builds, unlike the std hasher.
    let hash = name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    let tag = format!("{:08x}", hash & 0xffff_ffff);
    let head: String = name.chars().take(max - tag.len() - 1).collect();
    format!("{}-{tag}", head.trim_end_matches('-'))
}

/// The session's clone of the workload: `<workload>-kbridge-<name>`.
pub fn clone_name(workload: &str, route_as: &str) -> String {
    fit(&format!("{workload}-kbridge-{route_as}"), MAX_LABEL)
}

/// The shared router Deployment (and its ServiceAccount, Role, RoleBinding):
/// `<svc>-kbridge-router`.
pub fn router_name(service: &str) -> String {
    fit(&format!("{service}-kbridge-router"), MAX_LABEL)
}

/// The Service that selects the original pods while the router fronts the Service:
/// `<svc>-kbridge-origin`.
pub fn origin_name(service: &str) -> String {
    fit(&format!("{service}-kbridge-origin"), MAX_LABEL)
}

/// A session's copy of an Ingress: `<ingress>-kbridge-<name>`.
pub fn ingress_copy_name(ingress: &str, route_as: &str) -> String {
    fit(&format!("{ingress}-kbridge-{route_as}"), MAX_NAME)
}

/// A session id as a label value (at most 63 characters of `A-Za-z0-9-_.`).
pub fn label_value(text: &str) -> String {
    let mapped: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '-'
            }
        })
        .collect();
    let cut = fit(&mapped, MAX_LABEL);
    cut.trim_matches(|c: char| !c.is_ascii_alphanumeric())
        .to_string()
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

    #[test]
    fn object_names_fit_their_limits() {
        assert_eq!(clone_name("todo-api", "alice"), "todo-api-kbridge-alice");
        assert_eq!(router_name("todo-api"), "todo-api-kbridge-router");
        assert_eq!(origin_name("todo-api"), "todo-api-kbridge-origin");
        assert_eq!(ingress_copy_name("web", "bob"), "web-kbridge-bob");
        let long = origin_name(&"s".repeat(63));
        assert!(long.len() <= 63, "{long}");
        assert_ne!(long, origin_name(&format!("{}t", "s".repeat(62))));
        assert_eq!(label_value("1764.59_x/y"), "1764.59_x-y");
        assert!(label_value(&"9".repeat(80)).len() <= 63);
    }
}
