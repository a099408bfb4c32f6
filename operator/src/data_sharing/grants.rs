//! Who may call whose API: X-Road's access rights, declared in YAML on both sides. A pure function
//! of every DataSharingService, the agencies of their Tenants and the Platform; no client.
//!
//! A consumption (`spec.consumes[]` naming `agencyCode` and `api`) is
//! - `Granted` when the agency with that code provides the API in one of its DataSharingServices
//!   and lists the consumer's agency among the API's `consumers` with `decision: Approve`, for
//!   `service: "*"` or for the consumer's DataSharingService by name; or when the API is open data;
//! - `Denied` (`DeniedByProvider`) when the provider's matching entry says `Deny` (an entry naming
//!   the consumer's DataSharingService outranks a `*` entry; between entries of the same rank,
//!   `Deny` wins);
//! - `Denied` (`ApiNotFound`) when no agency with that code provides an API of that name;
//! - `Denied` (`SelfConsumption`) when the API is one the consuming DataSharingService provides
//!   itself, whichever form its agency code is written in (admission refuses this already);
//! - `Pending` (`WaitingForProvider`) otherwise: the provider has not answered.
//!
//! A consumption of the national platform (`national: true`) is `Granted` when the Platform
//! configures `lgsp.ndxp`, else `Denied` (`NationalPlatformNotConfigured`).
//!
//! Agency codes are compared by agency, not by spelling: `H48.12` and `000.00.12.H48` are one
//! agency. An API name belongs to one DataSharingService of an agency: when two declare it, the
//! older keeps it and the younger reports `ApiNameConflict` for it.

use std::collections::{BTreeMap, BTreeSet};

use govpaas_crds::data_sharing::{AccessDecision, ConsumedApi, DataSharingService, GrantState, ProvidedApi};
use govpaas_crds::platform::NdxpUpstream;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;

/// The identity kind of a DataSharingService: `spiffe://<base>/agency/<code>/dss/<name>`.
pub const IDENTITY_KIND: &str = "dss";

/// Consumption reasons.
pub mod reasons {
    /// The provider approved the consumer.
    pub const APPROVED: &str = "Approved";
    /// The API is open data: anyone who asks may call it.
    pub const OPEN_DATA: &str = "OpenData";
    /// The national platform is configured: its APIs go through the province's gateway.
    pub const NATIONAL_PLATFORM: &str = "NationalPlatform";
    /// The provider lists the consumer with `decision: Deny`.
    pub const DENIED_BY_PROVIDER: &str = "DeniedByProvider";
    /// No agency with that code provides an API of that name.
    pub const API_NOT_FOUND: &str = "ApiNotFound";
    /// The provider has not listed the consumer yet.
    pub const WAITING_FOR_PROVIDER: &str = "WaitingForProvider";
    /// `national: true` but the Platform has no `lgsp.ndxp`.
    pub const NATIONAL_NOT_CONFIGURED: &str = "NationalPlatformNotConfigured";
    /// Another DataSharingService of the same agency, older, provides an API of that name.
    pub const API_NAME_CONFLICT: &str = "ApiNameConflict";
    /// The consumption names an API that the consuming DataSharingService provides itself (its
    /// agency written in either form): admission refuses it, the controller never grants it.
    pub const SELF_CONSUMPTION: &str = "SelfConsumption";
}

/// Agency codes are compared, and addressed on the gateway, in Decision 20/2020 form: the one rule
/// lives beside the API ([`govpaas_crds::agency::normalise`]), shared with admission's CEL.
use govpaas_crds::agency::normalise;

/// A DataSharingService with its agency.
#[derive(Clone, Debug)]
pub struct Member<'a> {
    pub service: &'a DataSharingService,
    pub namespace: String,
    pub name: String,
    /// Its Tenant's name.
    pub tenant: String,
    /// Its agency's code as its Tenant writes it: what its identity carries.
    pub agency_code: String,
    /// The same code in Decision 20/2020 form.
    pub agency: String,
}

impl Member<'_> {
    fn created(&self) -> Option<&Time> {
        self.service.metadata.creation_timestamp.as_ref()
    }

    fn is(&self, namespace: &str, name: &str) -> bool {
        self.namespace == namespace && self.name == name
    }
}

/// The members among `services` whose namespace `tenant_of` resolves to `(tenant, agency code)`,
/// oldest first (creation time, then namespace and name: a fixed order even within one second).
pub fn members<'a>(
    services: impl IntoIterator<Item = &'a DataSharingService>,
    tenant_of: impl Fn(&str) -> Option<(String, String)>,
) -> Vec<Member<'a>> {
    let mut members: Vec<Member<'a>> = services
        .into_iter()
        .filter(|service| service.metadata.deletion_timestamp.is_none())
        .filter_map(|service| {
            let namespace = service.namespace()?;
            let (tenant, agency_code) = tenant_of(&namespace)?;
            Some(Member {
                service,
                name: service.name_any(),
                namespace,
                tenant,
                agency: normalise(&agency_code),
                agency_code,
            })
        })
        .collect();
    members.sort_by(|a, b| {
        let key = |m: &Member<'a>| (m.created().is_none(), m.created().cloned(), m.namespace.clone(), m.name.clone());
        key(a).cmp(&key(b))
    });
    members
}

/// What a consumption is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub state: GrantState,
    pub reason: &'static str,
    pub message: String,
    /// Where it is served on the gateway once granted: `/<code>/<api>/` or `/ndxp/<api>/`.
    pub path: Option<String>,
}

/// Every DataSharingService and who provides what.
pub struct Directory<'a> {
    /// Oldest first.
    members: Vec<Member<'a>>,
    /// (agency, API) → the member that provides it (the oldest that declares it) and the API.
    providers: BTreeMap<(String, String), (usize, &'a ProvidedApi)>,
    /// The agencies with a Tenant, normalised.
    agencies: BTreeSet<String>,
    /// The national platform, when the Platform configures one (its catalogue says which APIs).
    national: Option<&'a NdxpUpstream>,
}

impl<'a> Directory<'a> {
    /// `members` oldest first (see [`members`]); `agencies`: the codes of every Tenant;
    /// `national`: the Platform's `lgsp.ndxp`.
    pub fn new(
        members: Vec<Member<'a>>,
        agencies: impl IntoIterator<Item = String>,
        national: Option<&'a NdxpUpstream>,
    ) -> Self {
        let mut providers = BTreeMap::new();
        for (index, member) in members.iter().enumerate() {
            for api in &member.service.spec.provides {
                providers.entry((member.agency.clone(), api.name.clone())).or_insert((index, api));
            }
        }
        let agencies = agencies.into_iter().map(|code| normalise(&code)).collect();
        Directory { members, providers, agencies, national }
    }

    /// The member `namespace/name`, if it belongs to a known tenant.
    pub fn member(&self, namespace: &str, name: &str) -> Option<&Member<'a>> {
        self.members.iter().find(|m| m.is(namespace, name))
    }

    /// Who provides `api` of `agency` (normalised).
    pub fn provider_of(&self, agency: &str, api: &str) -> Option<(&Member<'a>, &'a ProvidedApi)> {
        self.providers.get(&(agency.to_owned(), api.to_owned())).map(|(index, api)| (&self.members[*index], *api))
    }

    /// The older member of the same agency that holds `api`'s name, when it is not `member`.
    pub fn conflict(&self, member: &Member<'_>, api: &str) -> Option<&Member<'a>> {
        self.provider_of(&member.agency, api)
            .map(|(owner, _)| owner)
            .filter(|owner| !owner.is(&member.namespace, &member.name))
    }

    /// How many APIs the tenant's members older than `member` provide (all of them but `member`
    /// when it is not in the directory).
    pub fn lgsp_apis_before(&self, member: &Member<'_>) -> i64 {
        self.members
            .iter()
            .take_while(|m| !m.is(&member.namespace, &member.name))
            .filter(|m| m.tenant == member.tenant)
            .map(|m| i64::try_from(m.service.spec.provides.len()).unwrap_or(i64::MAX))
            .sum()
    }

    /// The state of `consumer`'s consumption `consumed`.
    pub fn decide(&self, consumer: &Member<'_>, consumed: &ConsumedApi) -> Decision {
        let api = &consumed.api;
        if consumed.national {
            return match self.national {
                Some(ndxp) if ndxp.apis.iter().any(|listed| listed.name == *api) => Decision {
                    state: GrantState::Granted,
                    reason: reasons::NATIONAL_PLATFORM,
                    message: format!(
                        "{api} of the national platform (NDXP), through the province's gateway with the province's identity"
                    ),
                    path: Some(govpaas_crds::lgsp::national_path(api)),
                },
                Some(ndxp) => Decision {
                    state: GrantState::Denied,
                    reason: reasons::API_NOT_FOUND,
                    message: format!(
                        "the national platform's catalogue (Platform spec.lgsp.ndxp.apis) lists no API {api:?}{}: ask the provincial admin to add it, or correct the name",
                        if ndxp.apis.is_empty() {
                            String::from(" (it lists none)")
                        } else {
                            format!(
                                " (it lists {})",
                                ndxp.apis.iter().map(|a| a.name.as_str()).collect::<Vec<_>>().join(", ")
                            )
                        }
                    ),
                    path: None,
                },
                None => Decision {
                    state: GrantState::Denied,
                    reason: reasons::NATIONAL_NOT_CONFIGURED,
                    message: format!(
                        "{api} is an API of the national platform, but the Platform has no spec.lgsp.ndxp: ask the platform engineer to configure the national platform's upstream"
                    ),
                    path: None,
                },
            };
        }
        let written = consumed.agency_code.clone().unwrap_or_default();
        let agency = normalise(&written);
        let Some((provider, provided)) = self.provider_of(&agency, api) else {
            let message = if self.agencies.contains(&agency) {
                let offered: Vec<&str> =
                    self.providers.keys().filter(|(code, _)| code == &agency).map(|(_, name)| name.as_str()).collect();
                let offered = if offered.is_empty() { "none".to_owned() } else { offered.join(", ") };
                format!("agency {written} provides no API named {api} (its APIs: {offered}): check spec.consumes api")
            } else {
                format!(
                    "no agency with code {written} is on this platform: check spec.consumes agencyCode, or ask the provincial admin whether that agency is hosted here"
                )
            };
            return Decision { state: GrantState::Denied, reason: reasons::API_NOT_FOUND, message, path: None };
        };
        if provider.is(&consumer.namespace, &consumer.name) {
            return Decision {
                state: GrantState::Denied,
                reason: reasons::SELF_CONSUMPTION,
                message: format!(
                    "{api} is an API this DataSharingService provides itself (agency {written} is its own agency {}): call it directly, not through the LGSP",
                    consumer.agency_code
                ),
                path: None,
            };
        }
        let path = Some(govpaas_crds::lgsp::api_path(&provider.agency, api));
        let by =
            format!("agency {} (DataSharingService {}/{})", provider.agency_code, provider.namespace, provider.name);
        if provided.open_data {
            return Decision {
                state: GrantState::Granted,
                reason: reasons::OPEN_DATA,
                message: format!("{api} of {by} is open data: anyone may call it, without a client certificate"),
                path,
            };
        }
        let entries: Vec<_> =
            provided.consumers.iter().filter(|entry| normalise(&entry.agency_code) == consumer.agency).collect();
        let named: Vec<_> = entries.iter().filter(|entry| entry.service == consumer.name).collect();
        let chosen =
            if named.is_empty() { entries.iter().filter(|entry| entry.service == "*").collect() } else { named };
        let me = &consumer.agency_code;
        if chosen.iter().any(|entry| entry.decision == AccessDecision::Deny) {
            Decision {
                state: GrantState::Denied,
                reason: reasons::DENIED_BY_PROVIDER,
                message: format!(
                    "{by} denies agency {me} access to {api} (decision: Deny in its consumers): contact the provider if you need it"
                ),
                path: None,
            }
        } else if chosen.is_empty() {
            Decision {
                state: GrantState::Pending,
                reason: reasons::WAITING_FOR_PROVIDER,
                message: format!(
                    "{by} provides {api} but has not approved agency {me}: ask it to add {{agencyCode: {me}}} (or with service: {}) to the API's consumers",
                    consumer.name
                ),
                path: None,
            }
        } else {
            Decision {
                state: GrantState::Granted,
                reason: reasons::APPROVED,
                message: format!("{by} approves agency {me} for {api}"),
                path,
            }
        }
    }

    /// The members granted `api` of `provider` (not open data): those that ask for it and that the
    /// provider approves, in directory order.
    pub fn granted_consumers(&self, provider: &Member<'_>, api: &str) -> Vec<&Member<'a>> {
        let owns = self.conflict(provider, api).is_none() && self.provider_of(&provider.agency, api).is_some();
        if !owns {
            return Vec::new();
        }
        self.members
            .iter()
            .filter(|consumer| {
                consumer.service.spec.consumes.iter().any(|consumed| {
                    !consumed.national
                        && consumed.api == api
                        && consumed.agency_code.as_deref().map(normalise).as_deref() == Some(provider.agency.as_str())
                        && self.decide(consumer, consumed).reason == reasons::APPROVED
                })
            })
            .collect()
    }
}

/// Test support shared by the unit tests of this controller.
#[cfg(test)]
pub(crate) mod testing {
    use govpaas_crds::Tenant;
    use kube::ResourceExt;

    use super::{DataSharingService, Directory, NdxpUpstream, members};

    /// A national platform whose catalogue lists `apis`.
    pub fn ndxp(apis: &[&str]) -> NdxpUpstream {
        NdxpUpstream {
            url: "https://ndxp.gov.vn/api".into(),
            agency_code: "H48".into(),
            ca_config_map: "ndxp-ca".into(),
            client_secret_name: None,
            apis: apis
                .iter()
                .map(|name| govpaas_crds::platform::NationalApi {
                    name: (*name).into(),
                    description: String::new(),
                    rate_limit: None,
                })
                .collect(),
        }
    }

    /// The directory of `services`, each belonging to the fixture Tenant that lists its namespace.
    pub fn directory<'a>(
        services: &'a [DataSharingService],
        tenants: &[Tenant],
        national: Option<&'a NdxpUpstream>,
    ) -> Directory<'a> {
        let tenant_of = |namespace: &str| {
            tenants
                .iter()
                .find(|t| t.namespace_names().iter().any(|n| n == namespace))
                .map(|t| (t.name_any(), t.spec.agency.code.clone()))
        };
        Directory::new(members(services, tenant_of), tenants.iter().map(|t| t.spec.agency.code.clone()), national)
    }
}

#[cfg(test)]
mod tests {
    use govpaas_crds::Tenant;

    use super::*;
    use crate::fixtures;

    struct World {
        services: Vec<DataSharingService>,
        tenants: Vec<Tenant>,
        /// A national platform whose catalogue lists the population database.
        ndxp: NdxpUpstream,
    }

    fn world() -> World {
        let case = fixtures::case("data-sharing/grants.yaml");
        let ndxp = testing::ndxp(&["csdlqg-dan-cu"]);
        World { services: case.all("DataSharingService"), tenants: case.all("Tenant"), ndxp }
    }

    fn directory(world: &World, national: bool) -> Directory<'_> {
        super::testing::directory(&world.services, &world.tenants, national.then_some(&world.ndxp))
    }

    fn decide(directory: &Directory<'_>, namespace: &str, name: &str, consumption: &str) -> Decision {
        let member = directory.member(namespace, name).unwrap_or_else(|| panic!("no member {namespace}/{name}"));
        let consumed = member.service.spec.consumes.iter().find(|c| c.name == consumption).unwrap();
        directory.decide(member, consumed)
    }

    #[test]
    fn members_have_their_tenants_agency_and_come_oldest_first() {
        let world = world();
        let directory = directory(&world, false);
        let names: Vec<_> = directory.members.iter().map(|m| format!("{}/{}", m.namespace, m.name)).collect();
        assert_eq!(
            names,
            [
                "so-tu-phap/ho-tich",
                "xa-hoa-vang/mot-cua",
                "so-tu-phap/ho-tich-moi",
                "so-xay-dung/cap-phep",
                "so-tai-nguyen/dat-dai"
            ]
        );
        let legacy = directory.member("xa-hoa-vang", "mot-cua").unwrap();
        assert_eq!((legacy.agency_code.as_str(), legacy.agency.as_str()), ("000.00.40.H48", "H48.40"));
        assert!(directory.member("khong-co-tenant", "lac").is_none(), "a namespace without a tenant has no member");
    }

    #[test]
    fn an_approval_for_any_service_of_the_agency_grants() {
        let world = world();
        let d = directory(&world, false);
        let decision = decide(&d, "xa-hoa-vang", "mot-cua", "ho-tich");
        assert_eq!((decision.state, decision.reason), (GrantState::Granted, "Approved"));
        assert_eq!(decision.path.as_deref(), Some("/H48.12/tra-cuu-ho-tich/"));
    }

    #[test]
    fn an_approval_naming_another_service_does_not_grant() {
        let world = world();
        let d = directory(&world, false);
        // so-xay-dung (H48.20) is approved for its service `tiep-nhan` only; `cap-phep` asks.
        let decision = decide(&d, "so-xay-dung", "cap-phep", "ho-tich");
        assert_eq!((decision.state, decision.reason), (GrantState::Pending, "WaitingForProvider"));
        assert!(decision.message.contains("{agencyCode: H48.20}"), "{}", decision.message);
        assert!(decision.path.is_none());
    }

    #[test]
    fn a_service_specific_entry_outranks_the_agency_wide_one() {
        let world = world();
        let d = directory(&world, false);
        // H48.40: `*` Approve, but `mot-cua` named with Deny for `giay-phep`.
        let decision = decide(&d, "xa-hoa-vang", "mot-cua", "giay-phep");
        assert_eq!((decision.state, decision.reason), (GrantState::Denied, "DeniedByProvider"));
        assert!(decision.message.contains("contact the provider"), "{}", decision.message);
    }

    #[test]
    fn nothing_from_the_provider_is_pending_and_unknown_apis_are_not_found() {
        let world = world();
        let d = directory(&world, false);
        let pending = decide(&d, "xa-hoa-vang", "mot-cua", "dat-dai");
        assert_eq!((pending.state, pending.reason), (GrantState::Pending, "WaitingForProvider"));
        let missing_api = decide(&d, "xa-hoa-vang", "mot-cua", "khong-co-api");
        assert_eq!((missing_api.state, missing_api.reason), (GrantState::Denied, "ApiNotFound"));
        assert!(
            missing_api.message.contains("its APIs: du-lieu-mo, giay-phep, ho-tich-moi-api, tra-cuu-ho-tich"),
            "{}",
            missing_api.message
        );
        let missing_agency = decide(&d, "xa-hoa-vang", "mot-cua", "khong-co-co-quan");
        assert_eq!(missing_agency.reason, "ApiNotFound");
        assert!(missing_agency.message.contains("no agency with code H48.99"), "{}", missing_agency.message);
    }

    #[test]
    fn open_data_is_granted_to_anyone_who_asks() {
        let world = world();
        let d = directory(&world, false);
        let decision = decide(&d, "so-xay-dung", "cap-phep", "du-lieu-mo");
        assert_eq!((decision.state, decision.reason), (GrantState::Granted, "OpenData"));
        assert_eq!(decision.path.as_deref(), Some("/H48.12/du-lieu-mo/"));
        let provider = d.member("so-tu-phap", "ho-tich").unwrap();
        assert!(d.granted_consumers(provider, "du-lieu-mo").is_empty(), "open data lists no consumers");
    }

    #[test]
    fn national_consumptions_need_the_platforms_ndxp() {
        let world = world();
        let without = decide(&directory(&world, false), "xa-hoa-vang", "mot-cua", "dan-cu");
        assert_eq!((without.state, without.reason), (GrantState::Denied, "NationalPlatformNotConfigured"));
        let with = decide(&directory(&world, true), "xa-hoa-vang", "mot-cua", "dan-cu");
        assert_eq!((with.state, with.reason), (GrantState::Granted, "NationalPlatform"));
        assert_eq!(with.path.as_deref(), Some("/ndxp/csdlqg-dan-cu/"));
    }

    #[test]
    fn a_national_api_the_catalogue_does_not_list_is_not_found() {
        let mut world = world();
        world.ndxp = testing::ndxp(&["csdlqg-dat-dai", "csdlqg-doanh-nghiep"]);
        let refused = decide(&directory(&world, true), "xa-hoa-vang", "mot-cua", "dan-cu");
        assert_eq!((refused.state, refused.reason), (GrantState::Denied, "ApiNotFound"));
        assert!(refused.message.contains("csdlqg-dan-cu"), "{}", refused.message);
        assert!(refused.message.contains("csdlqg-dat-dai, csdlqg-doanh-nghiep"), "{}", refused.message);
        assert_eq!(refused.path, None);
        world.ndxp.apis.clear();
        let empty = decide(&directory(&world, true), "xa-hoa-vang", "mot-cua", "dan-cu");
        assert!(empty.message.contains("it lists none"), "{}", empty.message);
    }

    #[test]
    fn the_provider_sees_exactly_the_consumers_both_sides_agreed_on() {
        let world = world();
        let d = directory(&world, false);
        let provider = d.member("so-tu-phap", "ho-tich").unwrap();
        let granted: Vec<_> = d.granted_consumers(provider, "tra-cuu-ho-tich").iter().map(|m| m.name.clone()).collect();
        assert_eq!(granted, ["mot-cua"], "cap-phep asked but is not approved");
        assert!(d.granted_consumers(provider, "giay-phep").is_empty(), "mot-cua is denied giay-phep");
    }

    #[test]
    fn an_api_name_belongs_to_the_older_service_of_an_agency() {
        let world = world();
        let d = directory(&world, false);
        let younger = d.member("so-tu-phap", "ho-tich-moi").unwrap();
        assert_eq!(d.conflict(younger, "tra-cuu-ho-tich").map(|m| m.name.as_str()), Some("ho-tich"));
        assert!(d.conflict(younger, "ho-tich-moi-api").is_none());
        assert!(d.granted_consumers(younger, "tra-cuu-ho-tich").is_empty());
        let older = d.member("so-tu-phap", "ho-tich").unwrap();
        assert!(d.conflict(older, "tra-cuu-ho-tich").is_none());
    }

    #[test]
    fn the_tenants_older_services_count_against_its_lgsp_apis() {
        let world = world();
        let d = directory(&world, false);
        assert_eq!(d.lgsp_apis_before(d.member("so-tu-phap", "ho-tich").unwrap()), 0);
        // ho-tich (3 APIs) is older, in the same tenant; mot-cua is another tenant's.
        assert_eq!(d.lgsp_apis_before(d.member("so-tu-phap", "ho-tich-moi").unwrap()), 3);
    }

    #[test]
    fn codes_compare_by_agency() {
        assert_eq!(normalise("000.00.12.H48"), "H48.12");
        assert_eq!(normalise("H48.12"), "H48.12");
        assert_eq!(normalise("not a code"), "not a code");
    }

    #[test]
    fn consuming_its_own_api_is_denied_in_either_form_even_when_approved() {
        let mut world = world();
        // so-tu-phap/ho-tich (H48.12) asks for its own API, once in each form, and even lists its
        // own agency as an approved consumer.
        let provider = world.services.iter_mut().find(|s| s.name_any() == "ho-tich").unwrap();
        provider.spec.provides[0].consumers.push(govpaas_crds::data_sharing::ApiConsumer {
            agency_code: "000.00.12.H48".into(),
            service: "*".into(),
            decision: AccessDecision::Approve,
        });
        for (name, code) in [("plain", "H48.12"), ("legacy", "000.00.12.H48")] {
            provider.spec.consumes.push(ConsumedApi {
                name: name.into(),
                agency_code: Some(code.into()),
                national: false,
                api: "tra-cuu-ho-tich".into(),
                purpose: String::new(),
            });
        }
        let d = directory(&world, false);
        for name in ["plain", "legacy"] {
            let decision = decide(&d, "so-tu-phap", "ho-tich", name);
            assert_eq!((decision.state, decision.reason), (GrantState::Denied, "SelfConsumption"), "{name}");
            assert!(decision.message.contains("call it directly, not through the LGSP"), "{}", decision.message);
            assert!(decision.path.is_none());
        }
        let provider = d.member("so-tu-phap", "ho-tich").unwrap();
        let granted: Vec<_> = d.granted_consumers(provider, "tra-cuu-ho-tich").iter().map(|m| m.name.clone()).collect();
        assert_eq!(granted, ["mot-cua"], "a service is never its own consumer");
    }
}
