//! Sizes and durations as people write them.

use crate::SpecError;

/// Bytes from `"512"`, `"64KiB"`, `"256MiB"`, `"1.5GB"` (decimal units are powers of 1000,
/// binary ones of 1024).
pub fn parse_bytes(text: &str, field: &str) -> Result<u64, SpecError> {
    let units: [(&str, u64); 9] = [
        ("KiB", 1 << 10),
        ("MiB", 1 << 20),
        ("GiB", 1 << 30),
        ("TiB", 1 << 40),
        ("KB", 1_000),
        ("MB", 1_000_000),
        ("GB", 1_000_000_000),
        ("TB", 1_000_000_000_000),
        ("B", 1),
    ];
    parse_with_units(
        text,
        field,
        &units,
        "a size such as 512, \"64KiB\" or \"1.5GB\"",
    )
}

/// Milliseconds from `"250ms"`, `"90s"`, `"10m"`, `"2h"` or a bare number of milliseconds.
pub fn parse_duration_ms(text: &str, field: &str) -> Result<u64, SpecError> {
    let units: [(&str, u64); 5] = [
        ("ms", 1),
        ("s", 1_000),
        ("m", 60_000),
        ("h", 3_600_000),
        ("d", 86_400_000),
    ];
    parse_with_units(
        text,
        field,
        &units,
        "a duration such as 1500, \"90s\", \"10m\" or \"2h\"",
    )
}

fn parse_with_units(
    text: &str,
    field: &str,
    units: &[(&str, u64)],
    expected: &str,
) -> Result<u64, SpecError> {
    let invalid = || SpecError::Invalid {
        field: field.to_owned(),
        problem: format!("{text:?} is not {expected}"),
    };
    let text = text.trim();
    let (number, scale) = units
        .iter()
        .find_map(|(unit, scale)| {
            text.strip_suffix(unit)
                .map(|number| (number.trim(), *scale))
        })
        .unwrap_or((text, 1));
    if number.is_empty()
        || !number
            .bytes()
            .all(|b| b.is_ascii_digit() || b == b'.' || b == b'_')
    {
        return Err(invalid());
    }
    let number = number.replace('_', "");
    let value = match number.split_once('.') {
        None => number
            .parse::<u64>()
            .map_err(|_| invalid())?
            .checked_mul(scale),
        Some((whole, fraction)) => {
            let whole: u64 = if whole.is_empty() {
                0
            } else {
                whole.parse().map_err(|_| invalid())?
            };
            let digits = fraction.len() as u32;
            let fraction: u64 = fraction.parse().map_err(|_| invalid())?;
            let denominator = 10u64.checked_pow(digits).ok_or_else(invalid)?;
            whole
                .checked_mul(scale)
                .and_then(|w| w.checked_add(fraction.checked_mul(scale)? / denominator))
        }
    };
    value.ok_or_else(invalid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_binary_and_decimal_units() {
        assert_eq!(parse_bytes("512", "x"), Ok(512));
        assert_eq!(parse_bytes("64KiB", "x"), Ok(65_536));
        assert_eq!(parse_bytes("256 MiB", "x"), Ok(256 << 20));
        assert_eq!(parse_bytes("1.5GB", "x"), Ok(1_500_000_000));
        assert_eq!(parse_bytes("1_000", "x"), Ok(1000));
        for bad in [
            "",
            "MiB",
            "-1",
            "1.2.3MiB",
            "12 parsecs",
            "99999999999999999999TiB",
        ] {
            assert!(parse_bytes(bad, "limits.memory").is_err(), "{bad:?}");
        }
        let message = parse_bytes("lots", "limits.memory")
            .unwrap_err()
            .to_string();
        assert!(message.starts_with("limits.memory:"), "{message}");
    }

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration_ms("1500", "x"), Ok(1500));
        assert_eq!(parse_duration_ms("250ms", "x"), Ok(250));
        assert_eq!(parse_duration_ms("90s", "x"), Ok(90_000));
        assert_eq!(parse_duration_ms("10m", "x"), Ok(600_000));
        assert_eq!(parse_duration_ms("1.5h", "x"), Ok(5_400_000));
        assert!(parse_duration_ms("soon", "x").is_err());
    }
}
