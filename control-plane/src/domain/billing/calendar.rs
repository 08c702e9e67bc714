//! Billing days: day numbers (days since 1970-01-01, UTC), calendar months, `YYYY-MM-DD` dates.
//! The calendar arithmetic itself is the one gateways use (`tollgate_rules::periods`).

use tollgate_rules::periods::{civil_from_days, days_from_civil};

pub const SECONDS_PER_DAY: i64 = 86_400;

/// The day number of a Unix timestamp.
pub fn day_of(unix: i64) -> i64 {
    unix.div_euclid(SECONDS_PER_DAY)
}

/// First day of the month containing `day`.
pub fn month_start(day: i64) -> i64 {
    let (y, m, _) = civil_from_days(day);
    days_from_civil(y, m, 1)
}

/// First day of the month after the one containing `day`.
pub fn next_month_start(day: i64) -> i64 {
    let (y, m, _) = civil_from_days(day);
    if m == 12 {
        days_from_civil(y + 1, 1, 1)
    } else {
        days_from_civil(y, m + 1, 1)
    }
}

/// First day of the month before the one containing `day`.
pub fn previous_month_start(day: i64) -> i64 {
    month_start(month_start(day) - 1)
}

/// `YYYY-MM-DD`.
pub fn format_date(day: i64) -> String {
    let (y, m, d) = civil_from_days(day);
    format!("{y:04}-{m:02}-{d:02}")
}

/// `YYYY-MM` of the month containing `day`.
pub fn format_month(day: i64) -> String {
    let (y, m, _) = civil_from_days(day);
    format!("{y:04}-{m:02}")
}

/// The year containing `day`.
pub fn year_of(day: i64) -> i64 {
    civil_from_days(day).0
}

/// Parses a strict `YYYY-MM-DD` (years 1970..=9999) into a day number.
pub fn parse_date(s: &str) -> Result<i64, String> {
    let bad = || format!("{s:?} is not a date like 2026-11-01");
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return Err(bad());
    }
    let num = |r: std::ops::Range<usize>| -> Result<u32, String> {
        let part = &s[r];
        if !part.bytes().all(|c| c.is_ascii_digit()) {
            return Err(bad());
        }
        part.parse::<u32>().map_err(|_| bad())
    };
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    if !(1970..=9999).contains(&y) || !(1..=12).contains(&m) || d == 0 {
        return Err(bad());
    }
    let day = days_from_civil(i64::from(y), m, d);
    // Rejects 2026-02-30 and friends: the day must map back to the same date.
    if civil_from_days(day) != (i64::from(y), m, d) {
        return Err(bad());
    }
    Ok(day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_and_dates() {
        let d = parse_date("2026-11-15").unwrap();
        assert_eq!(format_date(d), "2026-11-15");
        assert_eq!(format_date(month_start(d)), "2026-11-01");
        assert_eq!(format_date(next_month_start(d)), "2026-12-01");
        assert_eq!(format_date(previous_month_start(d)), "2026-10-01");
        let dec = parse_date("2026-12-31").unwrap();
        assert_eq!(format_date(next_month_start(dec)), "2027-01-01");
        assert_eq!(
            format_date(previous_month_start(parse_date("2027-01-01").unwrap())),
            "2026-12-01"
        );
        assert_eq!(
            next_month_start(parse_date("2028-02-10").unwrap())
                - month_start(parse_date("2028-02-10").unwrap()),
            29
        );
        for bad in [
            "2026-02-30",
            "2026-13-01",
            "26-11-01",
            "2026-11-1",
            "2026/11/01",
            "1969-12-31",
            "",
        ] {
            assert!(parse_date(bad).is_err(), "{bad}");
        }
    }
}
