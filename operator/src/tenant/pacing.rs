//! How often a Tenant's observations reach its status.
//!
//! A Tenant's status reports what its namespaces use (`quota.used`, from the ResourceQuotas' own
//! status) and how many services it runs. While a province fills, both change with every Pod and
//! service an agency starts, and each change was a status write: about 8 per Tenant to converge,
//! the most frequent write after the route tables. They are observations, not decisions: no
//! quota, condition or Event depends on them. So a status that differs from the stored one in these
//! alone is written at most once per [`INTERVAL`] per Tenant; a later one waits for the end of the
//! interval, when the Tenant is woken and writes what it then sees. A change of anything else is
//! written at once and carries the observations with it.
//!
//! Bounded, never starved: the wait is measured from the last write, not from the last change, so
//! a Tenant whose usage changes faster than the interval is still written once per interval.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use govpaas_crds::TenantStatus;

/// The least time between two status writes of a Tenant that change its observations alone.
pub const INTERVAL: Duration = Duration::from_secs(10);

/// Whether `next` differs from `stored` only in what the Tenant observes (what its namespaces use,
/// its service counts).
pub fn observations_only(stored: &TenantStatus, next: &TenantStatus) -> bool {
    if stored == next {
        return false;
    }
    let mut without = next.clone();
    without.services = stored.services.clone();
    if let (Some(quota), Some(stored_quota)) = (without.quota.as_mut(), stored.quota.as_ref()) {
        quota.used = stored_quota.used.clone();
    }
    without == *stored
}

/// Per Tenant (by uid): when this process last wrote its status, and whether it scheduled a wake.
#[derive(Default)]
pub struct ObservationPacing {
    tenants: Mutex<HashMap<String, Paced>>,
}

#[derive(Clone, Copy)]
struct Paced {
    written: Instant,
    /// A wake is scheduled for the end of the interval.
    woken: bool,
}

/// What to do with a status that changes observations alone.
#[derive(Debug, PartialEq, Eq)]
pub enum Pace {
    /// Write it now.
    Write,
    /// Wait this long; `true`: no wake is scheduled for then yet, so schedule one.
    Wait(Duration, bool),
}

impl ObservationPacing {
    /// Decides for the Tenant `key` at `now`. A Tenant this process never wrote is written now (a
    /// new process knows nothing of the previous one's writes).
    pub fn pace(&self, key: &str, now: Instant) -> Pace {
        let mut tenants = self.lock();
        let Some(paced) = tenants.get_mut(key) else { return Pace::Write };
        let due = paced.written + INTERVAL;
        if now >= due {
            return Pace::Write;
        }
        let schedule = !paced.woken;
        paced.woken = true;
        Pace::Wait(due - now, schedule)
    }

    /// Records a status write of the Tenant `key` at `now`.
    pub fn written(&self, key: &str, now: Instant) {
        self.lock().insert(key.to_owned(), Paced { written: now, woken: false });
    }

    /// Never held across an `.await`; a panic elsewhere leaves at worst one write too early.
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Paced>> {
        self.tenants.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use govpaas_crds::tenant::{QuotaStatus, ServiceCounts};
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

    fn status(pods: &str, portals: i32, domain: &str) -> TenantStatus {
        TenantStatus {
            domain: Some(domain.to_owned()),
            quota: Some(QuotaStatus {
                hard: [("pods".to_owned(), Quantity("10".into()))].into(),
                used: [("pods".to_owned(), Quantity(pods.into()))].into(),
                ..Default::default()
            }),
            services: Some(ServiceCounts { portals, ..Default::default() }),
            ..Default::default()
        }
    }

    #[test]
    fn usage_and_counts_are_observations_anything_else_is_not() {
        let stored = status("1", 1, "a.gov.vn");
        assert!(observations_only(&stored, &status("2", 1, "a.gov.vn")));
        assert!(observations_only(&stored, &status("2", 2, "a.gov.vn")));
        assert!(!observations_only(&stored, &stored.clone()), "nothing changed");
        assert!(!observations_only(&stored, &status("2", 2, "b.gov.vn")), "with a decision");
        let mut hard = status("1", 1, "a.gov.vn");
        hard.quota.as_mut().unwrap().hard.insert("pods".into(), Quantity("20".into()));
        assert!(!observations_only(&stored, &hard));
    }

    #[test]
    fn paced_from_the_last_write_with_one_wake_per_wait() {
        let pacing = ObservationPacing::default();
        let start = Instant::now();
        assert_eq!(pacing.pace("t", start), Pace::Write, "never written by this process");
        pacing.written("t", start);
        let second = Duration::from_secs(1);
        assert_eq!(pacing.pace("t", start + second), Pace::Wait(INTERVAL - second, true));
        assert_eq!(pacing.pace("t", start + 2 * second), Pace::Wait(INTERVAL - 2 * second, false), "already woken");
        assert_eq!(pacing.pace("t", start + INTERVAL), Pace::Write, "the interval is over");
        // Changes faster than the interval still reach the status once per interval.
        pacing.written("t", start + INTERVAL);
        assert_eq!(pacing.pace("t", start + INTERVAL + second), Pace::Wait(INTERVAL - second, true));
        // Still one wake for the whole wait.
        assert_eq!(pacing.pace("t", start + 3 * INTERVAL / 2 + second), Pace::Wait(INTERVAL / 2 - second, false));
        assert_eq!(pacing.pace("t", start + 2 * INTERVAL), Pace::Write);
    }
}
