//! Calendar-aligned UTC windows for limit periods.
//!
//! A limit "100 per month" means per calendar month in UTC, not per rolling 30 days: that is what
//! 3scale does and what a developer reading an invoice expects. Weeks start on Monday (ISO 8601).
//! All arithmetic is on Unix seconds in `i64`, so it is the same on wasm32 and on 64-bit hosts.

use tollgate_protocol::Period;

const MINUTE: i64 = 60;
const HOUR: i64 = 3_600;
const DAY: i64 = 86_400;
const WEEK: i64 = 7 * DAY;
/// 1970-01-05 was the first Monday after the epoch.
const FIRST_MONDAY: i64 = 4 * DAY;

/// The window `[start, end)` containing `now`, in Unix seconds. `end` is `None` for eternity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub start: i64,
    pub end: Option<i64>,
}

impl Window {
    /// Seconds from `now` until the window resets; `None` when it never does.
    pub fn reset_in(&self, now: i64) -> Option<u64> {
        self.end.map(|end| (end - now).max(0) as u64)
    }
}

pub fn window(period: Period, now: i64) -> Window {
    let fixed = |len: i64, offset: i64| {
        let start = (now - offset).div_euclid(len) * len + offset;
        Window {
            start,
            end: Some(start + len),
        }
    };
    match period {
        Period::Minute => fixed(MINUTE, 0),
        Period::Hour => fixed(HOUR, 0),
        Period::Day => fixed(DAY, 0),
        Period::Week => fixed(WEEK, FIRST_MONDAY),
        Period::Month => {
            let (y, m, _) = civil_from_days(now.div_euclid(DAY));
            let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
            Window {
                start: days_from_civil(y, m, 1) * DAY,
                end: Some(days_from_civil(ny, nm, 1) * DAY),
            }
        }
        Period::Year => {
            let (y, _, _) = civil_from_days(now.div_euclid(DAY));
            Window {
                start: days_from_civil(y, 1, 1) * DAY,
                end: Some(days_from_civil(y + 1, 1, 1) * DAY),
            }
        }
        Period::Eternity => Window {
            start: 0,
            end: None,
        },
    }
}

/// Nominal window length in seconds, for the `w` parameter of `RateLimit-Policy`.
/// Months and years use the length of the window that contains `now`.
pub fn window_seconds(period: Period, now: i64) -> Option<u64> {
    let w = window(period, now);
    w.end.map(|end| (end - w.start) as u64)
}

/// Days since 1970-01-01 -> (year, month 1..=12, day 1..=31). Howard Hinnant's algorithm.
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// (year, month, day) -> days since 1970-01-01.
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    // 2026-11-25T17:31:12Z, a Wednesday.
    const NOW: i64 = 1_795_627_872;

    #[test]
    fn civil_round_trip_over_four_centuries() {
        for z in (-146_097 * 2..146_097 * 2).step_by(17) {
            let (y, m, d) = civil_from_days(z);
            assert_eq!(days_from_civil(y, m, d), z);
        }
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(NOW / DAY), (2026, 11, 25));
    }

    #[test]
    fn minute_hour_day_are_aligned() {
        assert_eq!(window(Period::Minute, NOW).start, 1_795_627_860);
        assert_eq!(window(Period::Minute, NOW).reset_in(NOW), Some(48));
        assert_eq!(window(Period::Hour, NOW).start % HOUR, 0);
        assert_eq!(
            window(Period::Day, NOW).start,
            days_from_civil(2026, 11, 25) * DAY
        );
    }

    #[test]
    fn weeks_start_on_monday() {
        let w = window(Period::Week, NOW);
        assert_eq!(w.start, days_from_civil(2026, 11, 23) * DAY); // Monday 23rd
        assert_eq!(w.end, Some(days_from_civil(2026, 11, 30) * DAY));
        // Monday 00:00 starts a new week; Sunday 23:59:59 belongs to the previous one.
        let monday = days_from_civil(2026, 11, 30) * DAY;
        assert_eq!(window(Period::Week, monday).start, monday);
        assert_eq!(window(Period::Week, monday - 1).start, w.start);
    }

    #[test]
    fn months_and_years_follow_the_calendar() {
        let m = window(Period::Month, NOW);
        assert_eq!(m.start, days_from_civil(2026, 11, 1) * DAY);
        assert_eq!(m.end, Some(days_from_civil(2026, 12, 1) * DAY));
        let dec = days_from_civil(2026, 12, 31) * DAY + 5;
        assert_eq!(
            window(Period::Month, dec).end,
            Some(days_from_civil(2027, 1, 1) * DAY)
        );
        // February of a leap year is 29 days long.
        let feb = days_from_civil(2028, 2, 10) * DAY;
        assert_eq!(window_seconds(Period::Month, feb), Some(29 * 86_400));
        let y = window(Period::Year, NOW);
        assert_eq!(y.start, days_from_civil(2026, 1, 1) * DAY);
        assert_eq!(y.end, Some(days_from_civil(2027, 1, 1) * DAY));
    }

    #[test]
    fn eternity_never_resets() {
        let w = window(Period::Eternity, NOW);
        assert_eq!(w.start, 0);
        assert_eq!(w.reset_in(NOW), None);
        assert_eq!(window_seconds(Period::Eternity, NOW), None);
    }

    #[test]
    fn boundaries_are_half_open() {
        for p in Period::ALL {
            let w = window(p, NOW);
            if let Some(end) = w.end {
                assert_eq!(window(p, end).start, end, "{p:?}");
                assert_eq!(window(p, end - 1).start, w.start, "{p:?}");
                assert!(w.start <= NOW && NOW < end);
            }
        }
    }
}
