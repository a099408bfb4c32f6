//! `kubectl govpaas grants`: who may call what over the LGSP, from the DataSharingServices'
//! specs (what each side declares) and statuses (what the operator decided, and why).

use std::collections::BTreeMap;

use govpaas_crds::agency::normalise;
use govpaas_crds::data_sharing::{AccessDecision, GrantState};
use govpaas_crds::{DataSharingService, Tenant};
use kube::ResourceExt;
use serde::{Deserialize, Serialize};

use crate::objects;
use crate::table::{Cell, Paint, Table};
use crate::{API_VERSION, Scope};

/// The code that stands for the national platform in reports.
pub const NATIONAL: &str = "NDXP";

/// Every consumption and provided API (`kind: LgspGrants`).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GrantsReport {
    pub api_version: String,
    pub kind: String,
    pub complete: bool,
    /// The `--agency` filter, as given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agency: Option<String>,
    /// One per `spec.consumes` entry: consumer → provider's API, and the operator's decision.
    pub grants: Vec<Grant>,
    /// One per `spec.provides` entry: the API and whom its provider approves or denies.
    pub provided_apis: Vec<ProvidedApi>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// An agency as reports name it.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct AgencyRef {
    /// Its agency code as written (`NDXP` for the national platform, `?` when unknown).
    pub code: String,
    /// Its Tenant, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub display_name: String,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Grant {
    pub consumer: AgencyRef,
    /// The consuming DataSharingService, `namespace/name`.
    pub consumer_service: String,
    /// The consumption's `name`.
    pub consumption: String,
    pub provider: AgencyRef,
    pub national: bool,
    pub api: String,
    /// `Granted`, `Pending`, `Denied`, or `Unknown` before the operator decided.
    pub state: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub purpose: String,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ProvidedApi {
    pub provider: AgencyRef,
    /// The providing DataSharingService, `namespace/name`.
    pub provider_service: String,
    pub api: String,
    pub open_data: bool,
    /// Its URL on the gateway, once registered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    pub consumers: Vec<ConsumerDecision>,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ConsumerDecision {
    pub agency_code: String,
    /// A DataSharingService name of that agency, or `*` for any.
    pub service: String,
    /// `Approve` or `Deny`.
    pub decision: String,
}

/// The grants of every DataSharingService, or those where `agency` consumes or provides.
pub fn build(services: &[DataSharingService], tenants: &[Tenant], scope: Scope, agency: Option<&str>) -> GrantsReport {
    let owners = objects::namespace_owners(tenants);
    let by_code: BTreeMap<String, &Tenant> = tenants.iter().map(|t| (normalise(&t.spec.agency.code), t)).collect();
    let agency_of_namespace = |namespace: &str| match owners.get(namespace) {
        Some(tenant) => agency_ref(tenant),
        None => AgencyRef { code: "?".into(), tenant: None, display_name: String::new() },
    };
    let agency_of_code = |code: &str| match by_code.get(&normalise(code)) {
        Some(tenant) => AgencyRef { code: code.to_owned(), ..agency_ref(tenant) },
        None => AgencyRef { code: code.to_owned(), tenant: None, display_name: String::new() },
    };
    let mut services: Vec<&DataSharingService> = services.iter().collect();
    services.sort_by_key(|s| (s.namespace().unwrap_or_default(), s.name_any()));
    let mut grants = Vec::new();
    let mut provided_apis = Vec::new();
    for service in services {
        let namespace = service.namespace().unwrap_or_default();
        let full_name = format!("{namespace}/{}", service.name_any());
        let status = service.status.clone().unwrap_or_default();
        let own_agency = agency_of_namespace(&namespace);
        for consumed in &service.spec.consumes {
            let decided = status.consumptions.iter().find(|c| c.name == consumed.name);
            let provider = match &consumed.agency_code {
                Some(code) if !consumed.national => agency_of_code(code),
                _ => AgencyRef { code: NATIONAL.into(), tenant: None, display_name: "national platform".into() },
            };
            grants.push(Grant {
                consumer: own_agency.clone(),
                consumer_service: full_name.clone(),
                consumption: consumed.name.clone(),
                provider,
                national: consumed.national,
                api: consumed.api.clone(),
                state: decided.map(|d| state_name(d.state)).unwrap_or("Unknown").into(),
                reason: decided.map(|d| d.reason.clone()).unwrap_or_default(),
                message: decided.map(|d| d.message.clone()).unwrap_or_default(),
                url: decided.and_then(|d| d.url.clone()),
                purpose: consumed.purpose.clone(),
            });
        }
        for provided in &service.spec.provides {
            provided_apis.push(ProvidedApi {
                provider: own_agency.clone(),
                provider_service: full_name.clone(),
                api: provided.name.clone(),
                open_data: provided.open_data,
                url: status.routes.iter().find(|r| r.api == provided.name).map(|r| r.url.clone()),
                consumers: provided
                    .consumers
                    .iter()
                    .map(|c| ConsumerDecision {
                        agency_code: c.agency_code.clone(),
                        service: c.service.clone(),
                        decision: match c.decision {
                            AccessDecision::Approve => "Approve".into(),
                            AccessDecision::Deny => "Deny".into(),
                        },
                    })
                    .collect(),
            });
        }
    }
    if let Some(code) = agency {
        let wanted = normalise(code);
        let is = |other: &str| normalise(other) == wanted;
        grants.retain(|g| is(&g.consumer.code) || is(&g.provider.code));
        provided_apis.retain(|p| is(&p.provider.code) || p.consumers.iter().any(|c| is(&c.agency_code)));
    }
    GrantsReport {
        api_version: API_VERSION.into(),
        kind: "LgspGrants".into(),
        complete: scope == Scope::Complete,
        agency: agency.map(str::to_owned),
        grants,
        provided_apis,
        notes: Vec::new(),
    }
}

fn agency_ref(tenant: &Tenant) -> AgencyRef {
    AgencyRef {
        code: tenant.spec.agency.code.clone(),
        tenant: Some(tenant.name_any()),
        display_name: tenant.spec.agency.display_name.clone(),
    }
}

fn state_name(state: GrantState) -> &'static str {
    match state {
        GrantState::Granted => "Granted",
        GrantState::Pending => "Pending",
        GrantState::Denied => "Denied",
    }
}

fn state_paint(state: &str) -> Paint {
    match state {
        "Granted" => Paint::Good,
        "Pending" => Paint::Warning,
        "Denied" => Paint::Bad,
        _ => Paint::Dim,
    }
}

/// `H17.32 (thanh-khe)`: the code, and the Tenant when it adds something.
fn agency_label(agency: &AgencyRef) -> String {
    match &agency.tenant {
        Some(tenant) => format!("{} ({tenant})", agency.code),
        None => agency.code.clone(),
    }
}

/// The grants as a table, then the provided APIs with their approvals.
pub fn render(report: &GrantsReport, colour: bool) -> String {
    let mut out = String::new();
    let mut table = Table::new(&["provider", "api", "consumer", "service", "state", "reason"]);
    for g in &report.grants {
        table.push(vec![
            agency_label(&g.provider).into(),
            g.api.as_str().into(),
            agency_label(&g.consumer).into(),
            g.consumer_service.as_str().into(),
            Cell::painted(g.state.as_str(), state_paint(&g.state)),
            g.reason.as_str().into(),
        ]);
    }
    if table.is_empty() {
        out.push_str("no consumptions\n");
    } else {
        out.push_str(&table.render(colour));
    }
    let blocked: Vec<&Grant> = report.grants.iter().filter(|g| g.state != "Granted" && !g.message.is_empty()).collect();
    for g in blocked {
        out.push_str(&format!("{} {} → {}/{}: {}\n", g.state, g.consumer_service, g.provider.code, g.api, g.message));
    }
    out.push('\n');
    let mut table = Table::new(&["provider", "api", "service", "open data", "consumers"]);
    for p in &report.provided_apis {
        let consumers: Vec<String> = p
            .consumers
            .iter()
            .map(|c| {
                let service = if c.service == "*" { String::new() } else { format!("/{}", c.service) };
                let verb = if c.decision == "Deny" { " (denied)" } else { "" };
                format!("{}{service}{verb}", c.agency_code)
            })
            .collect();
        let consumers = if p.open_data { "everyone".to_owned() } else { consumers.join(", ") };
        table.push(vec![
            agency_label(&p.provider).into(),
            p.api.as_str().into(),
            p.provider_service.as_str().into(),
            (if p.open_data { "yes" } else { "no" }).into(),
            consumers.into(),
        ]);
    }
    if table.is_empty() {
        out.push_str("no provided APIs\n");
    } else {
        out.push_str(&table.render(colour));
    }
    out
}

/// The grants as a Graphviz digraph: agencies as boxes, an edge from consumer to provider per
/// consumption, labelled with the API and coloured by state (`dot -Tsvg`).
pub fn dot(report: &GrantsReport) -> String {
    // One node per agency, whichever form its code is written in.
    let mut agencies: BTreeMap<String, &AgencyRef> = BTreeMap::new();
    for agency in report.grants.iter().flat_map(|g| [&g.consumer, &g.provider]) {
        agencies.entry(normalise(&agency.code)).or_insert(agency);
    }
    for p in &report.provided_apis {
        agencies.entry(normalise(&p.provider.code)).or_insert(&p.provider);
    }
    let mut out = String::from(
        "digraph lgsp {\n  rankdir=LR;\n  node [shape=box, fontname=\"sans-serif\"];\n  edge [fontname=\"sans-serif\", fontsize=10];\n",
    );
    for (code, agency) in &agencies {
        let label =
            if agency.display_name.is_empty() { code.clone() } else { format!("{code}\n{}", agency.display_name) };
        out.push_str(&format!("  {} [label={}];\n", quote(code), quote(&label)));
    }
    for g in &report.grants {
        let (color, style) = match g.state.as_str() {
            "Granted" => ("darkgreen", "solid"),
            "Pending" => ("orange", "dashed"),
            "Denied" => ("red", "dotted"),
            _ => ("gray", "dashed"),
        };
        let label = if g.reason.is_empty() {
            format!("{}\n{}", g.api, g.state)
        } else {
            format!("{}\n{} ({})", g.api, g.state, g.reason)
        };
        out.push_str(&format!(
            "  {} -> {} [label={}, color={color}, fontcolor={color}, style={style}];\n",
            quote(&normalise(&g.consumer.code)),
            quote(&normalise(&g.provider.code)),
            quote(&label)
        ));
    }
    out.push_str("}\n");
    out
}

/// A DOT string literal: quotes and backslashes escaped, line breaks as `\n`.
fn quote(text: &str) -> String {
    let escaped = text.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n");
    format!("\"{escaped}\"")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures;
    use govpaas_crds::data_sharing::{ConsumptionStatus, DataSharingServiceStatus, RouteStatus};

    /// The example's services as the operator reports them: Thanh Khê's consumption granted.
    fn services() -> Vec<DataSharingService> {
        let mut services = fixtures::data_sharing();
        for service in &mut services {
            service.status = Some(match service.name_any().as_str() {
                "du-lieu-noi-vu" => DataSharingServiceStatus {
                    routes: vec![RouteStatus {
                        api: "can-bo-cong-chuc".into(),
                        url: "https://lgsp.danang.gov.vn/H17.01/can-bo-cong-chuc/".into(),
                    }],
                    // It consumes the national population database (the Platform's catalogue lists it).
                    consumptions: vec![ConsumptionStatus {
                        name: "dan-cu".into(),
                        state: GrantState::Granted,
                        reason: "NationalPlatform".into(),
                        message: "csdlqg-dan-cu of the national platform (NDXP)".into(),
                        url: Some("https://lgsp.danang.gov.vn/ndxp/csdlqg-dan-cu/".into()),
                    }],
                    ..Default::default()
                },
                _ => DataSharingServiceStatus {
                    consumptions: vec![ConsumptionStatus {
                        name: "can-bo".into(),
                        state: GrantState::Granted,
                        reason: "Approved".into(),
                        message: "H17.01 approves H17.32".into(),
                        url: Some("https://lgsp.danang.gov.vn/H17.01/can-bo-cong-chuc/".into()),
                    }],
                    ..Default::default()
                },
            });
        }
        services
    }

    /// Hải Châu asks for the same API and for a national one, and the operator has not decided yet.
    fn hai_chau_asks() -> DataSharingService {
        fixtures::objects::<DataSharingService>(
            "
apiVersion: govpaas.io/v1alpha1
kind: DataSharingService
metadata: {name: tra-cuu, namespace: hai-chau}
spec:
  consumes:
    - {name: can-bo, agencyCode: '000.00.01.H17', api: can-bo-cong-chuc}
    - {name: dan-cu, national: true, api: csdlqg-dan-cu}
status:
  consumptions:
    - {name: can-bo, state: Denied, reason: DeniedByProvider, message: 'H17.01 approves only mot-cua of H17.31: ask it to list tra-cuu'}
",
            "DataSharingService",
        )
        .remove(0)
    }

    #[test]
    fn who_may_call_what() {
        let report = build(&services(), &fixtures::danang(), Scope::Complete, None);
        // Thanh Khê's grant, and Sở Nội vụ's of the national population database.
        assert_eq!(report.grants.len(), 2);
        let national = report.grants.iter().find(|g| g.national).unwrap();
        assert_eq!(
            (national.consumer_service.as_str(), national.provider.code.as_str()),
            ("so-noivu/du-lieu-noi-vu", NATIONAL)
        );
        assert_eq!((national.state.as_str(), national.reason.as_str()), ("Granted", "NationalPlatform"));
        let grant = report.grants.iter().find(|g| !g.national).unwrap();
        assert_eq!(
            grant.consumer,
            AgencyRef {
                code: "H17.32".into(),
                tenant: Some("thanh-khe".into()),
                display_name: "Phường Thanh Khê".into()
            }
        );
        assert_eq!(grant.consumer_service, "thanh-khe/mot-cua");
        assert_eq!((grant.provider.code.as_str(), grant.provider.tenant.as_deref()), ("H17.01", Some("so-noivu")));
        assert_eq!(
            (grant.api.as_str(), grant.state.as_str(), grant.reason.as_str()),
            ("can-bo-cong-chuc", "Granted", "Approved")
        );
        let api = &report.provided_apis[0];
        assert_eq!(api.provider_service, "so-noivu/du-lieu-noi-vu");
        assert_eq!(api.url.as_deref(), Some("https://lgsp.danang.gov.vn/H17.01/can-bo-cong-chuc/"));
        let consumers: Vec<(&str, &str)> =
            api.consumers.iter().map(|c| (c.agency_code.as_str(), c.service.as_str())).collect();
        assert_eq!(consumers, [("H17.32", "*"), ("H17.31", "mot-cua")]);
    }

    #[test]
    fn providers_are_matched_by_agency_in_either_code_form_and_undecided_is_unknown() {
        let mut all = services();
        all.push(hai_chau_asks());
        let report = build(&all, &fixtures::danang(), Scope::Complete, None);
        let denied = report
            .grants
            .iter()
            .find(|g| g.consumer_service == "hai-chau/tra-cuu" && g.api == "can-bo-cong-chuc")
            .unwrap();
        assert_eq!(denied.provider.tenant.as_deref(), Some("so-noivu"), "000.00.01.H17 is H17.01");
        assert_eq!((denied.state.as_str(), denied.reason.as_str()), ("Denied", "DeniedByProvider"));
        let national = report.grants.iter().find(|g| g.national && g.consumer_service == "hai-chau/tra-cuu").unwrap();
        assert_eq!((national.provider.code.as_str(), national.state.as_str()), (NATIONAL, "Unknown"));
    }

    #[test]
    fn the_agency_filter_keeps_both_sides_in_either_code_form() {
        let mut all = services();
        all.push(hai_chau_asks());
        let thanh_khe = build(&all, &fixtures::danang(), Scope::Complete, Some("000.00.32.H17"));
        assert_eq!(thanh_khe.grants.len(), 1);
        assert_eq!(thanh_khe.provided_apis.len(), 1, "it is among the API's consumers");
        let noi_vu = build(&all, &fixtures::danang(), Scope::Complete, Some("H17.01"));
        assert_eq!(noi_vu.grants.len(), 3, "the two it provides, and its own national one");
        let nobody = build(&all, &fixtures::danang(), Scope::Complete, Some("H17.40"));
        assert!(nobody.grants.is_empty() && nobody.provided_apis.is_empty());
    }

    #[test]
    fn the_table_and_the_graph() {
        let mut all = services();
        all.push(hai_chau_asks());
        let report = build(&all, &fixtures::danang(), Scope::Complete, None);
        let text = render(&report, false);
        let expected = "\
PROVIDER                  API               CONSUMER            SERVICE                  STATE    REASON
000.00.01.H17 (so-noivu)  can-bo-cong-chuc  H17.31 (hai-chau)   hai-chau/tra-cuu         Denied   DeniedByProvider
NDXP                      csdlqg-dan-cu     H17.31 (hai-chau)   hai-chau/tra-cuu         Unknown
NDXP                      csdlqg-dan-cu     H17.01 (so-noivu)   so-noivu/du-lieu-noi-vu  Granted  NationalPlatform
H17.01 (so-noivu)         can-bo-cong-chuc  H17.32 (thanh-khe)  thanh-khe/mot-cua        Granted  Approved
Denied hai-chau/tra-cuu → 000.00.01.H17/can-bo-cong-chuc: H17.01 approves only mot-cua of H17.31: ask it to list tra-cuu
";
        assert!(text.starts_with(expected), "{text}");
        assert!(text.contains("H17.32, H17.31/mot-cua"), "{text}");
        let graph = dot(&report);
        assert!(graph.starts_with("digraph lgsp {\n"), "{graph}");
        assert!(
            graph.contains(
                "  \"H17.32\" -> \"H17.01\" [label=\"can-bo-cong-chuc\\nGranted (Approved)\", color=darkgreen"
            ),
            "{graph}"
        );
        assert!(graph.contains("  \"H17.01\" [label=\"H17.01\\nSở Nội vụ thành phố Đà Nẵng\"];"), "{graph}");
        assert!(graph.contains("\"H17.31\" -> \"NDXP\""), "{graph}");
        assert!(graph.trim_end().ends_with('}'));
    }

    #[test]
    fn dot_strings_are_escaped() {
        assert_eq!(quote("a \"b\" \\ c\nd"), "\"a \\\"b\\\" \\\\ c\\nd\"");
    }
}
