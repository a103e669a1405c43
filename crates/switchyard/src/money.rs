//! Integer money: micro-dollars for balances and charges, nano-dollars for unit prices.
//!
//! No floating point ever touches an amount. One credit is one US cent, so
//! `1 credit = 10_000 micro-dollars`.

use thiserror::Error;

/// Micro-dollars in one credit ($0.01).
pub const MICROS_PER_CREDIT: i64 = 10_000;

/// A parse failure for a decimal dollar amount.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("`{0}` is not a non-negative decimal dollar amount with at most 9 decimal places")]
pub struct DecimalError(pub String);

/// Parses a non-negative decimal dollar string such as `"0.000055"` into nano-dollars.
pub fn parse_usd_to_nanos(text: &str) -> Result<i64, DecimalError> {
    let error = || DecimalError(text.to_owned());
    let trimmed = text.trim();
    let (whole, fraction) = match trimmed.split_once('.') {
        Some((whole, fraction)) => (whole, fraction),
        None => (trimmed, ""),
    };
    if whole.is_empty() && fraction.is_empty() {
        return Err(error());
    }
    if fraction.len() > 9
        || !whole.bytes().all(|b| b.is_ascii_digit())
        || !fraction.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(error());
    }
    let whole_nanos = if whole.is_empty() {
        0
    } else {
        whole
            .parse::<i64>()
            .ok()
            .and_then(|w| w.checked_mul(1_000_000_000))
            .ok_or_else(error)?
    };
    let mut fraction_nanos: i64 = 0;
    for (index, digit) in fraction.bytes().enumerate() {
        fraction_nanos += i64::from(digit - b'0') * 10_i64.pow(8 - index as u32);
    }
    whole_nanos.checked_add(fraction_nanos).ok_or_else(error)
}

/// Formats micro-dollars as credits (cents) with four decimals, e.g. `1234.5678`.
pub fn micros_to_credits_string(micros: i64) -> String {
    let sign = if micros < 0 { "-" } else { "" };
    let abs = micros.unsigned_abs();
    format!("{sign}{}.{:04}", abs / 10_000, abs % 10_000)
}

/// Converts micro-dollars to credits as a JSON number for display. The exact
/// amount is always returned next to it as an integer of micro-dollars.
pub fn micros_to_credits_json(micros: i64) -> serde_json::Value {
    let text = micros_to_credits_string(micros);
    serde_json::from_str::<serde_json::Number>(&text)
        .map(serde_json::Value::Number)
        .unwrap_or(serde_json::Value::Null)
}

/// Formats nano-dollars as a decimal dollar string without trailing zeros.
pub fn nanos_to_usd_string(nanos: i64) -> String {
    let whole = nanos / 1_000_000_000;
    let fraction = nanos % 1_000_000_000;
    if fraction == 0 {
        return whole.to_string();
    }
    let digits = format!("{fraction:09}");
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

/// The price parameters that turn one request's usage into a charge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tariff {
    /// Compute price in nano-dollars per second of upstream time.
    pub compute_nanos_per_second: i64,
    /// Token price in nano-dollars per 1,000 input tokens.
    pub input_nanos_per_1k: i64,
    /// Token price in nano-dollars per 1,000 output tokens.
    pub output_nanos_per_1k: i64,
    /// Markup in basis points (12_000 = ×1.2).
    pub markup_basis_points: i64,
}

impl Tariff {
    /// Computes the charge in micro-dollars, rounded up to the next micro-dollar.
    pub fn charge_micros(&self, compute_ms: u64, input_tokens: u64, output_tokens: u64) -> i64 {
        let compute = i128::from(compute_ms) * i128::from(self.compute_nanos_per_second) / 1000;
        let input = i128::from(input_tokens) * i128::from(self.input_nanos_per_1k) / 1000;
        let output = i128::from(output_tokens) * i128::from(self.output_nanos_per_1k) / 1000;
        let base_nanos = compute + input + output;
        let marked_up = base_nanos * i128::from(self.markup_basis_points);
        // nanos × bp / 10_000 / 1_000 = micros; round up so we never undercharge.
        let divisor: i128 = 10_000 * 1_000;
        let micros = (marked_up + divisor - 1) / divisor;
        i64::try_from(micros).unwrap_or(i64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_decimal_dollars_exactly() {
        assert_eq!(parse_usd_to_nanos("0.000055"), Ok(55_000));
        assert_eq!(parse_usd_to_nanos("4.49"), Ok(4_490_000_000));
        assert_eq!(parse_usd_to_nanos("1"), Ok(1_000_000_000));
        assert_eq!(parse_usd_to_nanos(".5"), Ok(500_000_000));
        assert!(parse_usd_to_nanos("-1").is_err());
        assert!(parse_usd_to_nanos("0.0000000001").is_err());
        assert!(parse_usd_to_nanos("abc").is_err());
        assert!(parse_usd_to_nanos("").is_err());
    }

    #[test]
    fn formats_credits_and_dollars() {
        assert_eq!(micros_to_credits_string(10_000_000), "1000.0000");
        assert_eq!(micros_to_credits_string(-25), "-0.0025");
        assert_eq!(nanos_to_usd_string(1_000_000), "0.001");
        assert_eq!(nanos_to_usd_string(2_000_000_000), "2");
    }

    #[test]
    fn default_token_prices_with_markup() {
        // $0.001 / 1K input, $0.002 / 1K output, ×1.2, no compute.
        let tariff = Tariff {
            compute_nanos_per_second: 0,
            input_nanos_per_1k: 1_000_000,
            output_nanos_per_1k: 2_000_000,
            markup_basis_points: 12_000,
        };
        // 1000 in + 500 out = $0.001 + $0.001 = $0.002 → ×1.2 = $0.0024 = 2400 µ$.
        assert_eq!(tariff.charge_micros(0, 1000, 500), 2400);
        // 33 in + 8 out = 33_000 + 16_000 nanos = 49 µ$ → ×1.2 = 58.8 → 59.
        assert_eq!(tariff.charge_micros(0, 33, 8), 59);
    }

    #[test]
    fn compute_seconds_priced_per_millisecond() {
        let tariff = Tariff {
            compute_nanos_per_second: 55_000, // RunPod T4
            input_nanos_per_1k: 0,
            output_nanos_per_1k: 0,
            markup_basis_points: 10_000,
        };
        assert_eq!(tariff.charge_micros(2_000, 0, 0), 110);
        assert_eq!(tariff.charge_micros(1, 0, 0), 1, "rounds up");
        assert_eq!(tariff.charge_micros(0, 0, 0), 0);
    }
}
