//! Times as each backend stores them, through one type: TIMESTAMPTZ on PostgreSQL, INTEGER
//! microseconds since the Unix epoch on SQLite. Binding a [`Stamp`] lets one SQL text serve
//! both; reading one refuses a value that is not a time jobq can hold (PostgreSQL's
//! `infinity`, microseconds out of chrono's range) with an error, never a panic or 1970.

use chrono::{DateTime, Utc};
use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::postgres::{PgArgumentBuffer, PgTypeInfo, PgValueFormat, PgValueRef};
use sqlx::sqlite::{SqliteArgumentValue, SqliteTypeInfo, SqliteValueRef};
use sqlx::{Decode, Encode, Postgres, Sqlite, Type};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Stamp(pub DateTime<Utc>);

impl Stamp {
    pub fn now() -> Stamp {
        Stamp(Utc::now())
    }

    /// `self + d`, saturating at the latest time chrono holds.
    pub fn after(self, d: std::time::Duration) -> Stamp {
        self.moved(d, true)
    }

    /// `self - d`, saturating at the earliest time chrono holds.
    pub fn before(self, d: std::time::Duration) -> Stamp {
        self.moved(d, false)
    }

    fn moved(self, d: std::time::Duration, later: bool) -> Stamp {
        let d = chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX);
        let (moved, limit) = if later {
            (self.0.checked_add_signed(d), DateTime::<Utc>::MAX_UTC)
        } else {
            (self.0.checked_sub_signed(d), DateTime::<Utc>::MIN_UTC)
        };
        Stamp(moved.unwrap_or(limit))
    }
}

impl From<DateTime<Utc>> for Stamp {
    fn from(t: DateTime<Utc>) -> Stamp {
        Stamp(t)
    }
}

impl From<Stamp> for DateTime<Utc> {
    fn from(t: Stamp) -> DateTime<Utc> {
        t.0
    }
}

fn from_micros(us: i64) -> Result<Stamp, BoxDynError> {
    DateTime::from_timestamp_micros(us)
        .map(Stamp)
        .ok_or_else(|| format!("{us} microseconds is outside the times jobq can hold").into())
}

// PostgreSQL: the wire value is microseconds since 2000-01-01; `infinity` and `-infinity` are
// i64::MAX and i64::MIN, which sqlx's own chrono decoding would overflow on.

/// 2000-01-01T00:00:00Z in Unix microseconds.
const POSTGRES_EPOCH_US: i64 = 946_684_800_000_000;

impl Type<Postgres> for Stamp {
    fn type_info() -> PgTypeInfo {
        <DateTime<Utc> as Type<Postgres>>::type_info()
    }
    fn compatible(ty: &PgTypeInfo) -> bool {
        <DateTime<Utc> as Type<Postgres>>::compatible(ty)
    }
}

impl Encode<'_, Postgres> for Stamp {
    fn encode_by_ref(&self, buf: &mut PgArgumentBuffer) -> Result<IsNull, BoxDynError> {
        <DateTime<Utc> as Encode<Postgres>>::encode_by_ref(&self.0, buf)
    }
}

impl<'r> Decode<'r, Postgres> for Stamp {
    fn decode(value: PgValueRef<'r>) -> Result<Self, BoxDynError> {
        match value.format() {
            PgValueFormat::Binary => {
                let bytes: [u8; 8] = value
                    .as_bytes()?
                    .try_into()
                    .map_err(|_| "a timestamp is not 8 bytes")?;
                match i64::from_be_bytes(bytes) {
                    i64::MAX => Err("infinity is not a time jobq can hold".into()),
                    i64::MIN => Err("-infinity is not a time jobq can hold".into()),
                    us => from_micros(
                        us.checked_add(POSTGRES_EPOCH_US)
                            .ok_or("the timestamp is out of range")?,
                    ),
                }
            }
            PgValueFormat::Text => {
                let text = value.as_str()?;
                if text.ends_with("infinity") {
                    return Err(format!("{text} is not a time jobq can hold").into());
                }
                Ok(Stamp(<DateTime<Utc> as Decode<Postgres>>::decode(value)?))
            }
        }
    }
}

impl Type<Sqlite> for Stamp {
    fn type_info() -> SqliteTypeInfo {
        <i64 as Type<Sqlite>>::type_info()
    }
    fn compatible(ty: &SqliteTypeInfo) -> bool {
        <i64 as Type<Sqlite>>::compatible(ty)
    }
}

impl<'q> Encode<'q, Sqlite> for Stamp {
    fn encode_by_ref(&self, buf: &mut Vec<SqliteArgumentValue<'q>>) -> Result<IsNull, BoxDynError> {
        <i64 as Encode<Sqlite>>::encode(self.0.timestamp_micros(), buf)
    }
}

impl<'r> Decode<'r, Sqlite> for Stamp {
    fn decode(value: SqliteValueRef<'r>) -> Result<Self, BoxDynError> {
        from_micros(<i64 as Decode<Sqlite>>::decode(value)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn micros_out_of_range_are_refused() {
        assert!(from_micros(i64::MAX).is_err());
        assert!(from_micros(i64::MIN).is_err());
        let t = from_micros(1_700_000_000_123_456).expect("a time");
        assert_eq!(t.0.timestamp_micros(), 1_700_000_000_123_456);
    }

    #[test]
    fn arithmetic_saturates() {
        let far = Stamp::now().after(std::time::Duration::MAX);
        assert_eq!(far.0, DateTime::<Utc>::MAX_UTC);
        let early = Stamp::now().before(std::time::Duration::MAX);
        assert_eq!(early.0, DateTime::<Utc>::MIN_UTC);
    }
}
