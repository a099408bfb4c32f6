//! Whether the caller may call the API: a consumer the provider granted, or anyone for open data.
//! The open-data listener serves open data only.

use super::{Check, GatewayRequest, Refusal};
use crate::context::Caller;
use crate::problem::Problem;

#[derive(Clone, Debug, Default)]
pub struct GrantCheck;

impl Check for GrantCheck {
    fn check(&self, request: &mut GatewayRequest) -> Result<(), Refusal> {
        let (caller, routed) = super::caller_and_route(request, "grant check")?;
        let api = &routed.api;
        match caller {
            _ if api.open_data => Ok(()),
            Caller::Consumer(consumer) if api.grants(&consumer.uri) => Ok(()),
            Caller::Consumer(consumer) => Err(Problem::NotGranted(format!(
                "{} is not granted API {}: the provider has not approved this consumer",
                consumer.uri,
                api.label()
            ))
            .into()),
            Caller::Anonymous(_) => Err(Problem::NotOpenData(format!(
                "API {} is not open data; call it on the mutual-TLS listener with a granted client certificate",
                api.label()
            ))
            .into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::testing::*;
    use crate::problem::detail_of;
    use http::StatusCode;

    #[test]
    fn granted_consumers_and_open_data_pass_others_are_told_why_not() {
        GrantCheck.check(&mut routed(consumer(CONSUMER), api(false, &[CONSUMER]))).unwrap();
        GrantCheck.check(&mut routed(consumer(OTHER), api(true, &[]))).unwrap();
        GrantCheck.check(&mut routed(Caller::Anonymous(client_addr().ip()), api(true, &[]))).unwrap();

        let refusal = GrantCheck.check(&mut routed(consumer(OTHER), api(false, &[CONSUMER]))).unwrap_err();
        assert_eq!(refusal.status(), StatusCode::FORBIDDEN);
        let detail = detail_of(&refusal)["detail"].as_str().unwrap().to_owned();
        assert!(detail.contains(OTHER) && detail.contains("H17.12/land-records"), "{detail}");

        let refusal =
            GrantCheck.check(&mut routed(Caller::Anonymous(client_addr().ip()), api(false, &[CONSUMER]))).unwrap_err();
        assert_eq!(refusal.status(), StatusCode::FORBIDDEN);
        assert_eq!(detail_of(&refusal)["title"], "Not open data");
    }
}
