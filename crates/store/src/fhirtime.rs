//! FHIR date/dateTime/instant values as half-open millisecond ranges, and the two instant
//! formats the store writes (`meta.lastUpdated` and HTTP `Last-Modified`).
//!
//! A partial date stands for the whole period it names: `2020` is every instant of 2020.
//! Values without a zone are read as UTC (FHIR leaves that to the server).

use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time, UtcOffset};

/// Lowest and highest representable instants, used for open period ends.
pub const MIN_MS: i64 = i64::MIN / 2;
pub const MAX_MS: i64 = i64::MAX / 2;

/// `[lo, hi)` in milliseconds since the epoch, or `None` when the text is not a FHIR date.
pub fn parse_range(s: &str) -> Option<(i64, i64)> {
    let s = s.trim();
    let (date_part, time_part) = match s.split_once('T') {
        Some((d, t)) => (d, Some(t)),
        None => (s, None),
    };
    let mut it = date_part.split('-');
    let year: i32 = parse_digits(it.next()?, 4)?;
    let month = match it.next() {
        Some(m) => Some(parse_digits::<u8>(m, 2)?),
        None => None,
    };
    let day = match it.next() {
        Some(d) => Some(parse_digits::<u8>(d, 2)?),
        None => None,
    };
    if it.next().is_some() {
        return None;
    }
    let Some(t) = time_part else {
        return Some(match (month, day) {
            (None, _) => (ms(date(year, 1, 1)?), ms(date(year + 1, 1, 1)?)),
            (Some(m), None) => {
                let (ny, nm) = if m == 12 {
                    (year + 1, 1)
                } else {
                    (year, m + 1)
                };
                (ms(date(year, m, 1)?), ms(date(ny, nm, 1)?))
            }
            (Some(m), Some(d)) => {
                let lo = ms(date(year, m, d)?);
                (lo, lo + 86_400_000)
            }
        });
    };
    let day_start = date(year, month?, day?)?;
    // Split off the zone designator.
    let (clock, offset) = if let Some(c) = t.strip_suffix('Z') {
        (c, UtcOffset::UTC)
    } else if let Some(pos) = t.rfind(['+', '-']) {
        let (c, z) = t.split_at(pos);
        let sign: i8 = if z.starts_with('-') { -1 } else { 1 };
        let (zh, zm) = z.get(1..)?.split_once(':')?;
        let off = UtcOffset::from_hms(
            sign * parse_digits::<i8>(zh, 2)?,
            sign * parse_digits::<i8>(zm, 2)?,
            0,
        )
        .ok()?;
        (c, off)
    } else {
        (t, UtcOffset::UTC)
    };
    let mut parts = clock.split(':');
    let h: u8 = parse_digits(parts.next()?, 2)?;
    let mi: u8 = parse_digits(parts.next()?, 2)?;
    let (sec, frac, width) = match parts.next() {
        None => (0u8, 0u32, 60_000),
        Some(sec) => match sec.split_once('.') {
            Some((s, f)) if !f.is_empty() && f.bytes().all(|b| b.is_ascii_digit()) => {
                let ms_digits: String = f.chars().chain("000".chars()).take(3).collect();
                (parse_digits(s, 2)?, ms_digits.parse().ok()?, 1)
            }
            Some(_) => return None,
            None => (parse_digits(sec, 2)?, 0, 1000),
        },
    };
    let time = Time::from_hms_milli(h, mi, sec, u16::try_from(frac).ok()?).ok()?;
    let lo = PrimitiveDateTime::new(day_start, time).assume_offset(offset);
    let lo = i64::try_from(lo.unix_timestamp_nanos() / 1_000_000).ok()?;
    Some((lo, lo + width))
}

fn parse_digits<T: std::str::FromStr>(s: &str, len: usize) -> Option<T> {
    if s.len() == len && s.bytes().all(|b| b.is_ascii_digit()) {
        s.parse().ok()
    } else {
        None
    }
}

fn date(y: i32, m: u8, d: u8) -> Option<Date> {
    Date::from_calendar_date(y, Month::try_from(m).ok()?, d).ok()
}

fn ms(d: Date) -> i64 {
    d.midnight().assume_utc().unix_timestamp() * 1000
}

/// The current instant, truncated to milliseconds.
pub fn now_ms() -> i64 {
    i64::try_from(OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000).unwrap_or(0)
}

fn to_datetime(ms: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// FHIR `instant` text, e.g. `2024-05-01T10:00:00.123Z`.
pub fn format_instant(ms: i64) -> String {
    let t = to_datetime(ms);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// RFC 9110 HTTP-date (IMF-fixdate), e.g. `Sun, 06 Nov 1994 08:49:37 GMT`.
pub fn format_http_date(ms: i64) -> String {
    let t = to_datetime(ms);
    let wd = DAYS
        .get(usize::from(t.weekday().number_days_from_monday()))
        .unwrap_or(&"Mon");
    let mo = MONTHS
        .get(usize::from(u8::from(t.month())).saturating_sub(1))
        .unwrap_or(&"Jan");
    format!(
        "{wd}, {:02} {mo} {:04} {:02}:{:02}:{:02} GMT",
        t.day(),
        t.year(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// Parse an IMF-fixdate into milliseconds (whole seconds).
pub fn parse_http_date(s: &str) -> Option<i64> {
    let rest = s.trim().split_once(", ")?.1;
    let mut it = rest.split(' ');
    let day: u8 = it.next()?.parse().ok()?;
    let mon = it.next()?;
    let m = MONTHS.iter().position(|x| *x == mon)?;
    let year: i32 = it.next()?.parse().ok()?;
    let mut clock = it.next()?.split(':');
    let h: u8 = clock.next()?.parse().ok()?;
    let mi: u8 = clock.next()?.parse().ok()?;
    let sec: u8 = clock.next()?.parse().ok()?;
    let d = date(year, u8::try_from(m + 1).ok()?, day)?;
    let t = Time::from_hms(h, mi, sec).ok()?;
    Some(PrimitiveDateTime::new(d, t).assume_utc().unix_timestamp() * 1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_dates_cover_their_period() {
        let (lo, hi) = parse_range("2020").unwrap();
        assert_eq!(hi - lo, 366 * 86_400_000);
        let (lo, hi) = parse_range("2021-02").unwrap();
        assert_eq!(hi - lo, 28 * 86_400_000);
        let (lo, hi) = parse_range("2021-02-03").unwrap();
        assert_eq!(hi - lo, 86_400_000);
        assert_eq!(format_instant(lo), "2021-02-03T00:00:00.000Z");
    }

    #[test]
    fn date_times_honour_zones_and_precision() {
        let (lo, hi) = parse_range("2021-02-03T10:00:00+02:00").unwrap();
        assert_eq!(format_instant(lo), "2021-02-03T08:00:00.000Z");
        assert_eq!(hi - lo, 1000);
        let (lo, hi) = parse_range("2021-02-03T10:00:00.5Z").unwrap();
        assert_eq!(format_instant(lo), "2021-02-03T10:00:00.500Z");
        assert_eq!(hi - lo, 1);
        assert!(parse_range("20-01").is_none());
        assert!(parse_range("2020-13").is_none());
        assert!(parse_range("yesterday").is_none());
    }

    #[test]
    fn http_dates_round_trip() {
        let ms = parse_range("1994-11-06T08:49:37Z").unwrap().0;
        let s = format_http_date(ms);
        assert_eq!(s, "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(parse_http_date(&s), Some(ms));
    }
}
