//! The provider's rate limit, per (API, caller): a token bucket (governor's GCRA) per consumer
//! identity, or per client address on the open-data listener. Over the limit: 429 with
//! `Retry-After`.
//!
//! Across replicas the limit is **divided**, not shared: with `--replicas N` each gateway admits
//! `requestsPerMinute / N` and `burst / N` (rounded down, at least 1) per caller, so a caller
//! whose requests spread over the replicas (the Service balances connections) never gets more
//! than the provider's limit in total. A caller pinned to one replica gets a 1/N share; the
//! alternative, a shared counter, would put a store on every request's path.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use super::{Check, GatewayRequest, Refusal};
use crate::problem::Problem;
use crate::routes::{RateLimit, RouteSet};

type Limiter = DefaultKeyedRateLimiter<Arc<str>>;
/// Per provider, per API name: its limit, and the buckets kept under it (two levels: found
/// without formatting a key per request).
type LimiterMap = HashMap<String, HashMap<String, (RateLimit, Arc<Limiter>)>>;

/// One keyed limiter per API, replaced when the API's limit changes.
#[derive(Clone)]
pub struct RateLimiters {
    limiters: Arc<Mutex<LimiterMap>>,
    clock: DefaultClock,
    /// The gateway replicas the limits are divided among.
    replicas: NonZeroU32,
}

impl Default for RateLimiters {
    fn default() -> Self {
        RateLimiters::new(NonZeroU32::MIN)
    }
}

impl std::fmt::Debug for RateLimiters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimiters").finish_non_exhaustive()
    }
}

impl RateLimiters {
    pub fn new(replicas: NonZeroU32) -> Self {
        RateLimiters { limiters: Default::default(), clock: DefaultClock::default(), replicas }
    }

    /// This replica's share of `limit`.
    pub fn share(&self, limit: RateLimit) -> RateLimit {
        let divide = |value: NonZeroU32| NonZeroU32::new(value.get() / self.replicas.get()).unwrap_or(NonZeroU32::MIN);
        RateLimit { requests_per_minute: divide(limit.requests_per_minute), burst: divide(limit.burst) }
    }

    fn limiter(&self, provider: &str, api: &str, limit: RateLimit) -> Arc<Limiter> {
        let limit = self.share(limit);
        let mut limiters = self.limiters.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        match limiters.get(provider).and_then(|apis| apis.get(api)) {
            Some((current, limiter)) if *current == limit => limiter.clone(),
            _ => {
                let quota = Quota::per_minute(limit.requests_per_minute).allow_burst(limit.burst);
                let limiter = Arc::new(RateLimiter::keyed(quota));
                limiters.entry(provider.to_owned()).or_default().insert(api.to_owned(), (limit, limiter.clone()));
                limiter
            }
        }
    }

    /// Forgets APIs no longer in `table` and callers whose buckets are full again, so memory
    /// follows the active callers (called after every route reload and periodically).
    pub fn prune(&self, table: &RouteSet) {
        let mut limiters = self.limiters.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        for (provider, apis) in limiters.iter_mut() {
            apis.retain(|api, _| table.get(provider, api).is_some());
        }
        limiters.retain(|_, apis| !apis.is_empty());
        for (_, limiter) in limiters.values().flat_map(HashMap::values) {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct RateLimitCheck {
    pub limiters: RateLimiters,
}

impl Check for RateLimitCheck {
    fn check(&self, request: &mut GatewayRequest) -> Result<(), Refusal> {
        let (caller, routed) = super::caller_and_route(request, "rate limit")?;
        let limit = routed.api.rate_limit;
        let limiter = self.limiters.limiter(&routed.api.provider, &routed.api.name, limit);
        let key = caller.rate_key();
        match limiter.check_key(&key) {
            Ok(()) => Ok(()),
            Err(not_until) => {
                let label = routed.api.label();
                let wait = not_until.wait_time_from(self.limiters.clock.now());
                let retry_after = (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1);
                let detail = format!(
                    "{key} exceeded the rate limit of API {label} ({} requests per minute, burst {}{}); retry in {retry_after} s",
                    limit.requests_per_minute,
                    limit.burst,
                    match self.limiters.replicas.get() {
                        1 => String::new(),
                        n => format!(", divided among {n} gateway replicas"),
                    }
                );
                Err(Problem::RateLimited { detail, retry_after: wait }.into())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::Caller;
    use crate::layers::testing::*;
    use http::StatusCode;
    use http::header;

    #[test]
    fn each_caller_has_its_own_bucket_and_is_told_when_to_retry() {
        let check = RateLimitCheck::default();
        let api = api(false, &[CONSUMER, OTHER]);
        for _ in 0..2 {
            check.check(&mut routed(consumer(CONSUMER), api.clone())).unwrap();
        }
        let refusal = check.check(&mut routed(consumer(CONSUMER), api.clone())).unwrap_err();
        assert_eq!(refusal.status(), StatusCode::TOO_MANY_REQUESTS);
        let retry_after: u64 = refusal.headers()[header::RETRY_AFTER].to_str().unwrap().parse().unwrap();
        assert!((1..=1).contains(&retry_after), "60/min refills one token a second, got {retry_after}");
        // Another consumer, and an anonymous address, have buckets of their own.
        check.check(&mut routed(consumer(OTHER), api.clone())).unwrap();
        check.check(&mut routed(Caller::Anonymous(client_addr().ip()), api.clone())).unwrap();

        // A new limit for the API starts new buckets; an API that left the table is forgotten.
        let mut raised = (*api).clone();
        raised.rate_limit.burst = 5.try_into().unwrap();
        check.check(&mut routed(consumer(CONSUMER), Arc::new(raised))).unwrap();
        check.limiters.prune(&RouteSet::default());
        assert!(check.limiters.limiters.lock().unwrap().is_empty());
    }

    #[test]
    fn replicas_divide_the_limit_rounding_down_to_at_least_one() {
        let limiters = RateLimiters::new(NonZeroU32::new(2).unwrap());
        let limit = |rpm: u32, burst: u32| RateLimit {
            requests_per_minute: NonZeroU32::new(rpm).unwrap(),
            burst: NonZeroU32::new(burst).unwrap(),
        };
        assert_eq!(limiters.share(limit(60, 10)), limit(30, 5));
        assert_eq!(limiters.share(limit(61, 3)), limit(30, 1));
        assert_eq!(limiters.share(limit(1, 1)), limit(1, 1));
        let check = RateLimitCheck { limiters };
        let api = api(false, &[CONSUMER]); // burst 2: one per replica
        check.check(&mut routed(consumer(CONSUMER), api.clone())).unwrap();
        let refusal = check.check(&mut routed(consumer(CONSUMER), api)).unwrap_err();
        assert!(String::from_utf8_lossy(refusal.body()).contains("divided among 2 gateway replicas"));
    }
}
