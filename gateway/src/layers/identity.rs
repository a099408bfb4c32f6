//! Who is calling. On the mutual-TLS listener: the identity in the client certificate that rustls
//! verified during the handshake, checked again with `verify_client_chain` (which also enforces
//! that a tenant CA vouches only for its own agency). Never from a header: every incoming
//! identity-bearing header ([`crate::headers`]) is removed here, and the forward layer sets the
//! verified one.

use time::OffsetDateTime;

use super::{Check, GatewayRequest, Refusal};
use crate::context::{AuditNotes, Caller, Connection, Consumer, Listener};
use crate::problem::Problem;

#[derive(Clone, Debug, Default)]
pub struct IdentityCheck;

impl Check for IdentityCheck {
    fn check(&self, request: &mut GatewayRequest) -> Result<(), Refusal> {
        crate::headers::strip_identity_headers(request.headers_mut());
        let Some(Connection(connection)) = request.extensions().get::<Connection>().cloned() else {
            return Err(
                Problem::Internal("the request reached the gateway without connection information".to_owned()).into()
            );
        };
        let caller = match &connection.listener {
            Listener::Mutual { peer_chain, anchors, identity } => {
                let now = OffsetDateTime::now_utc();
                let verified = identity.get_or_init(|| {
                    let until = govpaas_pki::verify::chain_not_after(peer_chain).unwrap_or(now);
                    govpaas_pki::verify::verify_client_chain(peer_chain, anchors, now)
                        .map(|identity| (Consumer::new(identity), until))
                        .map_err(|e| e.to_string())
                });
                match verified {
                    // A connection may outlive its client certificate: every request checks it.
                    Ok((consumer, until)) if now < *until => Caller::Consumer(consumer.clone()),
                    Ok((consumer, until)) => {
                        return Err(Problem::CertificateExpired(format!(
                            "the client certificate of {} expired at {until} during this connection: reconnect with the renewed certificate",
                            consumer.uri
                        ))
                        .into());
                    }
                    Err(reason) => {
                        return Err(Problem::IdentityRefused(format!(
                            "the client certificate does not establish an agency identity: {reason}"
                        ))
                        .into());
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::testing::*;
    use http::StatusCode;

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
            Connection(Arc::new(ConnectionInfo::new(
                client_addr(),
                Listener::Mutual {
                    peer_chain: Vec::new(),
                    anchors: anchors.clone(),
                    // As verified at the handshake, valid until `until`.
                    identity: OnceLock::from(Ok((Consumer::new(identity.clone()), until))),
                },
            )))
        };

        let mut fresh = request("/H17.12/land-records");
        fresh.extensions_mut().insert(connection(now + time::Duration::hours(1)));
        IdentityCheck.check(&mut fresh).unwrap();
        assert_eq!(fresh.extensions().get::<Caller>(), Some(&Caller::consumer(identity.clone())));

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
