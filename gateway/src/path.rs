//! The one canonical form of a request path: what the gateway authorises is exactly what the
//! provider receives.
//!
//! Providers decode and normalise paths themselves (nginx merges and resolves `%2F`-free dot
//! segments, Tomcat drops `;` parameters before `..`, IIS treats `\` as `/`, some servers decode
//! twice). A path whose meaning can change under any of those is refused rather than
//! "repaired", so the provider can never route a request somewhere the gateway did not check.
//!
//! [`canonicalise`] follows RFC 3986 §6.2.2:
//! - percent-encodings of unreserved characters (`A-Z a-z 0-9 - _ ~`) are decoded, all others are
//!   kept with upper-case hex digits;
//! - characters that may not appear raw in a path (non-ASCII, space, `"`, `<`…) are encoded;
//! - dot segments are *refused*, not removed (RFC 3986 §5.2.4 would let `/a/api/../b` address
//!   another API than its prefix says).
//!
//! Refused, whatever the provider would make of them:
//! - an encoded `/` (`%2F`), `\` (`%5C`) or `.` (`%2E`), and a raw `\`;
//! - `.` and `..` segments, also with `;parameters` (`..;x`, which Tomcat reads as `..`), and
//!   segments of dots and spaces only (`...`, `.. `: Windows servers trim trailing dots and spaces);
//! - percent-encodings that do not decode to valid UTF-8 (`%C0%AE`, an overlong `.` that old
//!   decoders turned into a dot);
//! - control characters and NUL, raw or encoded;
//! - an encoded `%` followed by two hex digits (`%252F`: a second decoding would make `%2F`);
//! - a malformed percent-encoding (`%`, `%G1`).

use std::fmt::Write;

/// Why a path was refused; the message is the detail of the 400 answer.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("the path must start with '/'")]
    NotAbsolute,
    #[error("malformed percent-encoding at byte {0}")]
    MalformedEncoding(usize),
    #[error("an encoded '{0}' (%{1:02X}) could change the path's meaning once decoded")]
    EncodedDelimiter(char, u8),
    #[error("a backslash could be read as '/' by the provider")]
    Backslash,
    #[error("control characters are not allowed in a path")]
    ControlCharacter,
    #[error("'.' and '..' path segments are not allowed")]
    DotSegment,
    #[error("a double percent-encoding (%25{0}) could change the path's meaning once decoded twice")]
    DoubleEncoding(String),
    #[error("the path is not valid UTF-8 once percent-decoded (an overlong or broken encoding)")]
    InvalidUtf8,
}

fn is_unreserved(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~')
}

/// Characters RFC 3986 allows raw in a path (`pchar` and `/`), besides `%`.
fn is_path_char(byte: u8) -> bool {
    is_unreserved(byte)
        || matches!(
            byte,
            b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'=' | b':' | b'@' | b'/'
        )
}

fn hex_value(byte: u8) -> Option<u8> {
    (byte as char).to_digit(16).map(|d| d as u8)
}

/// The canonical form of `path` (no query string), or why it is refused. Idempotent:
/// `canonicalise(canonicalise(p)?) == canonicalise(p)`.
pub fn canonicalise(path: &str) -> Result<String, PathError> {
    let bytes = path.as_bytes();
    if bytes.first() != Some(&b'/') {
        return Err(PathError::NotAbsolute);
    }
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while i < bytes.len() {
        let byte = bytes[i];
        if byte == b'%' {
            let (Some(high), Some(low)) =
                (bytes.get(i + 1).copied().and_then(hex_value), bytes.get(i + 2).copied().and_then(hex_value))
            else {
                return Err(PathError::MalformedEncoding(i));
            };
            let decoded = high << 4 | low;
            match decoded {
                b'/' | b'\\' | b'.' => return Err(PathError::EncodedDelimiter(decoded as char, decoded)),
                0..=0x1f | 0x7f => return Err(PathError::ControlCharacter),
                unreserved if is_unreserved(unreserved) => out.push(unreserved as char),
                other => write!(out, "%{other:02X}").expect("writing to a String"),
            }
            i += 3;
            continue;
        }
        match byte {
            b'\\' => return Err(PathError::Backslash),
            0..=0x1f | 0x7f => return Err(PathError::ControlCharacter),
            _ if is_path_char(byte) => out.push(byte as char),
            // Not allowed raw (a space, a quote, non-ASCII…): its canonical form is encoded.
            _ => write!(out, "%{byte:02X}").expect("writing to a String"),
        }
        i += 1;
    }
    if out.split('/').any(is_dot_segment) {
        return Err(PathError::DotSegment);
    }
    if std::str::from_utf8(&percent_decoded(&out)).is_err() {
        return Err(PathError::InvalidUtf8);
    }
    // Checked on the result, where `%25` may now be followed by decoded hex digits (`%25%32F`).
    if let Some(encoded) = double_encoding(&out) {
        return Err(PathError::DoubleEncoding(encoded.to_owned()));
    }
    Ok(out)
}

/// The two hex digits after the first `%25` that is followed by two.
fn double_encoding(canonical: &str) -> Option<&str> {
    canonical.match_indices("%25").find_map(|(at, _)| {
        let next = canonical.get(at + 3..at + 5)?;
        next.bytes().all(|b| hex_value(b).is_some()).then_some(next)
    })
}

/// `.` or `..`, also with `;parameters` (which some servers strip before resolving dot
/// segments), and any segment of dots and spaces only (Windows trims trailing dots and spaces:
/// `...` and `.. ` are `..` there).
fn is_dot_segment(segment: &str) -> bool {
    let name = segment.split(';').next().unwrap_or(segment);
    let name = name.split("%3B").next().unwrap_or(name);
    let without_spaces = name.replace("%20", "");
    !without_spaces.is_empty() && without_spaces.bytes().all(|b| b == b'.')
}

/// The bytes a canonical path stands for (its percent-encodings decoded).
fn percent_decoded(canonical: &str) -> Vec<u8> {
    let bytes = canonical.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match (bytes[i], bytes.get(i + 1).copied().and_then(hex_value), bytes.get(i + 2).copied().and_then(hex_value)) {
            (b'%', Some(high), Some(low)) => {
                decoded.push(high << 4 | low);
                i += 3;
            }
            (byte, _, _) => {
                decoded.push(byte);
                i += 1;
            }
        }
    }
    decoded
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn unreserved_characters_are_decoded_and_hex_digits_upper_cased() {
        assert_eq!(canonicalise("/H49.14/api/%7Euser/%41b%2d"), Ok("/H49.14/api/~user/Ab-".to_owned()));
        assert_eq!(canonicalise("/a/%c3%a9t%C3%A9"), Ok("/a/%C3%A9t%C3%A9".to_owned()));
        assert_eq!(canonicalise("/a/b%3bc%3D"), Ok("/a/b%3Bc%3D".to_owned()));
        assert_eq!(canonicalise("/a/100%25"), Ok("/a/100%25".to_owned()));
        assert_eq!(canonicalise("/a/é x"), Ok("/a/%C3%A9%20x".to_owned()));
        assert_eq!(canonicalise("/a//b/"), Ok("/a//b/".to_owned()), "empty segments are kept");
        assert_eq!(canonicalise("/a/..b/c../.x/a.b"), Ok("/a/..b/c../.x/a.b".to_owned()), "dots inside names are fine");
    }

    #[test]
    fn everything_that_could_change_meaning_when_decoded_is_refused() {
        let refused = [
            ("x/y", PathError::NotAbsolute),
            ("/a/..%2F..%2Fadmin", PathError::EncodedDelimiter('/', b'/')),
            ("/a/%2f", PathError::EncodedDelimiter('/', b'/')),
            ("/a/..%5Cadmin", PathError::EncodedDelimiter('\\', b'\\')),
            ("/a/..\\admin", PathError::Backslash),
            ("/a/%2E%2E/admin", PathError::EncodedDelimiter('.', b'.')),
            ("/a/.%2e/admin", PathError::EncodedDelimiter('.', b'.')),
            ("/a/../admin", PathError::DotSegment),
            ("/a/./b", PathError::DotSegment),
            ("/a/..", PathError::DotSegment),
            ("/a/..;x/admin", PathError::DotSegment),
            ("/a/.../admin", PathError::DotSegment),
            ("/a/..%20/admin", PathError::DotSegment),
            ("/a/. /admin", PathError::DotSegment),
            ("/a/%C0%AE%C0%AE/admin", PathError::InvalidUtf8),
            ("/a/%c0%2f", PathError::EncodedDelimiter('/', b'/')),
            ("/a/%ff", PathError::InvalidUtf8),
            ("/a/%u002e%u002e/admin", PathError::MalformedEncoding(3)),
            ("/a/%00", PathError::ControlCharacter),
            ("/a/\u{1}", PathError::ControlCharacter),
            ("/a/%0d%0aHost:x", PathError::ControlCharacter),
            ("/a/%252F", PathError::DoubleEncoding("2F".to_owned())),
            ("/a/%", PathError::MalformedEncoding(3)),
            ("/a/%g0", PathError::MalformedEncoding(3)),
            ("/a/%2", PathError::MalformedEncoding(3)),
        ];
        for (path, expected) in refused {
            assert_eq!(canonicalise(path), Err(expected), "{path}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4096))]

        /// Arbitrary text, and text built from the characters that matter here.
        #[test]
        fn canonical_paths_are_stable_and_never_climb(
            raw in prop_oneof![
                any::<String>(),
                proptest::collection::vec(
                    prop_oneof![
                        Just("/"), Just("."), Just(".."), Just("%2e"), Just("%2E"), Just("%2f"), Just("%5c"),
                        Just("%25"), Just("%"), Just(";"), Just("a"), Just("%41"), Just("%7e"), Just("\\"),
                        Just("%00"), Just("é"), Just("2F"), Just("%c3"),
                    ],
                    0..24,
                ).prop_map(|parts| parts.concat()),
            ]
        ) {
            let path = format!("/{raw}");
            if let Ok(canonical) = canonicalise(&path) {
                prop_assert_eq!(canonicalise(&canonical), Ok(canonical.clone()), "idempotent");
                prop_assert!(!canonical.split('/').any(is_dot_segment), "{canonical}");
                let lower = canonical.to_ascii_lowercase();
                prop_assert!(!lower.contains("%2f") && !lower.contains("%5c") && !lower.contains("%2e"), "{canonical}");
                prop_assert!(!canonical.contains('\\'));
                prop_assert!(canonical.bytes().all(|b| b.is_ascii_graphic()), "{canonical}");
                // Valid as an HTTP path, so it can be forwarded as it is.
                prop_assert!(canonical.parse::<http::uri::PathAndQuery>().is_ok(), "{canonical}");
            }
        }

        #[test]
        fn no_input_panics(raw in any::<Vec<u8>>()) {
            let _ = canonicalise(&String::from_utf8_lossy(&raw));
        }
    }
}
