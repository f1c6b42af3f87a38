//! Money, kept exactly: whole pico-dollars (10^-12 USD), never floats that drift. Prices
//! are written in dollars per million tokens with up to six decimal places, which makes
//! the price of one token a whole number of pico-dollars; a call's cost is a sum of whole
//! numbers.

use std::fmt;

/// An amount in pico-dollars. Sums saturate: 2^64 pico-dollars is over 18 million dollars.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Money(pub u64);

/// Pico-dollars in a micro-dollar, the smallest step a price or budget can be written in.
const PICO_PER_MICRO: u64 = 1_000_000;

impl Money {
    /// `dollars` written with up to six decimal places (`0.15`, `2.5`, `3`).
    pub fn parse_dollars(text: &str) -> Result<Money, String> {
        micro_dollars(text).map(|micro| Money(micro.saturating_mul(PICO_PER_MICRO)))
    }

    /// A price in dollars per million tokens, as the price of one token.
    pub fn parse_per_million(text: &str) -> Result<Money, String> {
        // $1 per 10^6 tokens is 10^-6 $ = 10^6 pico-dollars a token: the micro-dollars of
        // the written price are the pico-dollars of one token.
        micro_dollars(text).map(Money)
    }

    pub fn times(self, n: u64) -> Money {
        Money(self.0.saturating_mul(n))
    }

    pub fn plus(self, other: Money) -> Money {
        Money(self.0.saturating_add(other.0))
    }

    /// In dollars, for JSON: the nearest float (exact to the cent and well beyond).
    pub fn dollars(self) -> f64 {
        self.0 as f64 / 1e12
    }
}

/// Dollars with as many decimals as the amount needs (at most 12): `0.000123`, `5`.
impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const PICO_PER_DOLLAR: u64 = 1_000_000_000_000;
        let (whole, fraction) = (self.0 / PICO_PER_DOLLAR, self.0 % PICO_PER_DOLLAR);
        if fraction == 0 {
            return write!(f, "{whole}");
        }
        let digits = format!("{fraction:012}");
        write!(f, "{whole}.{}", digits.trim_end_matches('0'))
    }
}

/// A non-negative decimal with up to six places, in millionths.
fn micro_dollars(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() && fraction.is_empty() || !digits(whole) || !digits(fraction) {
        return Err("is not an amount of dollars (like 0.15, 2.5 or 3)".to_owned());
    }
    if fraction.len() > 6 {
        return Err("has more than 6 decimal places".to_owned());
    }
    let whole: u64 = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| "is too large".to_owned())?
    };
    let fraction: u64 = format!("{fraction:0<6}").parse().unwrap_or(0);
    whole
        .checked_mul(1_000_000)
        .and_then(|micro| micro.checked_add(fraction))
        // A budget or price beyond a million dollars is a typo; it also keeps every sum
        // of a day's calls far from the 2^64 pico-dollars a Money holds.
        .filter(|&micro| micro <= 1_000_000 * 1_000_000)
        .ok_or_else(|| "is too large (at most 1000000 dollars)".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prices_are_exact_whole_pico_dollars() {
        assert_eq!(Money::parse_per_million("0.15"), Ok(Money(150_000)));
        assert_eq!(Money::parse_per_million("2.5"), Ok(Money(2_500_000)));
        assert_eq!(Money::parse_per_million("0.000001"), Ok(Money(1)));
        assert_eq!(Money::parse_per_million(".5"), Ok(Money(500_000)));
        assert_eq!(Money::parse_per_million("3."), Ok(Money(3_000_000)));
        assert_eq!(Money::parse_dollars("5"), Ok(Money(5_000_000_000_000)));
        assert_eq!(Money::parse_dollars("0.1"), Ok(Money(100_000_000_000)));
        // A million tokens at $0.15 a million is 15 cents, exactly.
        let cost = Money::parse_per_million("0.15")
            .expect("price")
            .times(1_000_000);
        assert_eq!(cost, Money::parse_dollars("0.15").expect("dollars"));
        // Ten calls of 10 cents are a dollar: no float drift.
        let dime = Money::parse_dollars("0.1").expect("dime");
        let sum = (0..10).fold(Money::default(), |sum, _| sum.plus(dime));
        assert_eq!(sum, Money::parse_dollars("1").expect("dollar"));
    }

    #[test]
    fn bad_amounts_say_why() {
        for (text, reason) in [
            ("", "is not an amount"),
            (".", "is not an amount"),
            ("-1", "is not an amount"),
            ("1e3", "is not an amount"),
            ("$5", "is not an amount"),
            ("1,5", "is not an amount"),
            ("0.1234567", "more than 6 decimal places"),
            ("1000000.000001", "too large"),
            ("99999999999999999999", "too large"),
        ] {
            let err = Money::parse_dollars(text).expect_err(text);
            assert!(err.contains(reason), "{text:?}: {err}");
        }
    }

    #[test]
    fn amounts_print_as_dollars() {
        assert_eq!(Money(0).to_string(), "0");
        assert_eq!(Money(5_000_000_000_000).to_string(), "5");
        assert_eq!(Money(150_000_000_000).to_string(), "0.15");
        assert_eq!(Money(1).to_string(), "0.000000000001");
    }
}
