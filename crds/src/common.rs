//! Pieces shared by several kinds: name patterns, sizes, rate limits, reusable CEL rules.

use std::sync::LazyLock;

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

/// A Go duration made of hours, minutes and seconds (`2160h`, `1h30m`, `90s`): the syntax the
/// schema checks. Its largest value overflows CEL's duration type (Go's, about 2562047h), so CEL
/// rules convert only what also matches [`DURATION_CEL_SAFE_PATTERN`].
pub const DURATION_PATTERN: &str = r"^([0-9]{1,7}h)?([0-9]{1,7}m)?([0-9]{1,7}s)?$";

/// [`DURATION_PATTERN`] with at most six digits of hours: at most 999999h + 9999999m + 9999999s
/// (about 1169442h), well inside CEL's duration type, so `duration()` never fails on it. A value
/// of the schema's syntax that does not match it has at least 1000000h, more than any maximum
/// here ([`DURATION_MAX`]).
pub const DURATION_CEL_SAFE_PATTERN: &str = r"^([0-9]{1,6}h)?([0-9]{1,7}m)?([0-9]{1,7}s)?$";

/// The longest duration any field accepts unless it says less: 100 years.
pub const DURATION_MAX: &str = "876000h";

/// An absolute HTTP path: `/`, `/api/v1`. The schema checks the characters; the CEL rules
/// `http_path_*` (and [`check_http_path`], the same rules in Rust) refuse what could climb
/// out of a prefix or be read two ways: dot segments, empty segments and percent-encoded ASCII.
pub const HTTP_PATH_PATTERN: &str = r"^/[A-Za-z0-9._~!$&'()*+,;=:@%/-]*$";

/// A path segment made only of dots (`.`, `..`, `...`): dot segments climb out of a prefix, and
/// servers disagree about the longer ones.
const DOT_SEGMENT: &str = "(^|/)[.]+(/|$)";
/// A `%` that does not start the encoding of a non-ASCII byte (`%C3`): an encoded ASCII character
/// (`%2e`, `%2F`, `%5c`, `%25`, `%00`) is read one way by the gateway and another by the upstream,
/// and a stray `%` is not an encoding at all.
const ASCII_PERCENT_ENCODING: &str = "%($|.$|[^89A-Fa-f]|.[^0-9A-Fa-f])";

/// Why a path field is refused, by rule: the messages of the `http_path_*` rules and of
/// [`check_http_path`].
pub const PATH_DOT_SEGMENT_MESSAGE: &str =
    "must not contain '.' or '..' segments: a path cannot climb out of the API's prefix";
/// See [`PATH_DOT_SEGMENT_MESSAGE`].
pub const PATH_EMPTY_SEGMENT_MESSAGE: &str = "must not contain an empty segment (//)";
/// See [`PATH_DOT_SEGMENT_MESSAGE`].
pub const PATH_PERCENT_MESSAGE: &str = "may percent-encode only non-ASCII characters (such as %C3%A1 for á): an encoded ASCII character such as %2e (.), %2f (/), %5c (\\), %25 (%) or %00, or a % not followed by two hex digits, is refused";

/// CEL rule on an HTTP path field (one that has [`HTTP_PATH_PATTERN`]): [`PATH_DOT_SEGMENT_MESSAGE`].
pub fn http_path_no_dot_segments() -> Rule {
    Rule::new(format!("!self.matches('{DOT_SEGMENT}')")).message(PATH_DOT_SEGMENT_MESSAGE)
}

/// CEL rule on an HTTP path field: [`PATH_EMPTY_SEGMENT_MESSAGE`].
pub fn http_path_no_empty_segments() -> Rule {
    Rule::new("!self.contains('//')").message(PATH_EMPTY_SEGMENT_MESSAGE)
}

/// CEL rule on an HTTP path field: [`PATH_PERCENT_MESSAGE`].
pub fn http_path_no_ascii_percent_encoding() -> Rule {
    Rule::new(format!("!self.matches('{ASCII_PERCENT_ENCODING}')")).message(PATH_PERCENT_MESSAGE)
}

/// CEL rule on an absolute `https://` URL field whose path the gateway composes with a
/// request's (a field that refuses `?` and `#`): what follows `https://` passes the `http_path_*`
/// rules. (It reads the string, not `url(self).getEscapedPath()`, whose unbounded length CEL's
/// cost estimate cannot afford.)
pub fn url_path_rule() -> Rule {
    let rest = "self.substring(8)";
    Rule::new(format!(
        "!self.startsWith('https://') || (!{rest}.matches('{DOT_SEGMENT}') && !{rest}.contains('//') && !{rest}.matches('{ASCII_PERCENT_ENCODING}'))"
    ))
    .message("its path must not contain '.' or '..' segments, an empty segment (//) or a percent-encoded ASCII character (%2e, %2f, %5c, %25…): the gateway appends each request's path to it")
}

fn regex(pattern: &str) -> regex::Regex {
    regex::Regex::new(pattern).expect("a constant pattern compiles")
}

/// The rules of the schema and of the `http_path_*` CEL rules in Rust, for whatever composes a path into
/// a URL (the route builder): `Err` says which rule `path` breaks, in the schema's words.
pub fn check_http_path(path: &str) -> Result<(), String> {
    static CHARACTERS: LazyLock<regex::Regex> = LazyLock::new(|| regex(HTTP_PATH_PATTERN));
    static DOTS: LazyLock<regex::Regex> = LazyLock::new(|| regex(DOT_SEGMENT));
    static PERCENT: LazyLock<regex::Regex> = LazyLock::new(|| regex(ASCII_PERCENT_ENCODING));
    if !CHARACTERS.is_match(path) {
        return Err(format!(
            "must be an absolute path of the characters {HTTP_PATH_PATTERN} (no backslash, space or control character)"
        ));
    }
    if DOTS.is_match(path) {
        return Err(PATH_DOT_SEGMENT_MESSAGE.to_owned());
    }
    if path.contains("//") {
        return Err(PATH_EMPTY_SEGMENT_MESSAGE.to_owned());
    }
    if PERCENT.is_match(path) {
        return Err(PATH_PERCENT_MESSAGE.to_owned());
    }
    Ok(())
}

/// Unicode control (Cc) and format (Cf) characters, in RE2 and Rust `regex` syntax alike: zero-width
/// spaces and joiners, bidirectional overrides and isolates (U+202E), the BOM, the soft hyphen.
pub const INVISIBLE_CHARACTER_PATTERN: &str = r"[\p{Cc}\p{Cf}]";

/// The message of [`visible_text`].
pub const VISIBLE_TEXT_MESSAGE: &str = "must not contain control or invisible formatting characters (zero-width spaces and joiners, direction overrides such as U+202E, a byte-order mark, a soft hyphen): they make one name look like another in kubectl; Vietnamese letters and their tone marks are fine";

/// CEL: free text that kubectl shows (a display name, a description) has no Unicode control (Cc)
/// or format (Cf) character. Combining marks (Mn) are neither, so decomposed Vietnamese passes.
pub fn visible_text() -> Rule {
    // A CEL string literal escapes its backslashes.
    let pattern = INVISIBLE_CHARACTER_PATTERN.replace('\\', "\\\\");
    Rule::new(format!("!self.matches('{pattern}')")).message(VISIBLE_TEXT_MESSAGE)
}

/// [`visible_text`] in Rust: the first control or format character and its position (in
/// characters), if any.
pub fn invisible_character(text: &str) -> Option<(usize, char)> {
    static INVISIBLE: LazyLock<regex::Regex> = LazyLock::new(|| regex(INVISIBLE_CHARACTER_PATTERN));
    let found = INVISIBLE.find(text)?;
    let position = text[..found.start()].chars().count();
    text[found.start()..].chars().next().map(|c| (position, c))
}

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
pub const NON_NEGATIVE_QUANTITY_MESSAGE: &str =
    "must be a quantity of at least 0 and below 9E (9×10^18), such as 500m, 2, 512Mi or 4Gi";

/// Message shown when a quantity field holds something that is not a quantity or is not positive.
pub const POSITIVE_QUANTITY_MESSAGE: &str =
    "must be a quantity greater than 0 and below 9E (9×10^18), such as 500m, 2, 512Mi or 4Gi";

/// The bound every quantity stays below. The API server parses a larger quantity (`1e100`) by
/// capping it at 2^63-1, which the operator's exact arithmetic ([`crate::quantity::Amount`]) would
/// then refuse; below this bound the two always agree.
pub const QUANTITY_BOUND: &str = "9e18";

/// CEL: the field (int or string) is a Kubernetes quantity of at least zero.
pub fn non_negative_quantity() -> Rule {
    Rule::new(format!(
        "isQuantity(string(self)) && quantity(string(self)).compareTo(quantity('0')) >= 0 && quantity(string(self)).isLessThan(quantity('{QUANTITY_BOUND}'))"
    ))
    .message(NON_NEGATIVE_QUANTITY_MESSAGE)
}

/// CEL: the field (int or string) is a Kubernetes quantity greater than zero.
pub fn positive_quantity() -> Rule {
    Rule::new(format!(
        "isQuantity(string(self)) && quantity(string(self)).isGreaterThan(quantity('0')) && quantity(string(self)).isLessThan(quantity('{QUANTITY_BOUND}'))"
    ))
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
    // The guard keeps a malformed or huge value to the pattern's or the maximum's message, never
    // a CEL conversion error.
    Rule::new(format!("!self.matches('{DURATION_CEL_SAFE_PATTERN}') || duration(self) >= duration('{min}')"))
        .message(Message::Message(format!("must be a duration of at least {min}, such as 2160h")))
}

/// CEL: the duration `field` (validated by [`DURATION_PATTERN`]) is at most `max` (`human`
/// says it in words). A value with so many hours that CEL could not even convert it is refused
/// by the same sentence, before any conversion.
pub fn duration_at_most(field: &str, max: &str, human: &str) -> Rule {
    Rule::new(format!(
        "!self.matches('{DURATION_PATTERN}') || (self.matches('{DURATION_CEL_SAFE_PATTERN}') && duration(self) <= duration('{max}'))"
    ))
    .message(Message::Message(format!("{field} must be a duration of at most {max} ({human})")))
}

/// CEL: `shorter <= longer`, two duration fields of `self`, compared only once both are
/// convertible (each field's own rules report the others).
pub fn duration_not_longer(shorter: &str, longer: &str) -> String {
    let safe = |field: &str| format!("self.{field}.matches('{DURATION_CEL_SAFE_PATTERN}')");
    format!("!{} || !{} || duration(self.{shorter}) <= duration(self.{longer})", safe(shorter), safe(longer))
}

/// Why a string is not a duration of [`DURATION_PATTERN`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error(
        "{0:?} is not a duration: write hours, minutes and seconds in that order, each at most 7 digits, such as 2160h, 1h30m or 90s (no days, no fractions, no sign)"
    )]
    Syntax(String),
}

/// Parses a duration of [`DURATION_PATTERN`] (`2160h`, `1h30m`, `90s`): exactly what the schema
/// accepts, never a panic or an overflow (the largest, 9999999h9999999m9999999s, fits easily).
pub fn parse_duration(text: &str) -> Result<std::time::Duration, DurationError> {
    let error = || DurationError::Syntax(text.to_owned());
    let mut seconds: u64 = 0;
    let mut rest = text;
    let mut groups = 0;
    for (unit, factor) in [('h', 3600), ('m', 60), ('s', 1)] {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 || rest.as_bytes().get(digits) != Some(&(unit as u8)) {
            continue;
        }
        if digits > 7 {
            return Err(error());
        }
        let n: u64 = rest[..digits].parse().map_err(|_| error())?;
        seconds += n * factor;
        rest = &rest[digits + 1..];
        groups += 1;
    }
    if groups == 0 || !rest.is_empty() {
        return Err(error());
    }
    Ok(std::time::Duration::from_secs(seconds))
}

/// Why a string is not a host name of [`HOST_PATTERN`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostError {
    #[error("{0:?} is longer than 253 characters")]
    TooLong(String),
    #[error("{0:?} must have at least two labels, like portal.quangnam.gov.vn")]
    OneLabel(String),
    #[error("{0:?} has an empty label: labels are separated by single dots, with none at either end")]
    EmptyLabel(String),
    #[error("{0:?} has a label longer than 63 characters")]
    LongLabel(String),
    #[error(
        "{0:?} has {1:?}: only lower-case letters a-z, digits, '-' and '.' are allowed (write a Vietnamese name without its marks, or in punycode, xn--…; no wildcard)"
    )]
    Character(String, char),
    #[error("{0:?} has a label that starts or ends with '-'")]
    Hyphen(String),
}

/// Checks a host name as the schema does ([`HOST_PATTERN`], at most 253 characters), saying what
/// is wrong.
pub fn check_host(host: &str) -> Result<(), HostError> {
    let owned = || host.to_owned();
    if let Some(c) = host.chars().find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-' || *c == '.')) {
        return Err(HostError::Character(owned(), c));
    }
    if host.len() > 253 {
        return Err(HostError::TooLong(owned()));
    }
    let labels: Vec<&str> = host.split('.').collect();
    if labels.iter().any(|l| l.is_empty()) {
        return Err(HostError::EmptyLabel(owned()));
    }
    if labels.len() < 2 {
        return Err(HostError::OneLabel(owned()));
    }
    if labels.iter().any(|l| l.len() > 63) {
        return Err(HostError::LongLabel(owned()));
    }
    if labels.iter().any(|l| l.starts_with('-') || l.ends_with('-')) {
        return Err(HostError::Hyphen(owned()));
    }
    Ok(())
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
    fn durations_parse_exactly_what_the_pattern_accepts() {
        let secs = |s: &str| parse_duration(s).map(|d| d.as_secs());
        assert_eq!(secs("2160h"), Ok(2160 * 3600));
        assert_eq!(secs("1h30m"), Ok(5400));
        assert_eq!(secs("90s"), Ok(90));
        assert_eq!(secs("1h1s"), Ok(3601));
        assert_eq!(secs("9999999h9999999m9999999s"), Ok(9_999_999 * 3661));
        for bad in ["", "h", "1d", "1.5h", "-1h", "30m1h", "1h1h", "12345678h", "1H", " 1h", "1h "] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
            assert!(!matches(DURATION_PATTERN, bad) || bad.is_empty(), "{bad:?}");
        }
        let message = parse_duration("90d").unwrap_err().to_string();
        assert!(message.contains("no days"), "{message}");
    }

    #[test]
    fn cel_never_converts_a_duration_it_cannot_hold() {
        // Go's time.Duration, which CEL's duration is, holds at most 2562047h47m16s.
        const CEL_MAX_SECONDS: u64 = 2_562_047 * 3600;
        let largest_safe = parse_duration("999999h9999999m9999999s").unwrap().as_secs();
        assert!(matches(DURATION_CEL_SAFE_PATTERN, "999999h9999999m9999999s"));
        assert!(largest_safe < CEL_MAX_SECONDS);
        // What the schema accepts but CEL must not convert is longer than any maximum.
        let smallest_unsafe = parse_duration("1000000h").unwrap().as_secs();
        assert!(!matches(DURATION_CEL_SAFE_PATTERN, "1000000h"));
        assert!(smallest_unsafe > parse_duration(DURATION_MAX).unwrap().as_secs());
        assert!(duration_at_most("rootCa", DURATION_MAX, "100 years").rule.starts_with("!self.matches("));
    }

    #[test]
    fn hosts_are_checked_with_a_reason() {
        assert_eq!(check_host("portal.quangnam.gov.vn"), Ok(()));
        assert!(matches!(check_host("localhost"), Err(HostError::OneLabel(_))));
        assert!(matches!(check_host("*.gov.vn"), Err(HostError::Character(_, '*'))));
        assert!(matches!(check_host("đà-nẵng.gov.vn"), Err(HostError::Character(_, 'đ'))));
        assert!(matches!(check_host("a..b"), Err(HostError::EmptyLabel(_))));
        assert!(matches!(check_host("a.b."), Err(HostError::EmptyLabel(_))));
        assert!(matches!(check_host("-a.b"), Err(HostError::Hyphen(_))));
        assert!(matches!(check_host(&format!("{}.vn", "a".repeat(64))), Err(HostError::LongLabel(_))));
    }

    #[test]
    fn unsafe_paths_are_refused_by_rule() {
        for ok in ["/", "/api/v1", "/api/v1/", "/a.b/c..d/...x", "/tra-c%E1%BB%A9u", "/~user/x_y;v=1"] {
            assert_eq!(check_http_path(ok), Ok(()), "{ok}");
        }
        for (bad, says) in [
            ("api", "absolute path"),
            ("/a\\b", "absolute path"),
            ("/a b", "absolute path"),
            ("/a/\u{0}", "absolute path"),
            ("/..", "'.' or '..' segments"),
            ("/a/../b", "'.' or '..' segments"),
            ("/a/./b", "'.' or '..' segments"),
            ("/a/.", "'.' or '..' segments"),
            ("/a/...", "'.' or '..' segments"),
            ("/a//b", "empty segment"),
            ("//", "empty segment"),
            ("/a/%2e%2e/b", "percent-encode only non-ASCII"),
            ("/a/.%2E/b", "percent-encode only non-ASCII"),
            ("/a/%2E./b", "percent-encode only non-ASCII"),
            ("/a%2fb", "percent-encode only non-ASCII"),
            ("/a%2Fb", "percent-encode only non-ASCII"),
            ("/a%5cb", "percent-encode only non-ASCII"),
            ("/a%252e", "percent-encode only non-ASCII"),
            ("/a%00", "percent-encode only non-ASCII"),
            ("/a%", "percent-encode only non-ASCII"),
            ("/a%E", "percent-encode only non-ASCII"),
            ("/a%EG", "percent-encode only non-ASCII"),
        ] {
            let error = check_http_path(bad).expect_err(bad);
            assert!(error.contains(says), "{bad:?}: {error}");
        }
    }

    #[test]
    fn invisible_characters_are_found_and_vietnamese_is_not() {
        for c in ['\u{200B}', '\u{200C}', '\u{200D}', '\u{202E}', '\u{2066}', '\u{FEFF}', '\u{AD}', '\u{7}', '\u{85}'] {
            let text = format!("Sở{c} Nội vụ");
            assert_eq!(invisible_character(&text), Some((2, c)), "U+{:04X}", u32::from(c));
        }
        for ok in [
            "Ủy ban nhân dân thành phố Đà Nẵng",
            "U\u{309}y ban nhân dân tha\u{300}nh phô\u{301} Đa\u{300} Na\u{306}\u{303}ng",
            "Trung tâm Phục vụ hành chính công – Sở Thông tin và Truyền thông",
        ] {
            assert_eq!(invisible_character(ok), None, "{ok}");
        }
        assert!(visible_text().rule.contains(r"[\\p{Cc}\\p{Cf}]"), "{}", visible_text().rule);
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
