//! The publisher's value forms, read from strings: finite numbers (exponent notation, a stray
//! `\r`) and UTC timestamps (naive ISO times, a trailing `Z`, offsets). No knowledge of fields.

use crate::civil::days_from_civil;

/// A finite number, or `None`. `None`, empty, `nan`, `inf` and overflowing values (`1e309`) are
/// all rejected; surrounding whitespace (including a Windows `\r`) is ignored.
pub(crate) fn parse_number(raw: &str) -> Option<f64> {
    let value: f64 = raw.trim().parse().ok()?;
    // Adding 0.0 turns -0 into 0 so that "-0" renders as a plain zero.
    value.is_finite().then_some(value + 0.0)
}

/// Reads `YYYY-MM-DD[T ]HH:MM:SS[.frac][Z|+HH:MM|-HH:MM]` as UTC (naive times are UTC) and
/// returns seconds since the Unix epoch. Hand-written: it is the only date format in the input,
/// and a date-time crate would be the largest dependency of the exporter.
pub(crate) fn parse_utc_timestamp(raw: &str) -> Option<f64> {
    let s = raw.trim().as_bytes();
    let digits = |range: std::ops::Range<usize>| -> Option<i64> {
        let part = s.get(range)?;
        if !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(part).ok()?.parse().ok()
    };
    let (year, month, day) = (digits(0..4)?, digits(5..7)?, digits(8..10)?);
    let (hour, minute, second) = (digits(11..13)?, digits(14..16)?, digits(17..19)?);
    if s[4] != b'-'
        || s[7] != b'-'
        || !matches!(s[10], b'T' | b' ')
        || s[13] != b':'
        || s[16] != b':'
    {
        return None;
    }
    if !(1..=12).contains(&month)
        || !(1..=days_in_month(year, month)).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut rest = &s[19..];
    let mut fraction = 0.0;
    if let Some(after_dot) = rest.strip_prefix(b".") {
        let len = after_dot.iter().take_while(|b| b.is_ascii_digit()).count();
        if len == 0 {
            return None;
        }
        fraction = std::str::from_utf8(&rest[..=len])
            .ok()?
            .parse::<f64>()
            .ok()?;
        rest = &after_dot[len..];
    }
    let offset_seconds = match rest {
        b"" | b"Z" | b"z" => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let field = |a: u8, b: u8| -> Option<i64> {
                (a.is_ascii_digit() && b.is_ascii_digit())
                    .then(|| i64::from((a - b'0') * 10 + (b - b'0')))
            };
            let (h, m) = (field(*h1, *h2)?, field(*m1, *m2)?);
            if h > 23 || m > 59 {
                return None;
            }
            let magnitude = h * 3600 + m * 60;
            if *sign == b'+' { magnitude } else { -magnitude }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second - offset_seconds;
    Some(seconds as f64 + fraction)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn utc_timestamps_in_every_written_form() {
        let base = 1769129938.0;
        assert_eq!(parse_utc_timestamp("2026-01-23T00:58:58"), Some(base));
        assert_eq!(parse_utc_timestamp("2026-01-23T00:58:58Z"), Some(base));
        assert_eq!(parse_utc_timestamp("2026-01-23 00:58:58"), Some(base));
        assert_eq!(parse_utc_timestamp("2026-01-23T01:58:58+01:00"), Some(base));
        assert_eq!(parse_utc_timestamp("2026-01-22T23:58:58-01:00"), Some(base));
        assert_eq!(
            parse_utc_timestamp("2026-01-23T00:58:58.5Z"),
            Some(base + 0.5)
        );
        assert_eq!(parse_utc_timestamp("1970-01-01T00:00:00"), Some(0.0));
        assert_eq!(
            parse_utc_timestamp("2024-02-29T00:00:00"),
            Some(1709164800.0)
        );
        for bad in [
            "",
            "2026-01-23",
            "2026-13-01T00:00:00",
            "2026-02-30T00:00:00",
            "2026-01-23T24:00:00",
            "2026-01-23T00:58:58.",
            "2026-01-23T00:58:58+1",
            "2026-01-23T00:58:58 junk",
            "yyyy-mm-ddThh:mm:ss",
            "1769130500",
        ] {
            assert_eq!(parse_utc_timestamp(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn numbers_follow_the_publishers_forms() {
        assert_eq!(parse_number("1e-09"), Some(1e-9));
        assert_eq!(parse_number(" 2.0\r"), Some(2.0));
        assert_eq!(parse_number("-0"), Some(0.0));
        assert!(parse_number("-0").unwrap().is_sign_positive());
        assert_eq!(parse_number("1769130500"), Some(1769130500.0));
        assert_eq!(parse_number("1e309"), None);
        assert_eq!(parse_number("infinity"), None);
    }

    proptest! {
        #[test]
        fn any_text_parses_without_panic_to_a_finite_value(raw in ".{0,40}") {
            let _ = parse_utc_timestamp(&raw);
            prop_assert!(parse_number(&raw).is_none_or(f64::is_finite));
        }
    }
}
