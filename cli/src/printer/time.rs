//! Times as `hubble observe` reads and prints them: `--time-format`'s
//! layouts (always UTC, as Hubble prints them, so output does not depend on
//! the machine's zone) and the values `--since`/`--until` take.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::bail;
use chrono::{DateTime, NaiveDate};
use prost_types::Timestamp;

/// `--time-format`: the layouts `hubble observe` offers, under its names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TimeFormat {
    /// `Nov 25 01:46:56.162` (Go's `time.StampMilli`).
    #[default]
    StampMilli,
    /// `2025-11-25`
    YearMonthDay,
    /// `2025-11-25T01Z`
    YearMonthDayHour,
    /// `2025-11-25T01:46Z`
    YearMonthDayHourMinute,
    /// `2025-11-25T01:46:56Z`
    Rfc3339,
    /// `2025-11-25T01:46:56.162Z`; like the two below, the fraction loses
    /// its trailing zeros, and its dot when nothing is left.
    Rfc3339Milli,
    /// `2025-11-25T01:46:56.162003Z`
    Rfc3339Micro,
    /// `2025-11-25T01:46:56.162003144Z`
    Rfc3339Nano,
    /// `Tue, 25 Nov 2025 01:46:56 +0000`
    Rfc1123Z,
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// The seconds of 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z, the range
/// of a valid protobuf timestamp.
const FIRST: i64 = -62_135_596_800;
const LAST: i64 = 253_402_300_799;

impl TimeFormat {
    /// Every format under the name `--time-format` takes (in any case).
    pub const ALL: [(&'static str, TimeFormat); 9] = [
        ("StampMilli", TimeFormat::StampMilli),
        ("YearMonthDay", TimeFormat::YearMonthDay),
        ("YearMonthDayHour", TimeFormat::YearMonthDayHour),
        ("YearMonthDayHourMinute", TimeFormat::YearMonthDayHourMinute),
        ("RFC3339", TimeFormat::Rfc3339),
        ("RFC3339Milli", TimeFormat::Rfc3339Milli),
        ("RFC3339Micro", TimeFormat::Rfc3339Micro),
        ("RFC3339Nano", TimeFormat::Rfc3339Nano),
        ("RFC1123Z", TimeFormat::Rfc1123Z),
    ];

    /// The format of a `--time-format` name (any case); the error says
    /// which names there are.
    pub fn from_name(name: &str) -> Result<TimeFormat, String> {
        Self::ALL
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, f)| *f)
            .ok_or_else(|| {
                let names: Vec<&str> = Self::ALL.iter().map(|(n, _)| *n).collect();
                format!("use one of {}", names.join(", "))
            })
    }

    /// `t` in this layout; `N/A` without a time or with one protobuf calls
    /// invalid (outside years 1-9999, or nanos out of range), as Hubble.
    pub fn format(self, t: Option<&Timestamp>) -> String {
        let Some(t) = t.filter(|t| (FIRST..=LAST).contains(&t.seconds) && (0..1_000_000_000).contains(&t.nanos)) else {
            return "N/A".into();
        };
        let Some(time) = DateTime::from_timestamp(t.seconds, t.nanos as u32) else {
            return "N/A".into();
        };
        let layout = |layout: &str| time.format(layout).to_string();
        // Go trims the fraction's trailing zeros, which chrono's `%.f` does not.
        let fraction = |digits: usize| {
            let nanos = format!("{:09}", t.nanos);
            match nanos[..digits].trim_end_matches('0') {
                "" => String::new(),
                kept => format!(".{kept}"),
            }
        };
        match self {
            // chrono's `%.3f` truncates, as Go does.
            TimeFormat::StampMilli => layout("%b %e %H:%M:%S%.3f"),
            TimeFormat::YearMonthDay => layout("%Y-%m-%d"),
            TimeFormat::YearMonthDayHour => layout("%Y-%m-%dT%HZ"),
            TimeFormat::YearMonthDayHourMinute => layout("%Y-%m-%dT%H:%MZ"),
            TimeFormat::Rfc3339 => layout("%Y-%m-%dT%H:%M:%SZ"),
            TimeFormat::Rfc3339Milli => format!("{}{}Z", layout("%Y-%m-%dT%H:%M:%S"), fraction(3)),
            TimeFormat::Rfc3339Micro => format!("{}{}Z", layout("%Y-%m-%dT%H:%M:%S"), fraction(6)),
            TimeFormat::Rfc3339Nano => format!("{}{}Z", layout("%Y-%m-%dT%H:%M:%S"), fraction(9)),
            TimeFormat::Rfc1123Z => layout("%a, %d %b %Y %H:%M:%S +0000"),
        }
    }
}

/// A duration in Go's syntax (`300ms`, `1h30m`, `1.5h`, `-2m`, `0`) in
/// nanoseconds, as `hubble observe --since` reads it.
fn go_duration(text: &str) -> Option<i128> {
    let (negative, mut rest) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    if rest == "0" {
        return Some(0);
    }
    if rest.is_empty() {
        return None;
    }
    let mut total: i128 = 0;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(rest.len());
        let (number, tail) = rest.split_at(number_len);
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        if (whole.is_empty() && fraction.is_empty()) || fraction.contains('.') {
            return None;
        }
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let scale: i128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return None,
        };
        let whole: i128 = if whole.is_empty() { 0 } else { whole.parse().ok()? };
        let mut part = whole.checked_mul(scale)?;
        let mut place = scale;
        for digit in fraction.bytes().take(18) {
            place /= 10;
            part += i128::from(digit - b'0') * place;
        }
        total = total.checked_add(part)?;
        rest = tail;
    }
    Some(if negative { -total } else { total })
}

fn number(text: &str, digits: usize) -> Option<i64> {
    (text.len() == digits && text.bytes().all(|b| b.is_ascii_digit()))
        .then(|| text.parse().ok())
        .flatten()
}

/// `Z` or `+hh:mm`/`-hh:mm` (`+hhmm` with `colon` false): seconds east of UTC.
fn zone(text: &str, colon: bool) -> Option<i64> {
    if text == "Z" && colon {
        return Some(0);
    }
    let sign = match text.as_bytes().first()? {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let (h, m) = if colon {
        text[1..].split_once(':')?
    } else {
        (text.get(1..3)?, text.get(3..)?)
    };
    let (h, m) = (number(h, 2)?, number(m, 2)?);
    (h < 24 && m < 60).then_some(sign * (h * 3600 + m * 60))
}

/// Seconds since the epoch of a civil time, checked, at `offset` seconds
/// east of UTC.
fn seconds(date: (i64, i64, i64), clock: (i64, i64, i64), offset: i64) -> Option<i64> {
    let ((y, mo, d), (h, mi, s)) = (date, clock);
    let date = NaiveDate::from_ymd_opt(y.try_into().ok()?, mo.try_into().ok()?, d.try_into().ok()?)?;
    let time = date.and_hms_opt(h.try_into().ok()?, mi.try_into().ok()?, s.try_into().ok()?)?;
    Some(time.and_utc().timestamp() - offset)
}

/// A time in one of the layouts `hubble observe --since` takes: `2006-01-02`,
/// `2006-01-02T15Z07:00`, `2006-01-02T15:04Z07:00`, RFC 3339 (with any
/// fraction of a second), RFC 1123 with a numeric zone.
fn hubble_layout(text: &str) -> Option<(i64, i32)> {
    if let Some((_weekday, rest)) = text.split_once(", ") {
        let parts: Vec<&str> = rest.split(' ').collect();
        let [day, month, year, clock, offset] = parts[..] else {
            return None;
        };
        let month = MONTHS.iter().position(|m| *m == month)? as i64 + 1;
        let clock: Vec<&str> = clock.split(':').collect();
        let [h, mi, s] = clock[..] else {
            return None;
        };
        let date = (number(year, 4)?, month, number(day, 2)?);
        let clock = (number(h, 2)?, number(mi, 2)?, number(s, 2)?);
        return Some((seconds(date, clock, zone(offset, false)?)?, 0));
    }
    let (date, rest) = (text.get(..10)?, text.get(10..)?);
    let date_parts: Vec<&str> = date.split('-').collect();
    let [y, mo, d] = date_parts[..] else {
        return None;
    };
    let date = (number(y, 4)?, number(mo, 2)?, number(d, 2)?);
    if rest.is_empty() {
        return Some((seconds(date, (0, 0, 0), 0)?, 0));
    }
    let rest = rest.strip_prefix('T')?;
    let zone_at = rest.find(['Z', '+', '-'])?;
    let (clock, offset) = rest.split_at(zone_at);
    let (clock, fraction) = clock.split_once('.').unwrap_or((clock, ""));
    let fields: Vec<&str> = clock.split(':').collect();
    let (h, mi, s) = match fields[..] {
        [h] => (number(h, 2)?, 0, 0),
        [h, mi] => (number(h, 2)?, number(mi, 2)?, 0),
        [h, mi, s] => (number(h, 2)?, number(mi, 2)?, number(s, 2)?),
        _ => return None,
    };
    if !fraction.is_empty() && (fields.len() != 3 || !fraction.bytes().all(|b| b.is_ascii_digit())) {
        return None;
    }
    let nanos = format!("{fraction:0<9}").get(..9)?.parse().ok()?;
    Some((seconds(date, (h, mi, s), zone(offset, true)?)?, nanos))
}

/// `--since`/`--until`: a duration before `now` in Go's syntax (`5m`,
/// `1h30m`, `1.5h`) or humantime's (`1h 30m`, `2days`), or a time in one of
/// Hubble's layouts (RFC 3339 and the others [`hubble_layout`] names).
pub fn parse_time(value: &str, now: SystemTime) -> anyhow::Result<Timestamp> {
    let at = if let Some(ago) = go_duration(value) {
        let now = now.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO).as_nanos() as i128;
        let at = (now - ago).max(0);
        return Ok(Timestamp {
            seconds: (at / 1_000_000_000) as i64,
            nanos: (at % 1_000_000_000) as i32,
        });
    } else if let Some((seconds, nanos)) = hubble_layout(value) {
        return Ok(Timestamp { seconds, nanos });
    } else if let Ok(t) = humantime::parse_rfc3339_weak(value) {
        t
    } else if let Ok(ago) = humantime::parse_duration(value) {
        now.checked_sub(ago).unwrap_or(UNIX_EPOCH)
    } else {
        bail!("invalid time {value:?}: use RFC 3339 (2025-11-25T01:46:56Z) or a duration ago (5m, 1h30m)")
    };
    let since_epoch = at.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    Ok(Timestamp {
        seconds: since_epoch.as_secs() as i64,
        nanos: since_epoch.subsec_nanos() as i32,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_764_035_216;

    fn at(seconds: i64, nanos: i32) -> Timestamp {
        Timestamp { seconds, nanos }
    }

    #[test]
    fn stamp_milli_is_hubbles_default_layout_in_utc() {
        let stamp = |seconds, nanos| TimeFormat::StampMilli.format(Some(&at(seconds, nanos)));
        assert_eq!(stamp(1_764_035_216, 162_999_999), "Nov 25 01:46:56.162");
        assert_eq!(stamp(951_782_400, 0), "Feb 29 00:00:00.000");
        assert_eq!(stamp(-1, 0), "Dec 31 23:59:59.000");
        assert_eq!(stamp(0, 1_000_000_000), "N/A");
        assert_eq!(stamp(LAST + 1, 0), "N/A");
        assert_eq!(TimeFormat::StampMilli.format(None), "N/A");
    }

    #[test]
    fn every_time_format_as_hubble_prints_it() {
        let expected = [
            ("stampmilli", "Nov 25 01:46:56.162", "Nov 25 01:46:56.000"),
            ("YearMonthDay", "2025-11-25", "2025-11-25"),
            ("YearMonthDayHour", "2025-11-25T01Z", "2025-11-25T01Z"),
            ("YearMonthDayHourMinute", "2025-11-25T01:46Z", "2025-11-25T01:46Z"),
            ("RFC3339", "2025-11-25T01:46:56Z", "2025-11-25T01:46:56Z"),
            ("rfc3339milli", "2025-11-25T01:46:56.162Z", "2025-11-25T01:46:56Z"),
            ("RFC3339Micro", "2025-11-25T01:46:56.162003Z", "2025-11-25T01:46:56Z"),
            ("RFC3339Nano", "2025-11-25T01:46:56.16200314Z", "2025-11-25T01:46:56Z"),
            (
                "RFC1123Z",
                "Tue, 25 Nov 2025 01:46:56 +0000",
                "Tue, 25 Nov 2025 01:46:56 +0000",
            ),
        ];
        for (name, fraction, whole) in expected {
            let format = TimeFormat::from_name(name).unwrap();
            assert_eq!(format.format(Some(&at(NOW as i64, 162_003_140))), fraction, "{name}");
            assert_eq!(format.format(Some(&at(NOW as i64, 0))), whole, "{name}");
        }
        assert_eq!(
            TimeFormat::from_name("Kitchen").unwrap_err(),
            "use one of StampMilli, YearMonthDay, YearMonthDayHour, YearMonthDayHourMinute, RFC3339, \
             RFC3339Milli, RFC3339Micro, RFC3339Nano, RFC1123Z"
        );
    }

    #[test]
    fn since_takes_durations_ago_and_hubbles_layouts() {
        let now = UNIX_EPOCH + Duration::from_secs(NOW);
        let parse = |v: &str| parse_time(v, now).map(|t| (t.seconds, t.nanos)).unwrap();
        let n = NOW as i64;
        assert_eq!(parse("5m"), (n - 300, 0));
        assert_eq!(parse("1h30m"), (n - 5400, 0));
        assert_eq!(parse("1.5h"), (n - 5400, 0));
        assert_eq!(parse("1h 30m"), (n - 5400, 0));
        assert_eq!(parse("300ms"), (n - 1, 700_000_000));
        assert_eq!(parse("-1m"), (n + 60, 0));
        assert_eq!(parse("0"), (n, 0));
        assert_eq!(parse("2025-11-25T01:46:56.5Z"), (n, 500_000_000));
        assert_eq!(parse("2025-11-25T02:46:56+01:00"), (n, 0));
        assert_eq!(parse("2025-11-25T01:46Z"), (n - 56, 0));
        assert_eq!(parse("2025-11-25T01Z"), (n - 46 * 60 - 56, 0));
        assert_eq!(parse("2025-11-25"), (n - 3600 - 46 * 60 - 56, 0));
        assert_eq!(parse("Tue, 25 Nov 2025 03:46:56 +0200"), (n, 0));
        assert_eq!(parse("2000-02-29"), (951_782_400, 0));
        for bad in ["yesterday", "2025-02-29", "2025-11-25T25Z", "5 parsecs", "1..5h"] {
            assert_eq!(
                parse_time(bad, now).unwrap_err().to_string(),
                format!("invalid time {bad:?}: use RFC 3339 (2025-11-25T01:46:56Z) or a duration ago (5m, 1h30m)")
            );
        }
    }
}
