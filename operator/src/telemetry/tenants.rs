//! Quota per tenant, for a Data Integration Centre's capacity planning (in the style of Capsule's
//! tenant metrics): `govpaas_tenant_quota{tenant, resource, share}`, read at scrape time from the
//! shared Tenant cache's statuses — `share` is `hard` (the tenant's quota), `own` (what its own
//! namespaces get once its children are carved out) or `used` (in use there). Bounded by the number
//! of tenants: seven resources, three shares each.

use std::sync::OnceLock;

use govpaas_crds::quantity::Amount;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::gauge::ConstGauge;

use kube::ResourceExt;

use crate::tenancy::TenantObject;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QuotaLabels {
    tenant: String,
    resource: String,
    share: &'static str,
}

/// The quota gauges; empty until the composition root hands over the Tenant cache.
#[derive(Debug, Default)]
pub struct TenantQuotaGauges {
    tenants: OnceLock<kube::runtime::reflector::Store<TenantObject>>,
}

impl TenantQuotaGauges {
    /// Reads `tenants` from now on (the first cache given wins).
    pub fn read_from(&self, tenants: kube::runtime::reflector::Store<TenantObject>) {
        let _ = self.tenants.set(tenants);
    }
}

impl Collector for TenantQuotaGauges {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let gauge = ConstGauge::new(0.0f64);
        let mut family = encoder.encode_descriptor(
            "tenant_quota",
            "Each tenant's quota (share=hard), its own namespaces' part of it (own) and what is in use there (used), in base units (cores, bytes, counts)",
            None,
            gauge.metric_type(),
        )?;
        let Some(tenants) = self.tenants.get() else {
            return Ok(());
        };
        let mut tenants = tenants.state();
        tenants.sort_by_key(|tenant| tenant.name_any());
        for tenant in tenants {
            let Ok(object) = &tenant.0 else { continue };
            let name = tenant.name_any();
            let Some(quota) = object.status.as_ref().and_then(|status| status.quota.as_ref()) else { continue };
            for (share, amounts) in [("hard", &quota.hard), ("own", &quota.own), ("used", &quota.used)] {
                for (resource, quantity) in amounts {
                    // A status the operator wrote always parses; anything else is left out.
                    let Ok(amount) = Amount::of(quantity) else { continue };
                    let labels = QuotaLabels { tenant: name.clone(), resource: resource.clone(), share };
                    ConstGauge::new(amount.nanos() as f64 / 1e9).encode(family.encode_family(&labels)?)?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use kube::runtime::watcher;

    use super::*;
    use crate::telemetry::Metrics;

    #[test]
    fn each_tenants_quota_is_read_from_the_cache_at_scrape_time() {
        let gauges = Arc::new(TenantQuotaGauges::default());
        let metrics = Metrics::with_tenants(Default::default(), gauges.clone());
        assert!(!metrics.render().contains("tenant=\""), "no series before the cache is handed over");

        let (store, mut writer) = kube::runtime::reflector::store::<TenantObject>();
        let tenant: TenantObject = serde_json::from_value(serde_json::json!({
            "apiVersion": "govpaas.io/v1alpha1", "kind": "Tenant",
            "metadata": {"name": "so-yte"},
            "spec": {
                "agency": {"code": "H17.13", "level": "Department", "displayName": "Sở Y tế thành phố Đà Nẵng"},
                "parent": "ubnd",
                "admins": {"users": ["cntt.so-yte@danang.gov.vn"]},
                "quota": {"cpu": "4", "memory": "8Gi", "storage": "100Gi", "pods": 40, "services": 10, "publicHosts": 2, "lgspApis": 5}
            },
            "status": {"quota": {"hard": {"cpu": "4", "memory": "8Gi"}, "own": {"cpu": "1500m"}, "used": {"cpu": "250m"}}}
        }))
        .expect("a Tenant");
        assert!(tenant.0.is_ok(), "{:?}", tenant.0);
        writer.apply_watcher_event(&watcher::Event::Apply(tenant));
        gauges.read_from(store);
        let text = metrics.render();
        for expected in [
            "govpaas_tenant_quota{tenant=\"so-yte\",resource=\"cpu\",share=\"hard\"} 4.0",
            "govpaas_tenant_quota{tenant=\"so-yte\",resource=\"memory\",share=\"hard\"} 8589934592.0",
            "govpaas_tenant_quota{tenant=\"so-yte\",resource=\"cpu\",share=\"own\"} 1.5",
            "govpaas_tenant_quota{tenant=\"so-yte\",resource=\"cpu\",share=\"used\"} 0.25",
        ] {
            assert!(text.contains(expected), "{expected} not in\n{text}");
        }
    }
}
