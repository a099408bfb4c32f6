//! Headers through which a client could claim an identity, a certificate or an address that a
//! provider (or a proxy in front of it) might believe. The gateway is the only one that says who
//! calls (`X-Lgsp-Consumer`, from the verified certificate) and from where
//! (`X-Lgsp-Client-Address`); a client's own version of any such header never reaches a provider.
//!
//! A deny-list, matched case-insensitively (header names are lower case in `http`): every name
//! that common proxies, CDNs and servers use for the client's address, its certificate or its
//! authenticated user.

use http::{HeaderMap, HeaderName};

/// Exact names.
const IDENTITY_HEADERS: [&str; 20] = [
    // RFC 7239 and its de facto predecessors.
    "forwarded",
    "via",
    // RFC 9440 client certificates, and the names proxies used before it.
    "client-cert",
    "client-cert-chain",
    "ssl-client-cert",
    // The client's address, as nginx, Akamai, Cloudflare, Fastly and others pass it on.
    "x-real-ip",
    "true-client-ip",
    "cf-connecting-ip",
    "cf-connecting-ipv6",
    "fastly-client-ip",
    "x-cluster-client-ip",
    "x-remote-addr",
    "x-remote-ip",
    "x-originating-ip",
    "x-host",
    // An authenticated user, as auth proxies pass it on.
    "remote-user",
    "x-remote-user",
    "x-user",
    "x-webauth-user",
    "x-authenticated-user",
];

/// Name prefixes.
const IDENTITY_PREFIXES: [&str; 14] = [
    "x-lgsp-",
    "x-forwarded-",
    "x-original-",
    "x-client-",
    "x-ssl-",
    "ssl-client-",
    "x-envoy-",
    "x-amzn-",
    "x-arr-",
    "cf-",
    "x-proxyuser-",
    "x-auth-request-",
    "x-authenticated-",
    "x-remote-",
];

/// Whether `name` is an identity-bearing header a client may not send on.
pub fn is_identity_header(name: &HeaderName) -> bool {
    let name = name.as_str();
    IDENTITY_HEADERS.contains(&name) || IDENTITY_PREFIXES.iter().any(|prefix| name.starts_with(prefix))
}

/// Removes every identity-bearing header.
pub fn strip_identity_headers(headers: &mut HeaderMap) {
    let names: Vec<HeaderName> = headers.keys().filter(|name| is_identity_header(name)).cloned().collect();
    for name in names {
        headers.remove(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_names_proxies_use_are_stripped_and_others_kept() {
        let mut headers = HeaderMap::new();
        for name in [
            "Client-Cert",
            "Client-Cert-Chain",
            "X-Real-IP",
            "True-Client-IP",
            "X-Original-URL",
            "X-Original-Forwarded-For",
            "CF-Connecting-IP",
            "X-Forwarded-For",
            "X-Lgsp-Consumer",
            "X-SSL-Client-Cert",
            "X-Client-Cert",
            "X-Forwarded-Client-Cert",
            "Forwarded",
            "X-Envoy-External-Address",
        ] {
            headers.append(HeaderName::from_bytes(name.as_bytes()).unwrap(), "spoofed".parse().unwrap());
        }
        headers.insert("accept", "application/json".parse().unwrap());
        headers.insert("x-request-id", "7".parse().unwrap());
        strip_identity_headers(&mut headers);
        let left: std::collections::BTreeSet<&str> = headers.keys().map(|k| k.as_str()).collect();
        assert_eq!(left, ["accept", "x-request-id"].into());
    }

    proptest! {
        #[test]
        fn arbitrary_headers_never_panic_and_no_identity_header_survives(
            headers in proptest::collection::vec(
                (
                    prop_oneof![
                        "[a-zA-Z0-9-]{1,24}".prop_map(|s| s),
                        Just("client-cert".to_owned()), Just("X-Real-Ip".to_owned()), Just("x-original-uri".to_owned()),
                        Just("X-LGSP-CONSUMER".to_owned()), Just("cf-connecting-ip".to_owned()),
                    ],
                    any::<Vec<u8>>(),
                ),
                0..32,
            )
        ) {
            let mut map = HeaderMap::new();
            for (name, value) in headers {
                let (Ok(name), Ok(value)) = (HeaderName::from_bytes(name.as_bytes()), http::HeaderValue::from_bytes(&value)) else { continue };
                map.append(name, value);
            }
            let before: std::collections::BTreeSet<String> =
                map.keys().filter(|n| !is_identity_header(n)).map(|n| n.to_string()).collect();
            strip_identity_headers(&mut map);
            prop_assert!(map.keys().all(|n| !is_identity_header(n)));
            let after: std::collections::BTreeSet<String> = map.keys().map(|n| n.to_string()).collect();
            prop_assert_eq!(after, before, "only identity headers are removed");
        }
    }
}
