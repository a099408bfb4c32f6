//! Property tests of the parsers of user input (stable toolchain, proptest): agency codes,
//! quantities, durations, hosts and domains, API paths and free text. Each never panics, and
//! accepts exactly what the generated CRD's schema accepts (its pattern and length bounds, read
//! from the CRD itself and compiled with the `regex` crate) — so a value the API server lets
//! through is never refused later by the operator with a less clear message, and the other way
//! round.

use kube::CustomResourceExt;
use proptest::prelude::*;
use regex::Regex;
use serde_json::Value;

use crate::agency::{AgencyCode, normalise};
use crate::common::{DURATION_CEL_SAFE_PATTERN, check_host, check_http_path, invisible_character, parse_duration};
use crate::quantity::{Amount, QuantityError, Style};
use crate::{DataSharingService, Platform, Tenant};

/// The schema of the field at `path` (dot-separated property names under `spec`) in the CRD of
/// `K`, as the API server receives it.
fn field<K: CustomResourceExt>(path: &str) -> Value {
    let crd = serde_json::to_value(K::crd()).expect("a CRD serialises");
    let mut schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
    for name in path.split('.') {
        schema = match name {
            "[]" => &schema["items"],
            name => &schema["properties"][name],
        };
    }
    assert!(schema.is_object(), "no field spec.{path}");
    schema.clone()
}

/// What the schema of a string field accepts: its pattern and length bounds (in characters).
struct StringSchema {
    pattern: Regex,
    min: usize,
    max: usize,
}

impl StringSchema {
    fn of<K: CustomResourceExt>(path: &str) -> Self {
        let schema = field::<K>(path);
        let pattern = schema["pattern"].as_str().unwrap_or_else(|| panic!("spec.{path} has no pattern"));
        let bound = |key: &str| schema[key].as_u64().map(|n| usize::try_from(n).unwrap());
        StringSchema {
            pattern: Regex::new(pattern).expect("the schema's pattern is RE2 and Rust regex syntax alike"),
            min: bound("minLength").unwrap_or(0),
            max: bound("maxLength").unwrap_or(usize::MAX),
        }
    }

    fn accepts(&self, s: &str) -> bool {
        let chars = s.chars().count();
        self.pattern.is_match(s) && chars >= self.min && chars <= self.max
    }
}

/// The schemas of every field fuzzed here, read once from the generated CRDs.
struct Schemas {
    agency_codes: Vec<(&'static str, StringSchema)>,
    durations: Vec<(&'static str, StringSchema)>,
    hosts: Vec<(&'static str, StringSchema)>,
    path: StringSchema,
    path_rules: usize,
}

fn schemas() -> &'static Schemas {
    static SCHEMAS: std::sync::LazyLock<Schemas> = std::sync::LazyLock::new(|| Schemas {
        agency_codes: vec![
            ("Tenant agency.code", StringSchema::of::<Tenant>("agency.code")),
            (
                "provides[].consumers[].agencyCode",
                StringSchema::of::<DataSharingService>("provides.[].consumers.[].agencyCode"),
            ),
            ("consumes[].agencyCode", StringSchema::of::<DataSharingService>("consumes.[].agencyCode")),
            ("lgsp.ndxp.agencyCode", StringSchema::of::<Platform>("lgsp.ndxp.agencyCode")),
        ],
        durations: [
            "certificates.rootCa",
            "certificates.tenantCa",
            "certificates.server",
            "certificates.client",
            "certificates.signing",
            "ca.propagationDelay",
            "lgsp.checkpointInterval",
        ]
        .into_iter()
        .map(|path| (path, StringSchema::of::<Platform>(path)))
        .collect(),
        hosts: vec![
            ("Platform baseDomain", StringSchema::of::<Platform>("baseDomain")),
            ("Tenant domain", StringSchema::of::<Tenant>("domain")),
            ("lgsp.host", StringSchema::of::<Platform>("lgsp.host")),
            ("Portal hosts", StringSchema::of::<crate::Portal>("hosts.[]")),
            ("DocumentService host", StringSchema::of::<crate::DocumentService>("host")),
        ],
        path: StringSchema::of::<DataSharingService>("provides.[].path"),
        path_rules: field::<DataSharingService>("provides.[].path")["x-kubernetes-validations"]
            .as_array()
            .map_or(0, Vec::len),
    });
    &SCHEMAS
}

/// Strings near a grammar: its alphabet, and anything at all.
fn near(alphabet: &'static str, max: usize) -> impl Strategy<Value = String> {
    prop_oneof![
        proptest::string::string_regex(&format!("[{alphabet}]{{0,{max}}}")).unwrap(),
        proptest::string::string_regex(&format!(".{{0,{max}}}")).unwrap(),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    #[test]
    fn agency_codes_parse_exactly_what_the_schema_accepts(
        s in prop_oneof![
            near("0-9A-Z.", 40),
            "[A-Z][0-9]{2}(\\.[0-9A-Z]{1,9}){0,5}",
            "[0-9]{2,4}\\.[0-9]{1,3}\\.[0-9]{1,3}\\.[A-Z][0-9]{1,3}",
        ],
    ) {
        let schema = &schemas().agency_codes[0].1;
        let parsed = AgencyCode::parse(&s);
        prop_assert_eq!(parsed.is_ok(), schema.accepts(&s), "{:?}: {:?}", s, parsed);
        match parsed {
            Err(error) => prop_assert!(error.to_string().starts_with("agency code") || error.to_string().starts_with("legacy agency code"), "{}", error),
            Ok(code) => {
                // The normal form is a code of the same agency, in Decision 20/2020 form, and
                // normalising is idempotent.
                let normal = normalise(&s);
                let again = AgencyCode::parse(&normal).expect("the normal form parses");
                prop_assert!(again.same_agency(&code));
                prop_assert_eq!(normalise(&normal), normal.clone());
                prop_assert!(schema.accepts(&normal), "{:?} normalises to {:?}, which the schema refuses", s, normal);
            }
        }
        // The same schema wherever a code is written.
        for (path, other) in &schemas().agency_codes {
            prop_assert_eq!(other.accepts(&s), schema.accepts(&s), "{}: {:?}", path, s);
        }
    }

    #[test]
    fn quantities_parse_what_kubernetes_grammar_accepts_and_round_trip(
        s in prop_oneof![
            near("0-9.+eEimnukKMGTPi -", 24),
            "[+-]?([0-9]{1,22}(\\.[0-9]{0,12})?|\\.[0-9]{1,12})(Ki|Mi|Gi|Ti|Pi|Ei|m|k|M|G|T|P|E|n|u|[eE][+-]?[0-9]{1,3})?",
        ],
    ) {
        // The quantity grammar of k8s.io/apimachinery (what CEL's isQuantity accepts).
        let grammar = Regex::new(r"^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)(Ki|Mi|Gi|Ti|Pi|Ei|m|k|M|G|T|P|E|n|u|[eE][+-]?[0-9]+)?$").unwrap();
        match Amount::parse(&s) {
            Ok(amount) => {
                prop_assert!(grammar.is_match(&s), "{:?} parsed but is no quantity", s);
                for style in [Style::Decimal, Style::Binary] {
                    let printed = amount.format(style);
                    prop_assert_eq!(Amount::parse(&printed), Ok(amount), "{:?} printed as {:?}", s, printed);
                }
            }
            Err(QuantityError::Syntax(_)) => prop_assert!(!grammar.is_match(&s), "{:?} is a quantity", s),
            Err(error @ QuantityError::TooLarge(_)) => {
                // Beyond 2^63-1 units: the CRD's CEL bound (below 9e18) refuses it first.
                prop_assert!(grammar.is_match(&s));
                prop_assert!(error.to_string().contains("too large"));
            }
        }
    }

    #[test]
    fn durations_parse_exactly_what_the_schema_accepts(
        s in prop_oneof![near("0-9hmsd.-", 26), "([0-9]{1,8}[hmsd]){0,4}"],
    ) {
        let schema = &schemas().durations[0].1;
        for (path, other) in &schemas().durations {
            prop_assert_eq!(other.accepts(&s), schema.accepts(&s), "{}: {:?}", path, s);
        }
        let parsed = parse_duration(&s);
        prop_assert_eq!(parsed.is_ok(), schema.accepts(&s), "{:?}: {:?}", s, parsed);
        if let Err(error) = &parsed {
            prop_assert!(error.to_string().contains("is not a duration"));
        }
        // Whatever CEL converts fits its duration type (Go's, at most 2562047h).
        if Regex::new(DURATION_CEL_SAFE_PATTERN).unwrap().is_match(&s) && !s.is_empty() {
            prop_assert!(parsed.unwrap().as_secs() < 2_562_047 * 3600);
        }
    }

    #[test]
    fn hosts_and_domains_are_checked_exactly_as_the_schema_does(
        s in prop_oneof![
            near("a-z0-9.-", 80),
            near("a-zA-Z0-9.*_đ-", 20),
            "([a-z0-9-]{1,70}\\.){1,4}[a-z0-9-]{1,70}",
        ],
    ) {
        let base_domain = &schemas().hosts[0].1;
        let checked = check_host(&s);
        prop_assert_eq!(checked.is_ok(), base_domain.accepts(&s), "{:?}: {:?}", s, checked);
        for (path, schema) in &schemas().hosts {
            prop_assert_eq!(schema.accepts(&s), base_domain.accepts(&s), "{}: {:?}", path, s);
        }
    }

    #[test]
    fn api_paths_are_refused_by_the_schema_and_the_route_builder_alike(
        s in prop_oneof![near("a-z0-9./%2eEfFcC5\\\\ -", 24), "/(\\.|%2[eE]|%2[fF]|%5[cC]|%25|%[0-9a-fA-F]{2}|/|[a-z]){0,10}"],
    ) {
        let schema = &schemas().path;
        prop_assert_eq!(schemas().path_rules, 3, "the dot-segment, empty-segment and percent rules");
        let checked = check_http_path(&s);
        // The schema's pattern is the first of the route builder's rules.
        if !schema.pattern.is_match(&s) {
            prop_assert!(checked.is_err());
        }
        if checked.is_ok() {
            prop_assert!(schema.pattern.is_match(&s));
            // Nothing that decodes to a dot segment, a slash or a backslash is left.
            let lower = s.to_ascii_lowercase();
            prop_assert!(!lower.contains("%2e") && !lower.contains("%2f") && !lower.contains("%5c") && !lower.contains("%25"));
            prop_assert!(!s.split('/').skip(1).any(|segment| !segment.is_empty() && segment.chars().all(|c| c == '.')));
            prop_assert!(!s.contains("//") && !s.contains('\\'));
        }
    }

    #[test]
    fn free_text_refuses_control_and_format_characters_only(
        text in "[a-zA-ZàáảãạăằắẳẵặâầấẩẫậđèéẻẽẹêềếểễệìíỉĩịòóỏõọôồốổỗộơờớởỡợùúủũụưừứửữựỳýỷỹỵĐ \u{0300}\u{0301}\u{0303}\u{0309}\u{0323}\u{0306}\u{0302}\u{031B}–-]{0,40}",
        invisible in prop::sample::select(vec!['\u{0}', '\u{7}', '\u{1B}', '\u{7F}', '\u{85}', '\u{AD}', '\u{600}', '\u{61C}', '\u{180E}', '\u{200B}', '\u{200C}', '\u{200D}', '\u{200E}', '\u{200F}', '\u{202A}', '\u{202B}', '\u{202C}', '\u{202D}', '\u{202E}', '\u{2060}', '\u{2066}', '\u{2067}', '\u{2068}', '\u{2069}', '\u{FEFF}', '\u{FFF9}', '\u{E0001}']),
        at in 0usize..40,
    ) {
        // Vietnamese, precomposed or with combining marks, passes.
        prop_assert_eq!(invisible_character(&text), None);
        let at = at.min(text.chars().count());
        let mut spoofed: String = text.chars().take(at).collect();
        spoofed.push(invisible);
        spoofed.extend(text.chars().skip(at));
        prop_assert_eq!(invisible_character(&spoofed), Some((at, invisible)));
    }
}
