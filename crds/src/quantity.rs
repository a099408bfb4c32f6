//! Kubernetes resource quantities (`500m`, `2`, `1.5Gi`, `1e3`) as exact, comparable integers.
//!
//! k8s-openapi's `Quantity` is only a string, and no maintained crate parses it exactly, so this
//! module does: the value is held in nano-units (1 = 10⁻⁹ of the unit) in an `i128`, which keeps
//! every quantity Kubernetes accepts (nine decimal places, up to 2⁶³-1 units) exact, so sums and
//! differences for quota carving never round. Finer fractions round up, as Kubernetes does.

use std::fmt;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

const NANOS_PER_UNIT: i128 = 1_000_000_000;
/// Kubernetes caps quantities at 2⁶³-1 units; beyond that is a mistake, not a quota.
const MAX_UNITS: i128 = i64::MAX as i128;

/// An exact quantity in nano-units.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Amount(i128);

/// Why a string is not a quantity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    #[error("{0:?} is not a quantity: expected a number with an optional suffix, like 500m, 2, 4Gi or 1e3")]
    Syntax(String),
    #[error("{0:?} is too large a quantity: at most 2^63-1 units")]
    TooLarge(String),
}

/// How to print an amount back as a quantity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Style {
    /// Plain numbers and `m`: CPU, counts.
    Decimal,
    /// Powers of 1024 where exact (`Ki`, `Mi`, `Gi`…): memory and storage.
    Binary,
}

fn pow(base: i128, exp: u32) -> Option<i128> {
    base.checked_pow(exp)
}

impl Amount {
    /// Zero.
    pub const ZERO: Amount = Amount(0);

    /// The amount in nano-units.
    pub fn nanos(self) -> i128 {
        self.0
    }

    /// A whole number of units (a count of pods, say).
    pub fn from_units(units: i64) -> Self {
        Amount(i128::from(units) * NANOS_PER_UNIT)
    }

    /// Parses a quantity string exactly as Kubernetes' grammar defines it.
    pub fn parse(input: &str) -> Result<Self, QuantityError> {
        let syntax = || QuantityError::Syntax(input.to_owned());
        let too_large = || QuantityError::TooLarge(input.to_owned());
        // No trimming: Kubernetes refuses " 1" too.
        let s = input;
        if s.is_empty() || s.len() > 64 {
            return Err(syntax());
        }
        let (negative, rest) = match s.as_bytes()[0] {
            b'-' => (true, &s[1..]),
            b'+' => (false, &s[1..]),
            _ => (false, s),
        };
        // The number: digits, optional '.', optional digits, at least one digit.
        let number_end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let (number, suffix) = rest.split_at(number_end);
        let (int_part, frac_part) = match number.split_once('.') {
            Some((i, f)) => (i, f),
            None => (number, ""),
        };
        if frac_part.contains('.') || (int_part.is_empty() && frac_part.is_empty()) {
            return Err(syntax());
        }
        let digits = format!("{int_part}{frac_part}");
        let digits = digits.trim_start_matches('0');
        let mantissa: i128 = if digits.is_empty() {
            0
        } else if digits.len() > 36 {
            return Err(too_large());
        } else {
            digits.parse().map_err(|_| syntax())?
        };
        let frac_digits = i64::try_from(frac_part.len()).map_err(|_| syntax())?;

        // value = mantissa × 10^(-frac_digits) × (binary multiplier) × 10^(decimal exponent)
        let (binary, exp10): (i128, i64) = match suffix {
            "" => (1, 0),
            "n" => (1, -9),
            "u" => (1, -6),
            "m" => (1, -3),
            "k" => (1, 3),
            "M" => (1, 6),
            "G" => (1, 9),
            "T" => (1, 12),
            "P" => (1, 15),
            "E" => (1, 18),
            "Ki" => (1 << 10, 0),
            "Mi" => (1 << 20, 0),
            "Gi" => (1 << 30, 0),
            "Ti" => (1 << 40, 0),
            "Pi" => (1 << 50, 0),
            "Ei" => (1 << 60, 0),
            exponent if exponent.starts_with(['e', 'E']) => {
                let e = &exponent[1..];
                let unsigned = e.strip_prefix(['+', '-']).unwrap_or(e);
                if unsigned.is_empty() || !unsigned.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(syntax());
                }
                (1, e.parse::<i64>().map_err(|_| too_large())?)
            }
            _ => return Err(syntax()),
        };
        let scaled = mantissa.checked_mul(binary).ok_or_else(too_large)?;
        // To nano-units: × 10^(9 + exp10 - frac_digits).
        let shift = 9 + exp10 - frac_digits;
        let nanos = if scaled == 0 {
            0
        } else if shift >= 0 {
            let factor = u32::try_from(shift).ok().and_then(|s| pow(10, s)).ok_or_else(too_large)?;
            scaled.checked_mul(factor).ok_or_else(too_large)?
        } else {
            match u32::try_from(-shift).ok().and_then(|s| pow(10, s)) {
                // Finer than a nano-unit: round up, as Kubernetes does.
                Some(divisor) => scaled.div_ceil_positive(divisor),
                // So small it is below one nano-unit whatever the mantissa.
                None => 1,
            }
        };
        if nanos > MAX_UNITS * NANOS_PER_UNIT {
            return Err(too_large());
        }
        Ok(Amount(if negative { -nanos } else { nanos }))
    }

    /// Parses a k8s-openapi `Quantity`.
    pub fn of(quantity: &Quantity) -> Result<Self, QuantityError> {
        Self::parse(&quantity.0)
    }

    /// Sum, or `None` on overflow.
    pub fn checked_add(self, other: Amount) -> Option<Amount> {
        self.0.checked_add(other.0).map(Amount)
    }

    /// Difference, or `None` on overflow.
    pub fn checked_sub(self, other: Amount) -> Option<Amount> {
        self.0.checked_sub(other.0).map(Amount)
    }

    /// True for amounts below zero.
    pub fn is_negative(self) -> bool {
        self.0 < 0
    }

    /// Prints the amount as a quantity string that parses back to exactly this amount.
    pub fn format(self, style: Style) -> String {
        let sign = if self.0 < 0 { "-" } else { "" };
        let nanos = self.0.unsigned_abs();
        let per_unit = NANOS_PER_UNIT.unsigned_abs();
        if nanos.is_multiple_of(per_unit) {
            let units = nanos / per_unit;
            if style == Style::Binary && units != 0 {
                for (suffix, bits) in [("Ei", 60), ("Pi", 50), ("Ti", 40), ("Gi", 30), ("Mi", 20), ("Ki", 10)] {
                    if units.is_multiple_of(1u128 << bits) {
                        return format!("{sign}{}{suffix}", units >> bits);
                    }
                }
            }
            format!("{sign}{units}")
        } else if nanos.is_multiple_of(1_000_000) {
            format!("{sign}{}m", nanos / 1_000_000)
        } else if nanos.is_multiple_of(1_000) {
            format!("{sign}{}u", nanos / 1_000)
        } else {
            format!("{sign}{nanos}n")
        }
    }

    /// As a k8s-openapi `Quantity`.
    pub fn to_quantity(self, style: Style) -> Quantity {
        Quantity(self.format(style))
    }

    /// The quantity as the API server stores it in a resource list (a ResourceQuota's `hard`, a
    /// container's requests): rounded up to a whole thousandth (`1500u` is stored as `2m`), then
    /// in canonical form — the largest suffix that keeps the number whole (`1000` as `1k`, `2000m`
    /// as `2`), and binary suffixes kept where [`Amount::format`] writes one. Writing this form
    /// lets a cached object be compared with what would be applied, string for string.
    pub fn canonical(self, style: Style) -> String {
        const MILLI: i128 = 1_000_000;
        let rounded = if self.0 >= 0 { self.0.div_ceil_positive(MILLI) * MILLI } else { -((-self.0) / MILLI) * MILLI };
        if rounded == 0 {
            return "0".to_owned();
        }
        let rounded = Amount(rounded);
        // A binary suffix where `format` writes one: the API server keeps a quantity's format.
        let printed = rounded.format(style);
        if printed.ends_with('i') {
            return printed;
        }
        let sign = if rounded.0 < 0 { "-" } else { "" };
        let mut mantissa = rounded.0.unsigned_abs();
        let mut suffixes = ["n", "u", "m", "", "k", "M", "G", "T", "P", "E"].into_iter();
        let mut suffix = suffixes.next().unwrap_or_default();
        while mantissa.is_multiple_of(1000)
            && let Some(next) = suffixes.next()
        {
            mantissa /= 1000;
            suffix = next;
        }
        format!("{sign}{mantissa}{suffix}")
    }

    /// [`Amount::canonical`] as a k8s-openapi `Quantity`.
    pub fn to_canonical_quantity(self, style: Style) -> Quantity {
        Quantity(self.canonical(style))
    }
}

trait DivCeil {
    fn div_ceil_positive(self, divisor: i128) -> i128;
}

impl DivCeil for i128 {
    /// Ceiling division for a non-negative dividend and a positive divisor.
    fn div_ceil_positive(self, divisor: i128) -> i128 {
        self / divisor + i128::from(self % divisor != 0)
    }
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.format(Style::Decimal))
    }
}

impl std::str::FromStr for Amount {
    type Err = QuantityError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nanos(s: &str) -> i128 {
        Amount::parse(s).unwrap_or_else(|e| panic!("{s}: {e}")).nanos()
    }

    const UNIT: i128 = NANOS_PER_UNIT;

    #[test]
    fn canonical_forms_are_what_the_api_server_stores() {
        let canonical = |s: &str, style| Amount::parse(s).unwrap().canonical(style);
        for (written, stored) in [
            ("0", "0"),
            ("1000", "1k"),
            ("1500", "1500"),
            ("2000m", "2"),
            ("1500m", "1500m"),
            ("0.5", "500m"),
            ("1500u", "2m"),
            ("1n", "1m"),
            ("3000000", "3M"),
            ("1e3", "1k"),
            ("5E", "5E"),
            ("10k", "10k"),
        ] {
            assert_eq!(canonical(written, Style::Decimal), stored, "{written}");
        }
        for (written, stored) in [("1Gi", "1Gi"), ("1024Mi", "1Gi"), ("2048", "2Ki"), ("1000", "1k"), ("1500", "1500")]
        {
            assert_eq!(canonical(written, Style::Binary), stored, "{written}");
        }
        // What the canonical form says is the amount, rounded up to a thousandth.
        for s in ["1500u", "7", "2Gi", "123456789n"] {
            let amount = Amount::parse(s).unwrap();
            let back = Amount::parse(&amount.canonical(Style::Binary)).unwrap();
            assert!(back >= amount && back.nanos() - amount.nanos() < 1_000_000, "{s}");
        }
    }

    #[test]
    fn decimal_suffixes() {
        assert_eq!(nanos("0"), 0);
        assert_eq!(nanos("1"), UNIT);
        assert_eq!(nanos("500m"), UNIT / 2);
        assert_eq!(nanos("1.5"), UNIT * 3 / 2);
        assert_eq!(nanos("1500m"), nanos("1.5"));
        assert_eq!(nanos("2k"), 2_000 * UNIT);
        assert_eq!(nanos("3M"), 3_000_000 * UNIT);
        assert_eq!(nanos("1G"), 1_000_000_000 * UNIT);
        assert_eq!(nanos("1T"), 1_000_000_000_000 * UNIT);
        assert_eq!(nanos("1P"), 10i128.pow(15) * UNIT);
        assert_eq!(nanos("1E"), 10i128.pow(18) * UNIT);
        assert_eq!(nanos("10u"), 10_000);
        assert_eq!(nanos("7n"), 7);
    }

    #[test]
    fn binary_suffixes() {
        assert_eq!(nanos("1Ki"), 1024 * UNIT);
        assert_eq!(nanos("4Gi"), 4 * (1 << 30) * UNIT);
        assert_eq!(nanos("1.5Gi"), nanos("1536Mi"));
        assert_eq!(nanos("1Ti"), (1i128 << 40) * UNIT);
        assert_eq!(nanos("1Ei"), (1i128 << 60) * UNIT);
        assert_ne!(nanos("1Gi"), nanos("1G"));
    }

    #[test]
    fn exponents_signs_and_odd_numbers() {
        assert_eq!(nanos("1e3"), 1_000 * UNIT);
        assert_eq!(nanos("1E3"), 1_000 * UNIT);
        assert_eq!(nanos("1e+3"), 1_000 * UNIT);
        assert_eq!(nanos("5e-3"), nanos("5m"));
        assert_eq!(nanos("+2"), 2 * UNIT);
        assert_eq!(nanos("-2"), -2 * UNIT);
        assert_eq!(nanos(".5"), UNIT / 2);
        assert_eq!(nanos("5."), 5 * UNIT);
        assert_eq!(nanos("007"), 7 * UNIT);
        assert_eq!(nanos("0.000"), 0);
    }

    #[test]
    fn finer_than_a_nano_rounds_up() {
        assert_eq!(nanos("0.1n"), 1);
        assert_eq!(nanos("1.0000000001"), UNIT + 1);
        assert_eq!(nanos("1e-30"), 1);
    }

    #[test]
    fn rejects_what_kubernetes_rejects() {
        for bad in [
            "", " ", "m", "Gi", "1.2.3", "1 Gi", "1gi", "1GB", "1KiB", "1e", "1e+", "1e3.5", "--1", "+-1", "1..",
            "abc", "1x", "0x10", "1,5",
        ] {
            assert!(matches!(Amount::parse(bad), Err(QuantityError::Syntax(_))), "{bad:?} should be a syntax error");
        }
        assert!(matches!(Amount::parse("1e100"), Err(QuantityError::TooLarge(_))));
        assert!(matches!(Amount::parse("16Ei"), Err(QuantityError::TooLarge(_))));
        assert!(Amount::parse("7Ei").is_ok());
    }

    #[test]
    fn order_and_arithmetic_are_exact() {
        let a = Amount::parse("0.1").unwrap();
        let b = Amount::parse("0.2").unwrap();
        assert_eq!(a.checked_add(b), Some(Amount::parse("300m").unwrap()));
        assert!(Amount::parse("999m").unwrap() < Amount::parse("1").unwrap());
        assert!(Amount::parse("1Gi").unwrap() > Amount::parse("1G").unwrap());
        assert_eq!(Amount::parse("8Gi").unwrap().checked_sub(Amount::parse("8192Mi").unwrap()), Some(Amount::ZERO));
        assert!(Amount::parse("1").unwrap().checked_sub(Amount::parse("2").unwrap()).unwrap().is_negative());
        assert_eq!(Amount::from_units(3), Amount::parse("3").unwrap());
    }

    #[test]
    fn formats_round_trip() {
        for (input, style, printed) in [
            ("1.5", Style::Decimal, "1500m"),
            ("2", Style::Decimal, "2"),
            ("0", Style::Binary, "0"),
            ("4Gi", Style::Binary, "4Gi"),
            ("1536Mi", Style::Binary, "1536Mi"),
            ("1.5Gi", Style::Binary, "1536Mi"),
            ("1G", Style::Binary, "1000000000"),
            ("1Gi", Style::Decimal, "1073741824"),
            ("10u", Style::Decimal, "10u"),
            ("3n", Style::Decimal, "3n"),
            ("-250m", Style::Decimal, "-250m"),
            ("-2Ki", Style::Binary, "-2Ki"),
        ] {
            let amount = Amount::parse(input).unwrap();
            assert_eq!(amount.format(style), printed, "{input}");
            assert_eq!(Amount::parse(printed).unwrap(), amount, "{printed}");
        }
        assert_eq!(Amount::parse("2Gi").unwrap().to_quantity(Style::Binary), Quantity("2Gi".into()));
    }
}
