//! Timestamps: Unix milliseconds in the database, `saved_at` text on the wire.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The last millisecond that RFC 3339 with a four-digit year can show
/// (9999-12-31T23:59:59.999Z).
const MAX_FORMATTED_MS: i64 = 253_402_300_799_999;

/// Formats Unix milliseconds as docs/protocol.md's `saved_at`: exactly
/// `YYYY-MM-DDTHH:MM:SS.mmmZ`, in UTC.
///
/// Times before 1970 or after year 9999 cannot be written that way and are
/// clamped to those limits (the store never produces them).
///
/// # Examples
///
/// ```
/// use portcullis_store::format_saved_at;
///
/// assert_eq!(format_saved_at(0), "1970-01-01T00:00:00.000Z");
/// assert_eq!(format_saved_at(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
/// ```
pub fn format_saved_at(unix_ms: i64) -> String {
    let ms = u64::try_from(unix_ms.clamp(0, MAX_FORMATTED_MS)).unwrap_or(0);
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

/// The wall clock in Unix milliseconds (0 if the clock is before 1970).
pub(crate) fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_exactly_millis_in_utc() {
        assert_eq!(format_saved_at(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(format_saved_at(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
        assert_eq!(format_saved_at(1_795_314_965_123), "2026-11-22T02:36:05.123Z");
        assert_eq!(format_saved_at(951_782_400_007), "2000-02-29T00:00:00.007Z");
    }

    #[test]
    fn out_of_range_is_clamped_not_a_panic() {
        assert_eq!(format_saved_at(-1), "1970-01-01T00:00:00.000Z");
        assert_eq!(format_saved_at(i64::MIN), "1970-01-01T00:00:00.000Z");
        assert_eq!(format_saved_at(i64::MAX), "9999-12-31T23:59:59.999Z");
        assert_eq!(format_saved_at(MAX_FORMATTED_MS + 1), "9999-12-31T23:59:59.999Z");
    }

    #[test]
    fn now_is_after_2020() {
        assert!(now_ms() > 1_577_836_800_000);
    }
}
