//! Who is calling. On the mutual-TLS listener: the identity in the client certificate that rustls
//! verified during the handshake, checked again with `verify_client_chain` (which also enforces
//! that a tenant CA vouches only for its own agency). Never from a header: every incoming
//! `X-Lgsp-*` header is removed here, and the forward layer sets the verified one.

use http::StatusCode;
use time::OffsetDateTime;

use super::{Check, GatewayRequest, Refusal};
use crate::context::{AuditNotes, Caller, Connection, Listener};
use crate::problem::refusal;

/// Headers through which a client might try to claim an identity or an address.
const SPOOFABLE_PREFIXES: [&str; 3] = ["x-lgsp-", "x-forwarded-", "x-ssl-client"];
const SPOOFABLE: [&str; 2] = ["forwarded", "x-client-cert"];

#[derive(Clone, Debug, Default)]
pub struct IdentityCheck;

impl Check for IdentityCheck {
    fn check(&self, request: &mut GatewayRequest) -> Result<(), Refusal> {
        strip_identity_headers(request.headers_mut());
        let Some(Connection(connection)) = request.extensions().get::<Connection>().cloned() else {
            return Err(refusal(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "Internal error",
                "the request reached the gateway without connection information",
            ));
        };
        let caller = match &connection.listener {
            Listener::Mutual { peer_chain, anchors, identity } => {
                let now = OffsetDateTime::now_utc();
                let verified = identity.get_or_init(|| {
                    let until = govpaas_pki::verify::chain_not_after(peer_chain).unwrap_or(now);
                    govpaas_pki::verify::verify_client_chain(peer_chain, anchors, now)
                        .map(|identity| (identity, until))
                        .map_err(|e| e.to_string())
                });
                match verified {
                    // A connection may outlive its client certificate: every request checks it.
                    Ok((identity, until)) if now < *until => Caller::Consumer(identity.clone()),
                    Ok((identity, until)) => {
                        return Err(refusal(
                            StatusCode::FORBIDDEN,
                            "certificate-expired",
                            "Client certificate expired",
                            format!(
                                "the client certificate of {} expired at {until} during this connection: reconnect with the renewed certificate",
                                identity.uri()
                            ),
                        ));
                    }
                    Err(reason) => {
                        return Err(refusal(
                            StatusCode::FORBIDDEN,
                            "identity-refused",
                            "Client certificate refused",
                            format!("the client certificate does not establish an agency identity: {reason}"),
                        ));
                    }
                }
            }
            Listener::Open => Caller::Anonymous(connection.remote.ip()),
        };
        AuditNotes::record(request, |notes| notes.caller = Some(caller.clone()));
        request.extensions_mut().insert(caller);
        Ok(())
    }
}

fn strip_identity_headers(headers: &mut http::HeaderMap) {
    let spoofable: Vec<http::HeaderName> = headers
        .keys()
        .filter(|name| {
            let name = name.as_str();
            SPOOFABLE.contains(&name) || SPOOFABLE_PREFIXES.iter().any(|prefix| name.starts_with(prefix))
        })
        .cloned()
        .collect();
    for name in spoofable {
        headers.remove(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::testing::*;

    #[test]
    fn the_open_listener_identifies_by_address_and_identity_headers_are_dropped() {
        let mut request = request("/H17.12/land-records");
        request.headers_mut().insert("x-lgsp-consumer", CONSUMER.parse().unwrap());
        request.headers_mut().insert("X-Forwarded-For", "10.1.1.1".parse().unwrap());
        request.headers_mut().insert("accept", "application/json".parse().unwrap());
        IdentityCheck.check(&mut request).unwrap();
        assert_eq!(request.extensions().get::<Caller>(), Some(&Caller::Anonymous(client_addr().ip())));
        assert!(request.headers().get("x-lgsp-consumer").is_none());
        assert!(request.headers().get("x-forwarded-for").is_none());
        assert_eq!(request.headers()["accept"], "application/json");
    }

    #[test]
    fn a_client_certificate_that_expired_during_the_connection_is_refused() {
        use std::sync::{Arc, OnceLock};

        use govpaas_pki::{IssuancePolicy, PlatformCaRequest, TrustAnchors, WorkloadIdentity, generate_platform_ca};

        use crate::context::{ConnectionInfo, Listener};

        let now = OffsetDateTime::now_utc();
        let ca = generate_platform_ca(
            &PlatformCaRequest::new("quangnam.gov.vn", "govpaas"),
            &IssuancePolicy::default(),
            now,
        )
        .unwrap();
        let anchors = Arc::new(TrustAnchors::from_pem(ca.certificate_pem().as_bytes()).unwrap());
        let identity = WorkloadIdentity::parse(CONSUMER).unwrap();
        let connection = |until: OffsetDateTime| {
            Connection(Arc::new(ConnectionInfo {
                remote: client_addr(),
                listener: Listener::Mutual {
                    peer_chain: Vec::new(),
                    anchors: anchors.clone(),
                    // As verified at the handshake, valid until `until`.
                    identity: OnceLock::from(Ok((identity.clone(), until))),
                },
            }))
        };

        let mut fresh = request("/H17.12/land-records");
        fresh.extensions_mut().insert(connection(now + time::Duration::hours(1)));
        IdentityCheck.check(&mut fresh).unwrap();
        assert_eq!(fresh.extensions().get::<Caller>(), Some(&Caller::Consumer(identity.clone())));

        let mut stale = request("/H17.12/land-records");
        stale.extensions_mut().insert(connection(now - time::Duration::seconds(1)));
        let refusal = IdentityCheck.check(&mut stale).unwrap_err();
        assert_eq!(refusal.status(), StatusCode::FORBIDDEN);
        let body = String::from_utf8_lossy(refusal.body()).into_owned();
        assert!(body.contains("expired") && body.contains("reconnect"), "{body}");
    }

    #[test]
    fn without_connection_information_nothing_passes() {
        let mut request = request("/H17.12/land-records");
        request.extensions_mut().clear();
        let refusal = IdentityCheck.check(&mut request).unwrap_err();
        assert_eq!(refusal.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }
}
