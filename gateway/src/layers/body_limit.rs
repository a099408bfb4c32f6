//! Refuses a request whose body the listener would not read in full (413).

use http::StatusCode;

use super::{Check, GatewayRequest, Refusal};
use crate::context::BodyTooLarge;
use crate::problem::refusal;

#[derive(Clone, Debug, Default)]
pub struct BodyLimitCheck;

impl Check for BodyLimitCheck {
    fn check(&self, request: &mut GatewayRequest) -> Result<(), Refusal> {
        match request.extensions().get::<BodyTooLarge>() {
            Some(BodyTooLarge { limit }) => Err(refusal(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body-too-large",
                "Request body too large",
                format!("the gateway accepts request bodies of at most {limit} bytes"),
            )),
            None => Ok(()),
        }
    }
}
