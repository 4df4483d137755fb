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

#[cfg(test)]
mod tests {
    #[test]
    fn known_dates() {
        assert_eq!(super::utc(0), (1970, 1, 1, 0, 0, 0));
        assert_eq!(super::utc(951_782_400), (2000, 2, 29, 0, 0, 0));
        assert_eq!(super::utc(1_796_409_656), (2026, 12, 4, 18, 40, 56));
        assert_eq!(super::utc(4_102_444_799), (2099, 12, 31, 23, 59, 59));
    }
}
