//! Event timestamps: a UTC instant at microsecond precision, written the way pydantic writes an
//! aware UTC `datetime`, and read liberally from query strings.
//!
//! This file owns the clock used for bash events and the text forms of a timestamp. It does not
//! know about events, stores or HTTP.
//!
//! Invariants: a [`Timestamp`] is always UTC, whole microseconds, and within years 0000..=9999,
//! so formatting it cannot fail; [`Timestamp::now`] never goes backwards within the process, so
//! events created one after another sort in creation order even if the wall clock steps back.

use std::fmt;
use std::sync::atomic::{AtomicI64, Ordering};

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time, UtcOffset};

const MICROS_PER_SECOND: i64 = 1_000_000;

/// Microseconds of 0000-01-01T00:00:00Z and of 9999-12-31T23:59:59.999999Z since the Unix epoch.
const MIN_MICROS: i64 = -62_167_219_200 * MICROS_PER_SECOND;
const MAX_MICROS: i64 = 253_402_300_800 * MICROS_PER_SECOND - 1;

/// The latest value [`Timestamp::now`] has returned, so it never returns an earlier one.
static LAST_NOW: AtomicI64 = AtomicI64::new(i64::MIN);

/// A UTC instant with microsecond precision, as pydantic keeps a `datetime`.
///
/// Serializes like pydantic's JSON mode for an aware UTC datetime:
/// `2024-05-01T12:34:56.789012Z`, or `2024-05-01T12:34:56Z` when the microseconds are zero.
/// Ordering is chronological.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp {
    /// Microseconds since 1970-01-01T00:00:00Z, within [`MIN_MICROS`]..=[`MAX_MICROS`].
    micros: i64,
}

impl Timestamp {
    /// The current time, truncated to microseconds; never earlier than a previous call's result.
    pub fn now() -> Self {
        let wall = i64::try_from(OffsetDateTime::now_utc().unix_timestamp_nanos() / 1000).unwrap_or(0);
        let wall = wall.clamp(MIN_MICROS, MAX_MICROS);
        // `fetch_max` returns the previous maximum; the result is the larger of the two.
        let previous = LAST_NOW.fetch_max(wall, Ordering::Relaxed);
        Timestamp { micros: wall.max(previous) }
    }

    /// The instant `micros` microseconds after the Unix epoch, if it lies in years 0000..=9999.
    pub fn from_unix_micros(micros: i64) -> Option<Self> {
        (MIN_MICROS..=MAX_MICROS).contains(&micros).then_some(Timestamp { micros })
    }

    /// Microseconds since the Unix epoch.
    pub fn unix_micros(self) -> i64 {
        self.micros
    }

    /// Parses a date-time the way a query parameter may carry one, or `None`.
    ///
    /// Accepted, mirroring what pydantic accepts for a `datetime` query parameter:
    /// - `YYYY-MM-DD`, optionally followed by `T`, `t`, `_` or a space and `HH:MM`, `HH:MM:SS`
    ///   or `HH:MM:SS.f` with 1 to 9 fraction digits (`,` also separates the fraction);
    ///   digits beyond microseconds are truncated;
    /// - an optional zone: `Z`, `z`, `±HH:MM`, `±HHMM` or `±HH`. A space in place of `+` is
    ///   accepted too, since an unencoded `+` in a query string decodes to a space;
    /// - no zone means UTC (the reference compares naive values against UTC wall time);
    /// - a Unix time in seconds, with an optional fraction; like pydantic, a magnitude above
    ///   2e10 is read as milliseconds.
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.trim();
        if text.is_empty() {
            return None;
        }
        if text.bytes().all(|b| b.is_ascii_digit() || b == b'.' || b == b'-' || b == b'+') {
            if let Some(ts) = parse_unix(text) {
                return Some(ts);
            }
        }
        parse_iso(text.as_bytes())
    }

    fn to_offset_date_time(self) -> Option<OffsetDateTime> {
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(self.micros) * 1000).ok()
    }
}

impl fmt::Display for Timestamp {
    /// Writes pydantic's JSON form: fraction only when non-zero, always six digits, then `Z`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some(dt) = self.to_offset_date_time() else {
            // Unreachable by the range invariant; write the epoch rather than panic.
            return f.write_str("1970-01-01T00:00:00Z");
        };
        write!(
            f,
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
            dt.year(),
            u8::from(dt.month()),
            dt.day(),
            dt.hour(),
            dt.minute(),
            dt.second()
        )?;
        if dt.microsecond() != 0 {
            write!(f, ".{:06}", dt.microsecond())?;
        }
        f.write_str("Z")
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Timestamp::parse(&text).ok_or_else(|| serde::de::Error::custom("invalid timestamp"))
    }
}

/// Unix seconds (optionally fractional, optionally signed); milliseconds above 2e10 like pydantic.
fn parse_unix(text: &str) -> Option<Timestamp> {
    let value: f64 = text.parse().ok()?;
    if !value.is_finite() {
        return None;
    }
    let seconds = if value.abs() > 2e10 { value / 1000.0 } else { value };
    let micros = (seconds * 1e6).floor();
    // The range check also guarantees the cast below is exact enough and cannot saturate wrongly.
    if !(MIN_MICROS as f64..=MAX_MICROS as f64).contains(&micros) {
        return None;
    }
    Timestamp::from_unix_micros(micros as i64)
}

/// A byte cursor over ASCII date-time text.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn eat(&mut self, byte: u8) -> bool {
        let found = self.peek() == Some(byte);
        if found {
            self.pos += 1;
        }
        found
    }

    /// Exactly `n` ASCII digits as a number.
    fn digits(&mut self, n: usize) -> Option<u32> {
        let end = self.pos.checked_add(n)?;
        let slice = self.bytes.get(self.pos..end)?;
        let mut value = 0u32;
        for &b in slice {
            if !b.is_ascii_digit() {
                return None;
            }
            value = value * 10 + u32::from(b - b'0');
        }
        self.pos = end;
        Some(value)
    }

    fn at_end(&self) -> bool {
        self.pos >= self.bytes.len()
    }
}

fn parse_iso(bytes: &[u8]) -> Option<Timestamp> {
    let mut c = Cursor { bytes, pos: 0 };
    let year = c.digits(4)?;
    c.eat(b'-').then_some(())?;
    let month = c.digits(2)?;
    c.eat(b'-').then_some(())?;
    let day = c.digits(2)?;
    let date = Date::from_calendar_date(
        i32::try_from(year).ok()?,
        Month::try_from(u8::try_from(month).ok()?).ok()?,
        u8::try_from(day).ok()?,
    )
    .ok()?;
    if c.at_end() {
        return finish(date, Time::MIDNIGHT, UtcOffset::UTC);
    }
    if !matches!(c.peek(), Some(b'T' | b't' | b'_' | b' ')) {
        return None;
    }
    c.pos += 1;
    let hour = c.digits(2)?;
    c.eat(b':').then_some(())?;
    let minute = c.digits(2)?;
    let mut second = 0;
    let mut micro = 0;
    if c.eat(b':') {
        second = c.digits(2)?;
        if c.eat(b'.') || c.eat(b',') {
            let mut count = 0;
            while let Some(b) = c.peek().filter(u8::is_ascii_digit) {
                if count < 6 {
                    micro = micro * 10 + u32::from(b - b'0');
                }
                count += 1;
                c.pos += 1;
            }
            if !(1..=9).contains(&count) {
                return None;
            }
            for _ in count..6 {
                micro *= 10;
            }
        }
    }
    let time = Time::from_hms_micro(
        u8::try_from(hour).ok()?,
        u8::try_from(minute).ok()?,
        u8::try_from(second).ok()?,
        micro,
    )
    .ok()?;
    let offset = parse_offset(&mut c)?;
    c.at_end().then_some(())?;
    finish(date, time, offset)
}

/// The zone suffix, or UTC when there is none.
fn parse_offset(c: &mut Cursor<'_>) -> Option<UtcOffset> {
    let sign: i8 = match c.peek() {
        None => return Some(UtcOffset::UTC),
        Some(b'Z' | b'z') => {
            c.pos += 1;
            return Some(UtcOffset::UTC);
        }
        Some(b'+' | b' ') => 1,
        Some(b'-') => -1,
        Some(_) => return None,
    };
    c.pos += 1;
    let hours = c.digits(2)?;
    let minutes = if c.at_end() {
        0
    } else {
        c.eat(b':');
        c.digits(2)?
    };
    // pydantic accepts offsets under a day; `UtcOffset` alone would allow up to ±25:59.
    if hours > 23 || minutes > 59 {
        return None;
    }
    let hours = sign * i8::try_from(hours).ok()?;
    let minutes = sign * i8::try_from(minutes).ok()?;
    UtcOffset::from_hms(hours, minutes, 0).ok()
}

fn finish(date: Date, time: Time, offset: UtcOffset) -> Option<Timestamp> {
    let instant = PrimitiveDateTime::new(date, time).assume_offset(offset);
    let micros = i64::try_from(instant.unix_timestamp_nanos() / 1000).ok()?;
    Timestamp::from_unix_micros(micros)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn micros(text: &str) -> i64 {
        match Timestamp::parse(text) {
            Some(ts) => ts.unix_micros(),
            None => panic!("{text:?} should parse"),
        }
    }

    // 2024-01-01T12:00:00Z
    const NOON: i64 = 1_704_110_400 * MICROS_PER_SECOND;

    #[test]
    fn formats_like_pydantic() {
        let ts = Timestamp::from_unix_micros(NOON + 123_456).unwrap();
        assert_eq!(ts.to_string(), "2024-01-01T12:00:00.123456Z");
        let ts = Timestamp::from_unix_micros(NOON).unwrap();
        assert_eq!(ts.to_string(), "2024-01-01T12:00:00Z");
        let ts = Timestamp::from_unix_micros(NOON + 1).unwrap();
        assert_eq!(ts.to_string(), "2024-01-01T12:00:00.000001Z");
        assert_eq!(serde_json::to_value(ts).unwrap(), serde_json::json!("2024-01-01T12:00:00.000001Z"));
        let min = Timestamp::from_unix_micros(MIN_MICROS).unwrap();
        assert_eq!(min.to_string(), "0000-01-01T00:00:00Z");
        let max = Timestamp::from_unix_micros(MAX_MICROS).unwrap();
        assert_eq!(max.to_string(), "9999-12-31T23:59:59.999999Z");
        assert_eq!(Timestamp::from_unix_micros(MAX_MICROS + 1), None);
    }

    #[test]
    fn parses_the_forms_clients_send() {
        for text in [
            "2024-01-01T12:00:00Z",      // pydantic, zero microseconds
            "2024-01-01T12:00:00+00:00", // Python isoformat()
            "2024-01-01T12:00:00",       // naive
            "2024-01-01 12:00:00",       // space separator
            "2024-01-01t12:00:00z",      // lower case
            "2024-01-01T12:00",          // no seconds
            "2024-01-01T14:00:00+02:00", // offset
            "2024-01-01T14:00:00+0200",  // compact offset
            "2024-01-01T14:00:00+02",    // hours-only offset
            "2024-01-01T14:00:00 02:00", // '+' decoded to a space
            "2024-01-01T10:30:00-01:30", // negative offset
            "  2024-01-01T12:00:00Z  ",  // surrounding whitespace
            "1704110400",                // Unix seconds
            "1704110400000",             // Unix milliseconds
        ] {
            assert_eq!(micros(text), NOON, "{text}");
        }
        assert_eq!(micros("2024-01-01T12:00:00.123456Z"), NOON + 123_456);
        assert_eq!(micros("2024-01-01T12:00:00.123456+00:00"), NOON + 123_456);
        assert_eq!(micros("2024-01-01T12:00:00.123Z"), NOON + 123_000); // JavaScript toISOString()
        assert_eq!(micros("2024-01-01T12:00:00.5"), NOON + 500_000);
        assert_eq!(micros("2024-01-01T12:00:00,5"), NOON + 500_000);
        assert_eq!(micros("2024-01-01T12:00:00.123456789Z"), NOON + 123_456);
        assert_eq!(micros("1704110400.25"), NOON + 250_000);
        assert_eq!(micros("2024-01-01"), NOON - 12 * 3600 * MICROS_PER_SECOND);
    }

    #[test]
    fn round_trips_its_own_form() {
        for m in [NOON, NOON + 1, NOON + 999_999, 0, -1, MIN_MICROS, MAX_MICROS] {
            let ts = Timestamp::from_unix_micros(m).unwrap();
            assert_eq!(Timestamp::parse(&ts.to_string()), Some(ts));
            let json = serde_json::to_string(&ts).unwrap();
            assert_eq!(serde_json::from_str::<Timestamp>(&json).unwrap(), ts);
        }
    }

    #[test]
    fn rejects_malformed_text() {
        for text in [
            "",
            " ",
            "yesterday",
            "2024-13-01T00:00:00Z",
            "2024-02-30T00:00:00Z",
            "2024-01-01T24:00:00Z",
            "2024-01-01T12:60:00Z",
            "2024-01-01T12:00:00.Z",
            "2024-01-01T12:00:00.1234567890Z",
            "2024-01-01T12:00:00+24:00",
            "2024-01-01T12:00:00+01:60",
            "2024-01-01T12:00:00Zjunk",
            "2024-01-01X12:00:00",
            "2024-1-1",
            "24-01-01",
            "2024-01-01T12",
            "2024-01-01T12:00:00+",
            "2024-01-01T12:00:00+0",
            "1e400",
            "NaN",
            "99999999999999999999999",
            "-",
            "+",
            ".",
            "2024-01-01T12:00:00é",
            "２０２４-01-01",
        ] {
            assert_eq!(Timestamp::parse(text), None, "{text:?}");
        }
    }

    #[test]
    fn now_never_goes_backwards() {
        let mut previous = Timestamp::now();
        for _ in 0..1000 {
            let next = Timestamp::now();
            assert!(next >= previous);
            previous = next;
        }
    }
}
