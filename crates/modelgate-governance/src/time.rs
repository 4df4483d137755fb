//! Calendar time for display: POSIX seconds as a UTC civil date and time.
//! The log's times are POSIX seconds; people read dates.

/// UTC civil date and time of POSIX seconds `ts`: (year, month, day, hour,
/// minute, second), in the proleptic Gregorian calendar (Howard Hinnant's
/// civil-from-days).
pub fn utc(ts: u64) -> (i64, u8, u8, u8, u8, u8) {
    let days = (ts / 86_400) as i64;
    let secs = ts % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u8;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (
        year,
        month,
        day,
        (secs / 3600) as u8,
        (secs / 60 % 60) as u8,
        (secs % 60) as u8,
    )
}

/// POSIX seconds of a UTC civil date and time (the inverse of [`utc`]);
/// `None` for a date that does not exist or precedes 1970.
pub fn from_utc(year: i64, month: u8, day: u8, hour: u8, minute: u8, second: u8) -> Option<u64> {
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let days_in = [31, if leap { 29 } else { 28 }, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    if !(1..=12).contains(&month)
        || day == 0
        || day > days_in[usize::from(month - 1)]
        || hour > 23
        || minute > 59
        || second > 59
    {
        return None;
    }
    let y = year - i64::from(month <= 2);
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let t = days * 86_400 + i64::from(hour) * 3600 + i64::from(minute) * 60 + i64::from(second);
    u64::try_from(t).ok()
}

/// A time as a person types it: POSIX seconds, or a UTC date and time
/// `YYYY-MM-DD`, `YYYY-MM-DDTHH:MM` or `YYYY-MM-DDTHH:MM:SS` (a space for
/// the `T` too).
pub fn parse_time(s: &str) -> Option<u64> {
    let s = s.trim();
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse().ok();
    }
    let (date, clock) = s.split_once(['T', ' ']).unwrap_or((s, "00:00"));
    let d: Vec<&str> = date.split('-').collect();
    let c: Vec<&str> = clock.split(':').collect();
    if d.len() != 3 || !(2..=3).contains(&c.len()) {
        return None;
    }
    let n = |x: &str| x.parse::<u8>().ok();
    from_utc(
        d[0].parse().ok()?,
        n(d[1])?,
        n(d[2])?,
        n(c[0])?,
        n(c[1])?,
        c.get(2).map_or(Some(0), |x| n(x))?,
    )
}

/// The system clock in POSIX seconds (0 before 1970: a clock that wrong
/// makes every validity check fail, not pass).
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// POSIX seconds as an RFC 3339 UTC time (`2023-03-20T12:25:47Z`).
pub fn rfc3339(ts: u64) -> String {
    let (y, mo, d, h, mi, s) = utc(ts);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
}

/// A validity bound as a governance command takes it: what [`parse_time`]
/// takes, or `+N` followed by `s`, `m`, `h` or `d` from `now` (`+90d`).
pub fn parse_when(s: &str, now: u64) -> Option<u64> {
    let Some(rel) = s.trim().strip_prefix('+') else {
        return parse_time(s);
    };
    let (n, unit) = rel.split_at(rel.len().saturating_sub(1));
    let mult = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return None,
    };
    n.parse::<u64>().ok()?.checked_mul(mult)?.checked_add(now)
}

#[cfg(test)]
mod tests {
    #[test]
    fn rfc3339_matches_known_instants() {
        assert_eq!(super::rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::rfc3339(1_679_315_147), "2023-03-20T12:25:47Z");
        assert_eq!(super::rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(super::rfc3339(4_102_444_799), "2099-12-31T23:59:59Z");
    }

    #[test]
    fn relative_times_count_from_now() {
        assert_eq!(super::parse_when("+0s", 100), Some(100));
        assert_eq!(super::parse_when("+90d", 100), Some(100 + 90 * 86_400));
        assert_eq!(super::parse_when("+2h", 0), Some(7200));
        assert_eq!(super::parse_when("1796409656", 5), Some(1_796_409_656));
        for bad in ["+", "+d", "+5y", "+-1d", "+18446744073709551615d"] {
            assert_eq!(super::parse_when(bad, 100), None, "{bad}");
        }
    }

    #[test]
    fn civil_times_round_trip() {
        for t in [0, 951_782_400, 1_796_409_656, 4_102_444_799, 86_399, 1_709_251_199] {
            let (y, mo, d, h, mi, s) = super::utc(t);
            assert_eq!(super::from_utc(y, mo, d, h, mi, s), Some(t));
        }
        assert_eq!(super::parse_time("2026-12-04T18:40:56"), Some(1_796_409_656));
        assert_eq!(super::parse_time("2026-12-04 18:40"), Some(1_796_409_600));
        assert_eq!(super::parse_time("1796409656"), Some(1_796_409_656));
        assert_eq!(super::parse_time("2026-12-04"), Some(1_796_342_400));
        for bad in [
            "2026-02-30",
            "2026-13-01",
            "2026-12-04T24:00",
            "yesterday",
            "",
            "1969-12-31",
        ] {
            assert_eq!(super::parse_time(bad), None, "{bad}");
        }
    }

    #[test]
    fn known_dates() {
        assert_eq!(super::utc(0), (1970, 1, 1, 0, 0, 0));
        assert_eq!(super::utc(951_782_400), (2000, 2, 29, 0, 0, 0));
        assert_eq!(super::utc(1_796_409_656), (2026, 12, 4, 18, 40, 56));
        assert_eq!(super::utc(4_102_444_799), (2099, 12, 31, 23, 59, 59));
    }
}
