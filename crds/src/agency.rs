//! Electronic agency codes and agency levels.
//!
//! Two forms are in use and both are accepted:
//! - **Decision 20/2020/QĐ-TTg**: dot-separated groups, one per level, the first a capital letter and
//!   two digits (`G..` ministries, `H..` provincial People's Committees, `K..` provincial People's
//!   Councils), each further group one to eight digits or capital letters: `H49`, `H49.12`,
//!   `H49.12.05`. At most 35 characters.
//! - **QCVN 102:2016** (legacy): `AAA.BB.CC.DDD`, read right to left: `DDD` is the level-1 code
//!   (`H49`), `CC` level 2, `BB` level 3, `AAA` level 4, zero groups meaning "no such level":
//!   `000.00.00.H49` is the People's Committee `H49`, `000.00.12.H49` is its unit `12`.
//!
//! Both forms normalise to the same list of levels, so `H49.12` and `000.00.12.H49` name the same
//! agency: uniqueness and "a child's code extends its parent's" compare normalised levels.

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The longest agency code Decision 20/2020/QĐ-TTg allows.
pub const AGENCY_CODE_MAX_LEN: usize = 35;

/// The longest group after the first in a Decision 20/2020 code.
pub const AGENCY_CODE_GROUP_MAX_LEN: usize = 8;

/// The structural check of [`AgencyCode::parse`] as an OpenAPI pattern (RE2 syntax), used in the
/// CRD schema so that the API server rejects a malformed code before anything else sees it.
pub const AGENCY_CODE_PATTERN: &str =
    r"^([A-Z][0-9]{2}(\.[0-9A-Z]{1,8})*|[0-9]{3}\.[0-9]{2}\.[0-9]{2}\.[A-Z][0-9]{2})$";

/// The legacy QCVN 102:2016 shape, `AAA.BB.CC.DDD`, in a form CEL string literals can carry
/// (`[.]` instead of an escaped dot).
const LEGACY_CEL_PATTERN: &str = "^[0-9]{3}[.][0-9]{2}[.][0-9]{2}[.][A-Z][0-9]{2}$";

/// The one rule by which agency codes are compared: the code in Decision 20/2020 form
/// (`000.00.12.H48` → `H48.12`, `H48.12` unchanged). Two codes name the same agency exactly when
/// their normal forms are equal. A string that is not an agency code is kept as written, so it
/// equals only itself.
pub fn normalise(code: &str) -> String {
    AgencyCode::parse(code).map(|c| c.to_decision20()).unwrap_or_else(|_| code.to_owned())
}

/// [`normalise`] as a CEL expression over the string expression `code`, for CRD rules and
/// admission policies: a legacy code (exactly 13 characters, `AAA.BB.CC.DDD`) becomes `DDD`
/// followed by `CC`, `BB`, `AAA` up to the last non-zero group; anything else is kept as written.
/// `code` is evaluated several times, so pass a plain field or variable.
pub fn normalise_cel(code: &str) -> String {
    let group = |from: u32, to: u32| format!("{code}.substring({from}, {to})");
    let (aaa, bb, cc, ddd) = (group(0, 3), group(4, 6), group(7, 9), group(10, 13));
    format!(
        "({code}.matches('{LEGACY_CEL_PATTERN}') ? {ddd} + ({aaa} != '000' ? '.' + {cc} + '.' + {bb} + '.' + {aaa} : {bb} != '00' ? '.' + {cc} + '.' + {bb} : {cc} != '00' ? '.' + {cc} : '') : {code})"
    )
}

/// Which standard an agency code is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CodeForm {
    /// Decision 20/2020/QĐ-TTg: `H49.12`.
    Decision20,
    /// QCVN 102:2016: `000.00.12.H49`.
    Legacy,
}

/// A parsed, structurally valid agency code.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AgencyCode {
    raw: String,
    form: CodeForm,
    /// Level-1 group first; the legacy form's trailing zero groups dropped.
    levels: Vec<String>,
}

/// Why a string is not an agency code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AgencyCodeError {
    #[error("agency code is empty")]
    Empty,
    #[error("agency code is {0} characters long, at most {AGENCY_CODE_MAX_LEN} are allowed")]
    TooLong(usize),
    #[error("agency code has {0:?} at position {1}: only digits, capital letters A-Z and '.' are allowed")]
    InvalidCharacter(char, usize),
    #[error("agency code has an empty group: groups are separated by single dots")]
    EmptyGroup,
    #[error(
        "agency code's first group {0:?} must be a capital letter and two digits, like H49 (Decision 20/2020/QĐ-TTg)"
    )]
    FirstGroup(String),
    #[error(
        "agency code's group {0:?} is longer than {AGENCY_CODE_GROUP_MAX_LEN} characters (Decision 20/2020/QĐ-TTg)"
    )]
    GroupTooLong(String),
    #[error(
        "legacy agency code {0:?} must look like 000.00.00.H49: three digits, two, two, then a letter and two digits (QCVN 102:2016)"
    )]
    LegacyShape(String),
}

fn is_letter_two_digits(group: &str) -> bool {
    let b = group.as_bytes();
    b.len() == 3 && b[0].is_ascii_uppercase() && b[1].is_ascii_digit() && b[2].is_ascii_digit()
}

fn all_digits(group: &str, len: usize) -> bool {
    group.len() == len && group.bytes().all(|b| b.is_ascii_digit())
}

fn all_zeros(group: &str) -> bool {
    group.bytes().all(|b| b == b'0')
}

impl AgencyCode {
    /// Parses either form; the error says what is wrong, for a status message.
    pub fn parse(code: &str) -> Result<Self, AgencyCodeError> {
        if code.is_empty() {
            return Err(AgencyCodeError::Empty);
        }
        let chars = code.chars().count();
        if chars > AGENCY_CODE_MAX_LEN {
            return Err(AgencyCodeError::TooLong(chars));
        }
        if let Some((position, ch)) =
            code.chars().enumerate().find(|(_, c)| !(c.is_ascii_digit() || c.is_ascii_uppercase() || *c == '.'))
        {
            return Err(AgencyCodeError::InvalidCharacter(ch, position));
        }
        let groups: Vec<&str> = code.split('.').collect();
        if groups.iter().any(|g| g.is_empty()) {
            return Err(AgencyCodeError::EmptyGroup);
        }
        if code.as_bytes()[0].is_ascii_digit() {
            return Self::parse_legacy(code, &groups);
        }
        if !is_letter_two_digits(groups[0]) {
            return Err(AgencyCodeError::FirstGroup(groups[0].to_owned()));
        }
        if let Some(long) = groups[1..].iter().find(|g| g.len() > AGENCY_CODE_GROUP_MAX_LEN) {
            return Err(AgencyCodeError::GroupTooLong((*long).to_owned()));
        }
        Ok(Self {
            raw: code.to_owned(),
            form: CodeForm::Decision20,
            levels: groups.iter().map(|g| (*g).to_owned()).collect(),
        })
    }

    fn parse_legacy(code: &str, groups: &[&str]) -> Result<Self, AgencyCodeError> {
        let shape_ok = groups.len() == 4
            && all_digits(groups[0], 3)
            && all_digits(groups[1], 2)
            && all_digits(groups[2], 2)
            && is_letter_two_digits(groups[3]);
        if !shape_ok {
            return Err(AgencyCodeError::LegacyShape(code.to_owned()));
        }
        // Right to left: DDD, CC, BB, AAA; zero groups past the last non-zero one are "no level".
        let mut levels: Vec<String> = groups.iter().rev().map(|g| (*g).to_owned()).collect();
        while levels.len() > 1 && levels.last().is_some_and(|g| all_zeros(g)) {
            levels.pop();
        }
        Ok(Self { raw: code.to_owned(), form: CodeForm::Legacy, levels })
    }

    /// The code as written.
    pub fn as_str(&self) -> &str {
        &self.raw
    }

    /// The standard it is written in.
    pub fn form(&self) -> CodeForm {
        self.form
    }

    /// The groups, level 1 first, whatever the form.
    pub fn levels(&self) -> &[String] {
        &self.levels
    }

    /// True when both codes name the same agency, possibly written in different forms.
    pub fn same_agency(&self, other: &AgencyCode) -> bool {
        self.levels == other.levels
    }

    /// True when this code sits below `parent`'s: it keeps all of the parent's levels and adds at
    /// least one (`H49.12` under `H49`, `000.03.12.H49` under `H49.12`).
    pub fn extends(&self, parent: &AgencyCode) -> bool {
        self.levels.len() > parent.levels.len() && self.levels.starts_with(&parent.levels)
    }

    /// The code in Decision 20/2020 form (`H49.12`), whatever form it was written in.
    pub fn to_decision20(&self) -> String {
        self.levels.join(".")
    }
}

impl fmt::Display for AgencyCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

impl std::str::FromStr for AgencyCode {
    type Err = AgencyCodeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// Where an agency sits in Vietnam's two-tier local government (since 1 July 2025).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum AgencyLevel {
    /// A province's People's Committee (or Council): the top of a provincial tree, with no parent.
    Province,
    /// A provincial department (Sở) or body equivalent to one, directly under its Province.
    Department,
    /// A commune, ward or special zone, directly under its Province.
    Commune,
    /// A public service unit (hospital, school, centre); may hang below an agency of any level, a
    /// Unit included.
    Unit,
}

impl AgencyLevel {
    /// Tier in the hierarchy: Province 0; Department and Commune 1 (peers: both sit directly
    /// under the Province); Unit 2.
    pub fn tier(self) -> u8 {
        match self {
            AgencyLevel::Province => 0,
            AgencyLevel::Department | AgencyLevel::Commune => 1,
            AgencyLevel::Unit => 2,
        }
    }

    /// Whether an agency of this level may have a parent of level `parent`: the parent must be of
    /// a higher tier, except that a Unit may hang anywhere.
    pub fn may_have_parent(self, parent: AgencyLevel) -> bool {
        self == AgencyLevel::Unit || parent.tier() < self.tier()
    }

    /// The level's name as it appears in YAML.
    pub fn as_str(self) -> &'static str {
        match self {
            AgencyLevel::Province => "Province",
            AgencyLevel::Department => "Department",
            AgencyLevel::Commune => "Commune",
            AgencyLevel::Unit => "Unit",
        }
    }
}

impl fmt::Display for AgencyLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(s: &str) -> AgencyCode {
        AgencyCode::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    const VALID: &[&str] = &[
        "H49",
        "G01",
        "K49",
        "H49.12",
        "H49.12.05",
        "H49.12.05.01",
        "G12.AB3",
        "H49.12345678",
        "000.00.00.H49",
        "000.00.12.H49",
        "000.03.12.H49",
        "123.45.67.K01",
        // 35 characters exactly.
        "H49.12345678.12345678.12345678.1234",
    ];

    const INVALID: &[&str] = &[
        "",
        "h49",
        "H4",
        "H499",
        "49H",
        "HH9",
        "H49.",
        ".H49",
        "H49..12",
        "H49.12.",
        "H49 12",
        "H49-12",
        "H49.1a",
        "H49.123456789",
        "Đ49",
        "00.00.00.H49",
        "000.0.00.H49",
        "000.00.00.H4",
        "000.00.00.49H",
        "000.00.00.H49.12",
        "000.00.H49",
        "0000.00.00.H49",
        // 36 characters.
        "H49.12345678.12345678.12345678.12345",
    ];

    #[test]
    fn accepts_both_forms() {
        for s in VALID {
            code(s);
        }
        assert_eq!(code("H49.12").form(), CodeForm::Decision20);
        assert_eq!(code("000.00.12.H49").form(), CodeForm::Legacy);
    }

    #[test]
    fn rejects_malformed_codes_with_a_reason() {
        for s in INVALID {
            assert!(AgencyCode::parse(s).is_err(), "{s:?} should be rejected");
        }
        assert_eq!(AgencyCode::parse(""), Err(AgencyCodeError::Empty));
        assert_eq!(AgencyCode::parse("H49-12"), Err(AgencyCodeError::InvalidCharacter('-', 3)));
        assert_eq!(AgencyCode::parse("h49"), Err(AgencyCodeError::InvalidCharacter('h', 0)));
        assert_eq!(AgencyCode::parse("H499"), Err(AgencyCodeError::FirstGroup("H499".into())));
        assert_eq!(AgencyCode::parse("H49..12"), Err(AgencyCodeError::EmptyGroup));
        assert_eq!(AgencyCode::parse("H49.123456789"), Err(AgencyCodeError::GroupTooLong("123456789".into())));
        assert!(matches!(AgencyCode::parse("000.0.00.H49"), Err(AgencyCodeError::LegacyShape(_))));
        assert_eq!(AgencyCode::parse("H49.12345678.12345678.12345678.12345"), Err(AgencyCodeError::TooLong(36)));
    }

    #[test]
    fn legacy_codes_normalise_right_to_left() {
        assert_eq!(code("000.00.00.H49").levels(), ["H49"]);
        assert_eq!(code("000.00.12.H49").levels(), ["H49", "12"]);
        assert_eq!(code("000.03.12.H49").levels(), ["H49", "12", "03"]);
        assert_eq!(code("001.00.12.H49").levels(), ["H49", "12", "00", "001"]);
        assert_eq!(code("000.03.12.H49").to_decision20(), "H49.12.03");
    }

    #[test]
    fn both_forms_of_one_agency_are_the_same_agency() {
        assert!(code("H49").same_agency(&code("000.00.00.H49")));
        assert!(code("H49.12").same_agency(&code("000.00.12.H49")));
        assert!(!code("H49.12").same_agency(&code("H49.13")));
        assert!(!code("H49").same_agency(&code("H50")));
    }

    #[test]
    fn a_child_code_extends_its_parents() {
        assert!(code("H49.12").extends(&code("H49")));
        assert!(code("H49.12.05").extends(&code("H49")));
        assert!(code("H49.12.05").extends(&code("H49.12")));
        assert!(code("000.00.12.H49").extends(&code("H49")));
        assert!(code("H49.12.03").extends(&code("000.00.12.H49")));
        assert!(!code("H49").extends(&code("H49")));
        assert!(!code("H49").extends(&code("H49.12")));
        assert!(!code("H50.12").extends(&code("H49")));
        assert!(!code("H49.13").extends(&code("H49.12")));
        // A shared prefix of characters is not a shared level.
        assert!(!code("H49.123").extends(&code("H49.12")));
    }

    #[test]
    fn the_schema_pattern_agrees_with_the_parser() {
        let pattern = regex::Regex::new(AGENCY_CODE_PATTERN).unwrap();
        for s in VALID.iter().chain(INVALID) {
            // The schema pairs the pattern with maxLength.
            let schema_accepts = pattern.is_match(s) && s.chars().count() <= AGENCY_CODE_MAX_LEN;
            assert_eq!(schema_accepts, AgencyCode::parse(s).is_ok(), "schema and parser disagree on {s:?}");
        }
    }

    #[test]
    fn levels_follow_the_two_tier_government() {
        use AgencyLevel::*;
        assert!(Department.may_have_parent(Province));
        assert!(Commune.may_have_parent(Province));
        assert!(!Commune.may_have_parent(Department));
        assert!(!Department.may_have_parent(Commune));
        assert!(!Department.may_have_parent(Department));
        assert!(!Province.may_have_parent(Province));
        for parent in [Province, Department, Commune, Unit] {
            assert!(Unit.may_have_parent(parent), "a Unit may hang below {parent}");
        }
    }

    #[test]
    fn normalise_gives_the_decision20_form_of_either_form() {
        for (written, normal) in [
            ("H49", "H49"),
            ("H49.12", "H49.12"),
            ("H49.12.05", "H49.12.05"),
            ("000.00.00.H49", "H49"),
            ("000.00.12.H49", "H49.12"),
            ("000.03.12.H49", "H49.12.03"),
            ("001.00.12.H49", "H49.12.00.001"),
            ("000.03.00.H49", "H49.00.03"),
        ] {
            assert_eq!(normalise(written), normal, "{written}");
            // Idempotent, and the normal form names the same agency as what was written.
            assert_eq!(normalise(normal), normal);
            assert!(code(written).same_agency(&code(normal)), "{written}");
        }
        assert_eq!(normalise("not a code"), "not a code");
    }

    #[test]
    fn a_legacy_code_round_trips_through_its_normal_form() {
        // Every legacy code with levels 2 to 4 from a small alphabet: normal form, parsed again,
        // names the same agency and has the same levels.
        for aaa in ["000", "001", "120"] {
            for bb in ["00", "03", "10"] {
                for cc in ["00", "12", "40"] {
                    let legacy = format!("{aaa}.{bb}.{cc}.H49");
                    let normal = normalise(&legacy);
                    let again = code(&normal);
                    assert_eq!(again.form(), CodeForm::Decision20);
                    assert_eq!(again.levels(), code(&legacy).levels(), "{legacy} -> {normal}");
                    assert_eq!(normalise(&normal), normal);
                }
            }
        }
    }

    #[test]
    fn the_cel_normalisation_names_every_group_of_the_legacy_shape() {
        let cel = normalise_cel("x");
        assert!(cel.starts_with("(x.matches('^[0-9]{3}[.][0-9]{2}[.][0-9]{2}[.][A-Z][0-9]{2}$')"), "{cel}");
        // The CEL pattern accepts exactly the legacy codes the Rust parser accepts.
        let legacy = regex::Regex::new(LEGACY_CEL_PATTERN).unwrap();
        for s in VALID.iter().chain(INVALID) {
            let is_legacy = AgencyCode::parse(s).is_ok_and(|c| c.form() == CodeForm::Legacy);
            assert_eq!(legacy.is_match(s), is_legacy, "{s}");
        }
        assert!(!cel.contains('\\'), "CEL string literals here carry no escapes");
    }
}
