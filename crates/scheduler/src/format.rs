//! Human-readable quantities and lists for [`Reason`](crate::Reason) messages. Integer
//! arithmetic only, so the same value always prints the same way.

use std::fmt::{self, Write as _};

/// At most this many items of a list are printed; the rest are counted.
const LIST_ITEMS_SHOWN: usize = 6;

/// `bytes` in the largest binary unit it reaches, with one decimal ("7.8 GiB"), rounded to
/// nearest; below 1 KiB in whole bytes.
pub(crate) fn bytes(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let mut unit_bytes: u128 = 1024;
    if u128::from(bytes) < unit_bytes {
        return format!("{bytes} B");
    }
    let mut unit = UNITS[0];
    for next in &UNITS[1..] {
        if u128::from(bytes) < unit_bytes * 1024 {
            break;
        }
        unit_bytes *= 1024;
        unit = next;
    }
    let tenths = (u128::from(bytes) * 10 + unit_bytes / 2) / unit_bytes;
    format!("{}.{} {unit}", tenths / 10, tenths % 10)
}

/// `needed` and `most` as sizes that visibly differ: in bytes when rounding makes them equal.
pub(crate) fn distinct_sizes(needed: u64, most: u64) -> (String, String) {
    let (needed_text, most_text) = (bytes(needed), bytes(most));
    if needed_text == most_text {
        (format!("{needed} bytes"), format!("{most} bytes"))
    } else {
        (needed_text, most_text)
    }
}

/// "a, b, c" or, when long, "a, b, c, d, e, f and 3 more".
pub(crate) fn list(out: &mut fmt::Formatter<'_>, items: &[String]) -> fmt::Result {
    for (index, item) in items.iter().take(LIST_ITEMS_SHOWN).enumerate() {
        if index > 0 {
            out.write_str(", ")?;
        }
        out.write_str(item)?;
    }
    if items.len() > LIST_ITEMS_SHOWN {
        write!(out, " and {} more", items.len() - LIST_ITEMS_SHOWN)?;
    }
    Ok(())
}

/// "1 core", "4 cores".
pub(crate) fn count_of(count: u64, singular: &str, plural: &str) -> String {
    let mut text = count.to_string();
    let noun = if count == 1 { singular } else { plural };
    let _ = write!(text, " {noun}");
    text
}

#[cfg(test)]
mod tests {
    //! Exact renderings of sizes and counts.

    use super::*;

    #[test]
    fn bytes_use_the_largest_unit_with_one_decimal() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1023), "1023 B");
        assert_eq!(bytes(1024), "1.0 KiB");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(16 << 30), "16.0 GiB");
        assert_eq!(bytes(8_375_186_227), "7.8 GiB");
        assert_eq!(bytes(u64::MAX), "16.0 EiB");
    }

    #[test]
    fn sizes_that_round_alike_fall_back_to_bytes() {
        assert_eq!(
            distinct_sizes(16 << 30, (16 << 30) - 1),
            (
                "17179869184 bytes".to_string(),
                "17179869183 bytes".to_string()
            )
        );
        assert_eq!(
            distinct_sizes(16 << 30, 8 << 30),
            ("16.0 GiB".to_string(), "8.0 GiB".to_string())
        );
    }

    #[test]
    fn count_of_picks_singular_or_plural() {
        assert_eq!(count_of(1, "core", "cores"), "1 core");
        assert_eq!(count_of(8, "core", "cores"), "8 cores");
    }
}
