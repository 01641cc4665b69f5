//! Durations (`30m`, `1h30m`, `45s`) and byte sizes (`10GiB`, `500MB`, `1048576`) as users write
//! them. Both keep the text the user wrote (so `get -o yaml` round-trips) and parse it strictly.

use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A duration such as `90s`, `10m`, `1h30m`, `2d` (units: ms, s, m, h, d).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DurationSpec {
    text: String,
    value: Duration,
}

impl DurationSpec {
    pub fn parse(s: &str) -> Result<Self, String> {
        let value = parse_duration(s)?;
        Ok(DurationSpec { text: s.trim().to_string(), value })
    }
    pub fn from_duration(d: Duration) -> Self {
        DurationSpec { text: format_duration(d), value: d }
    }
    pub fn as_duration(&self) -> Duration {
        self.value
    }
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl fmt::Display for DurationSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Parses `1h30m`, `250ms`, `45s`, `2d`. A bare number is refused: the unit must be explicit.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    if t.is_empty() {
        return Err("empty duration; write e.g. 30s, 10m or 1h30m".into());
    }
    if t.len() > 32 {
        return Err(format!("duration {t:?} is too long"));
    }
    let bytes = t.as_bytes();
    let mut i = 0;
    let mut total: u128 = 0;
    while i < bytes.len() {
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        if start == i {
            return Err(format!(
                "invalid duration {t:?}: expected a number at position {start}; write e.g. 30s, 10m or 1h30m"
            ));
        }
        let n: u128 = t[start..i].parse().map_err(|_| format!("invalid duration {t:?}: number too large"))?;
        let ustart = i;
        while i < bytes.len() && bytes[i].is_ascii_alphabetic() {
            i += 1;
        }
        let unit_ms: u128 = match &t[ustart..i] {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "" => return Err(format!("invalid duration {t:?}: missing unit (ms, s, m, h or d)")),
            u => return Err(format!("invalid duration {t:?}: unknown unit {u:?} (use ms, s, m, h or d)")),
        };
        total = total
            .checked_add(n.checked_mul(unit_ms).ok_or_else(|| format!("duration {t:?} is too large"))?)
            .ok_or_else(|| format!("duration {t:?} is too large"))?;
        if total > u64::MAX as u128 {
            return Err(format!("duration {t:?} is too large"));
        }
    }
    Ok(Duration::from_millis(total as u64))
}

/// Formats a duration in the same syntax `parse_duration` reads (`1h30m`, `250ms`).
pub fn format_duration(d: Duration) -> String {
    let mut ms = d.as_millis();
    if ms == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    for (unit, size) in [("d", 86_400_000u128), ("h", 3_600_000), ("m", 60_000), ("s", 1_000), ("ms", 1)] {
        if ms >= size {
            out.push_str(&format!("{}{}", ms / size, unit));
            ms %= size;
        }
    }
    out
}

impl Serialize for DurationSpec {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for DurationSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        DurationSpec::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for DurationSpec {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": "^([0-9]+(ms|s|m|h|d))+$",
            "description": "A duration such as 90s, 10m or 1h30m (units ms, s, m, h, d).",
            "examples": ["30m", "1h30m"]
        })
    }
}

/// A byte count written as `10GiB`, `500MB`, `1.5TB` or a plain integer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ByteSize {
    text: String,
    bytes: u64,
}

impl ByteSize {
    pub fn parse(s: &str) -> Result<Self, String> {
        Ok(ByteSize { text: s.trim().to_string(), bytes: parse_bytes(s)? })
    }
    pub fn from_bytes(bytes: u64) -> Self {
        ByteSize { text: bytes.to_string(), bytes }
    }
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Parses a size with an optional decimal (kB, MB, GB, TB, PB) or binary (KiB … PiB) unit.
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let t = s.trim();
    if t.is_empty() || t.len() > 32 {
        return Err(format!("invalid size {t:?}; write e.g. 500MB or 10GiB"));
    }
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, unit) = (&t[..split], t[split..].trim());
    if num.is_empty() || num.starts_with('.') || num.ends_with('.') || num.matches('.').count() > 1 {
        return Err(format!("invalid size {t:?}; write e.g. 500MB or 10GiB"));
    }
    let mult: u128 = match unit {
        "" | "B" => 1,
        "k" | "kB" | "KB" => 1_000,
        "M" | "MB" => 1_000_000,
        "G" | "GB" => 1_000_000_000,
        "T" | "TB" => 1_000_000_000_000,
        "P" | "PB" => 1_000_000_000_000_000,
        "Ki" | "KiB" => 1 << 10,
        "Mi" | "MiB" => 1 << 20,
        "Gi" | "GiB" => 1 << 30,
        "Ti" | "TiB" => 1 << 40,
        "Pi" | "PiB" => 1 << 50,
        u => {
            return Err(format!(
                "invalid size {t:?}: unknown unit {u:?} (use B, kB, MB, GB, TB, PB, KiB, MiB, GiB, TiB or PiB)"
            ));
        }
    };
    // Exact integer arithmetic: split into integer and fractional parts.
    let (int_part, frac_part) = num.split_once('.').unwrap_or((num, ""));
    if int_part.len() > 20 || frac_part.len() > 9 {
        return Err(format!("size {t:?} is too large or too precise"));
    }
    let int: u128 = int_part.parse().map_err(|_| format!("invalid size {t:?}"))?;
    let mut total = int.checked_mul(mult).ok_or_else(|| format!("size {t:?} is too large"))?;
    if !frac_part.is_empty() {
        let frac: u128 = frac_part.parse().map_err(|_| format!("invalid size {t:?}"))?;
        total += frac * mult / 10u128.pow(frac_part.len() as u32);
    }
    u64::try_from(total).map_err(|_| format!("size {t:?} is too large"))
}

/// Human form of a byte count (`1.5 GiB`).
pub fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = b as f64;
    let mut i = 0;
    while v >= 1024.0 && i < UNITS.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 { format!("{b} B") } else { format!("{v:.1} {}", UNITS[i]) }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = ByteSize;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size such as 10GiB, 500MB or a number of bytes")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<ByteSize, E> {
                Ok(ByteSize::from_bytes(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<ByteSize, E> {
                u64::try_from(v)
                    .map(ByteSize::from_bytes)
                    .map_err(|_| E::custom(format!("size must not be negative (got {v})")))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<ByteSize, E> {
                Err(E::custom(format!("size must be a whole number of bytes or carry a unit (got {v})")))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<ByteSize, E> {
                ByteSize::parse(v).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

impl JsonSchema for ByteSize {
    fn schema_name() -> Cow<'static, str> {
        "ByteSize".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A byte count: an integer, or a number with a unit (B, kB, MB, GB, TB, PB, KiB, MiB, GiB, TiB, PiB).",
            "anyOf": [
                {"type": "integer", "minimum": 0},
                {"type": "string", "pattern": "^[0-9]+(\\.[0-9]+)?\\s*([kMGTP]i?B?|B)?$"}
            ],
            "examples": ["10GiB", "500MB"]
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_and_round_trip() {
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("2d").unwrap(), Duration::from_secs(172_800));
        assert_eq!(format_duration(Duration::from_secs(5400)), "1h30m");
        for bad in ["", "10", "m", "-5m", "5 m", "5x", "1.5h", "99999999999999999999999d"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn sizes_parse_exactly() {
        assert_eq!(parse_bytes("10GiB").unwrap(), 10 << 30);
        assert_eq!(parse_bytes("500MB").unwrap(), 500_000_000);
        assert_eq!(parse_bytes("1.5TB").unwrap(), 1_500_000_000_000);
        assert_eq!(parse_bytes("123").unwrap(), 123);
        for bad in ["", "GB", "1..5GB", "5XB", "-1GB", "99999999999999999999PB", ".5GB"] {
            assert!(parse_bytes(bad).is_err(), "{bad:?} should be refused");
        }
    }
}
