//! Pieces shared by several kinds: name patterns, sizes, rate limits, reusable CEL rules.

use kube::core::{Message, Reason, Rule};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A DNS label (RFC 1123): what Kubernetes accepts as a namespace or Service name.
pub const DNS_LABEL_PATTERN: &str = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$";

/// A fully qualified host name of at least two labels, lower case, no wildcard, no trailing dot.
pub const HOST_PATTERN: &str = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?(\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)+$";

/// A DNS subdomain (RFC 1123): what Kubernetes accepts as most object names.
pub const DNS_SUBDOMAIN_PATTERN: &str = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?(\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)*$";

/// A container image reference: `[registry[:port]/]path[:tag][@sha256:digest]`.
pub const IMAGE_PATTERN: &str = r"^[a-z0-9]+([._-][a-z0-9]+)*(:[0-9]{1,5})?(/[a-z0-9]+([._-][a-z0-9]+)*)*(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(@sha256:[a-f0-9]{64})?$";

/// A Go duration made of hours, minutes and seconds (`2160h`, `1h30m`, `90s`).
pub const DURATION_PATTERN: &str = r"^([0-9]{1,7}h)?([0-9]{1,7}m)?([0-9]{1,7}s)?$";

/// An absolute HTTP path: `/`, `/api/v1`.
pub const HTTP_PATH_PATTERN: &str = r"^/[A-Za-z0-9._~!$&'()*+,;=:@%/-]*$";

/// How much CPU and memory one replica of a service gets: a preset from the Platform's `sizes`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Size {
    /// The Platform's `sizes.small` (default).
    #[default]
    Small,
    /// The Platform's `sizes.medium`.
    Medium,
    /// The Platform's `sizes.large`.
    Large,
}

/// A token-bucket rate limit, applied per consumer.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RateLimit {
    /// Requests a minute a consumer may make on average.
    #[schemars(range(min = 1, max = 1_000_000))]
    pub requests_per_minute: i32,
    /// Requests a consumer may make at once above the average before it is throttled.
    #[serde(default = "default_burst")]
    #[schemars(range(min = 1, max = 100_000))]
    pub burst: i32,
}

fn default_burst() -> i32 {
    20
}

impl Default for RateLimit {
    fn default() -> Self {
        Self { requests_per_minute: 600, burst: default_burst() }
    }
}

/// Message shown when a quantity field holds something that is not a quantity or is negative.
pub const NON_NEGATIVE_QUANTITY_MESSAGE: &str = "must be a quantity of at least 0, such as 500m, 2, 512Mi or 4Gi";

/// Message shown when a quantity field holds something that is not a quantity or is not positive.
pub const POSITIVE_QUANTITY_MESSAGE: &str = "must be a quantity greater than 0, such as 500m, 2, 512Mi or 4Gi";

/// CEL: the field (int or string) is a Kubernetes quantity of at least zero.
pub fn non_negative_quantity() -> Rule {
    Rule::new("isQuantity(string(self)) && quantity(string(self)).compareTo(quantity('0')) >= 0")
        .message(NON_NEGATIVE_QUANTITY_MESSAGE)
}

/// CEL: the field (int or string) is a Kubernetes quantity greater than zero.
pub fn positive_quantity() -> Rule {
    Rule::new("isQuantity(string(self)) && quantity(string(self)).isGreaterThan(quantity('0'))")
        .message(POSITIVE_QUANTITY_MESSAGE)
}

/// CEL: the field keeps the value it was created with.
pub fn immutable(what: &str) -> Rule {
    Rule::new("self == oldSelf")
        .message(Message::Message(format!("{what} is immutable once set")))
        .reason(Reason::FieldValueForbidden)
}

/// CEL: the duration (validated by [`DURATION_PATTERN`]) is at least `min`.
pub fn duration_at_least(min: &str) -> Rule {
    // The pattern guard keeps a malformed value to the pattern's message, not a CEL runtime error.
    Rule::new(format!("!self.matches('{DURATION_PATTERN}') || duration(self) >= duration('{min}')"))
        .message(Message::Message(format!("must be a duration of at least {min}, such as 2160h")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(pattern: &str, s: &str) -> bool {
        regex::Regex::new(pattern).unwrap().is_match(s)
    }

    #[test]
    fn hosts() {
        for ok in ["portal.quangnam.gov.vn", "a.b", "x-1.so-noi-vu.quangnam.gov.vn"] {
            assert!(matches(HOST_PATTERN, ok), "{ok}");
        }
        for bad in [
            "localhost",
            "Portal.gov.vn",
            "*.gov.vn",
            "a..b",
            "-a.b",
            "a-.b",
            "a.b.",
            "đà-nẵng.gov.vn",
            &format!("{}.vn", "a".repeat(64)),
        ] {
            assert!(!matches(HOST_PATTERN, bad), "{bad}");
        }
    }

    #[test]
    fn images() {
        for ok in [
            "nginx",
            "ghcr.io/govpaas/portal:0.1.0",
            "registry.local:5000/a/b:v1",
            "ghcr.io/govpaas/portal@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        ] {
            assert!(matches(IMAGE_PATTERN, ok), "{ok}");
        }
        for bad in ["", "UPPER/case", "a b", "repo:", "repo:tag with space"] {
            assert!(!matches(IMAGE_PATTERN, bad), "{bad}");
        }
    }

    #[test]
    fn durations() {
        for ok in ["2160h", "1h30m", "90s", "5m"] {
            assert!(matches(DURATION_PATTERN, ok), "{ok}");
        }
        for bad in ["1d", "1y", "-1h", "1.5h", "h"] {
            assert!(!matches(DURATION_PATTERN, bad), "{bad}");
        }
    }

    #[test]
    fn labels_and_paths() {
        assert!(matches(DNS_LABEL_PATTERN, "so-noi-vu"));
        assert!(!matches(DNS_LABEL_PATTERN, "so.noi.vu"));
        assert!(!matches(DNS_LABEL_PATTERN, &"a".repeat(64)));
        assert!(matches(HTTP_PATH_PATTERN, "/api/v1/ho-tich"));
        assert!(!matches(HTTP_PATH_PATTERN, "api"));
        assert!(!matches(HTTP_PATH_PATTERN, "/a b"));
    }
}
