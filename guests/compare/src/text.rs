//! Equivalence of two texts: the same tokens, where numbers may differ within a tolerance.
//!
//! Results of Monte Carlo or floating-point work differ in their last digits from machine to
//! machine, and their layout (spacing, line ends) carries no meaning, so texts are compared token
//! by token rather than byte by byte. Anything that is not UTF-8 is data, not text, and must match
//! exactly.

use std::fmt;

/// How far apart two numbers may be and still count as the same.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Tolerance {
    pub relative: f64,
    pub absolute: f64,
}

impl Tolerance {
    /// True if `x` and `y` are within `max(absolute, relative * max(|x|, |y|))` of each other.
    /// Callers only pass finite numbers; an overflowing difference is infinite and so too far.
    pub fn accepts(self, x: f64, y: f64) -> bool {
        let allowed = self.absolute.max(self.relative * x.abs().max(y.abs()));
        (x - y).abs() <= allowed
    }
}

/// The first way two texts differ.
#[derive(Debug, PartialEq)]
pub enum Difference {
    /// The texts split into different numbers of tokens.
    TokenCount { a: usize, b: usize },
    /// Token `index` (counting from 1) differs; `numeric` if both are numbers too far apart.
    Token {
        index: usize,
        a: String,
        b: String,
        numeric: bool,
    },
    /// At least one side is not UTF-8 and the bytes differ, first at `offset`.
    Bytes { offset: usize, a: usize, b: usize },
}

impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Difference::TokenCount { a, b } => {
                let noun = if *a == 1 { "token" } else { "tokens" };
                write!(f, "has {a} {noun} in /a and {b} in /b")
            }
            Difference::Token {
                index,
                a,
                b,
                numeric: true,
            } => write!(
                f,
                "token {index}: {a} and {b} differ by more than the tolerance"
            ),
            Difference::Token { index, a, b, .. } => {
                write!(f, "token {index}: {a} and {b} differ")
            }
            Difference::Bytes { offset, a, b } => write!(
                f,
                "is not UTF-8 text and its bytes differ at offset {offset} ({a} bytes in /a, {b} in /b)"
            ),
        }
    }
}

/// Compares two texts by the rules above; `None` means they are equivalent.
pub fn compare(a: &[u8], b: &[u8], tolerance: Tolerance) -> Option<Difference> {
    let (Ok(a), Ok(b)) = (std::str::from_utf8(a), std::str::from_utf8(b)) else {
        return compare_bytes(a, b);
    };
    // Counting first costs a second pass but no memory, and a missing token would otherwise
    // show up as a confusing difference between the tokens that follow it.
    let count_a = a.split_ascii_whitespace().count();
    let count_b = b.split_ascii_whitespace().count();
    if count_a != count_b {
        return Some(Difference::TokenCount {
            a: count_a,
            b: count_b,
        });
    }
    let pairs = a.split_ascii_whitespace().zip(b.split_ascii_whitespace());
    for (i, (x, y)) in pairs.enumerate() {
        if x == y {
            continue;
        }
        let numeric = match (number(x), number(y)) {
            (Some(p), Some(q)) if tolerance.accepts(p, q) => continue,
            (Some(_), Some(_)) => true,
            _ => false,
        };
        return Some(Difference::Token {
            index: i + 1,
            a: shown(x),
            b: shown(y),
            numeric,
        });
    }
    None
}

fn compare_bytes(a: &[u8], b: &[u8]) -> Option<Difference> {
    if a == b {
        return None;
    }
    let offset = a
        .iter()
        .zip(b)
        .position(|(x, y)| x != y)
        .unwrap_or(a.len().min(b.len()));
    Some(Difference::Bytes {
        offset,
        a: a.len(),
        b: b.len(),
    })
}

/// The token as a finite number, if it is one; infinities and NaN match only themselves.
fn number(token: &str) -> Option<f64> {
    token.parse::<f64>().ok().filter(|x| x.is_finite())
}

/// Longest token shown in a message, in characters.
const SHOWN_CHARS: usize = 40;

/// The token cut short and with control characters escaped, so one line of stdout stays one
/// readable line whatever the guest printed.
pub fn shown(token: &str) -> String {
    let mut s = String::new();
    for (i, c) in token.chars().enumerate() {
        if i == SHOWN_CHARS {
            s.push_str("...");
            break;
        }
        if c.is_control() {
            s.extend(c.escape_debug());
        } else {
            s.push(c);
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEFAULT: Tolerance = Tolerance {
        relative: 1e-9,
        absolute: 0.0,
    };

    fn same(a: &str, b: &str, t: Tolerance) -> bool {
        compare(a.as_bytes(), b.as_bytes(), t).is_none()
    }

    #[test]
    fn relative_tolerance_scales_with_the_larger_number() {
        let t = Tolerance {
            relative: 1e-3,
            absolute: 0.0,
        };
        assert!(same("pi 3.1415", "pi 3.1440", t));
        assert!(!same("pi 3.1415", "pi 3.1480", t));
        assert!(same("1000", "1000.9", t));
        assert!(!same("1000", "1001.5", t));
        assert!(!same("0", "1e-300", t), "no absolute slack by default");
    }

    #[test]
    fn absolute_tolerance_covers_numbers_near_zero() {
        let t = Tolerance {
            relative: 0.0,
            absolute: 0.01,
        };
        assert!(same("0", "0.009", t));
        assert!(same("-0.004 x", "0.005 x", t));
        assert!(!same("0", "0.011", t));
        assert!(!same("100", "100.02", t));
    }

    #[test]
    fn default_tolerance_forgives_only_last_digits() {
        assert!(same("3.141592653589793", "3.1415926535897936", DEFAULT));
        assert!(same("1e3", "1000.0", DEFAULT), "numbers compare by value");
        let diff = compare(b"a 3.1402 b", b"a 3.1711 b", DEFAULT);
        assert_eq!(
            diff.expect("differs").to_string(),
            "token 2: 3.1402 and 3.1711 differ by more than the tolerance"
        );
    }

    #[test]
    fn layout_does_not_matter_but_words_do() {
        assert!(same("a  b\n c\r\n", "a b c", DEFAULT));
        assert!(same("", " \n\t", DEFAULT));
        let diff = compare(b"x y", b"x z", DEFAULT).expect("differs");
        assert_eq!(diff.to_string(), "token 2: y and z differ");
    }

    #[test]
    fn non_finite_numbers_match_only_themselves() {
        assert!(same("NaN inf", "NaN inf", DEFAULT));
        assert!(!same("inf", "1e308", DEFAULT));
        assert!(!same("nan", "NaN", DEFAULT));
        assert!(
            !same("1e308", "-1e308", DEFAULT),
            "an overflowing gap is too far"
        );
        let huge = Tolerance {
            relative: 1e300,
            absolute: 0.0,
        };
        assert!(same("1e308", "-1e308", huge));
    }

    #[test]
    fn token_counts_must_match() {
        assert_eq!(
            compare(b"1 2 3", b"1 2", DEFAULT),
            Some(Difference::TokenCount { a: 3, b: 2 })
        );
        assert_eq!(
            compare(b"", b"x", DEFAULT).expect("differs").to_string(),
            "has 0 tokens in /a and 1 in /b"
        );
        assert_eq!(
            compare(b"x", b"", DEFAULT).expect("differs").to_string(),
            "has 1 token in /a and 0 in /b"
        );
    }

    #[test]
    fn bytes_that_are_not_utf8_must_be_equal() {
        assert_eq!(compare(b"\xff 1.0", b"\xff 1.0", DEFAULT), None);
        assert_eq!(
            compare(b"\xff 1.0", b"\xff 1.00000000001", DEFAULT),
            Some(Difference::Bytes {
                offset: 5,
                a: 5,
                b: 15
            })
        );
        assert_eq!(
            compare(b"1.0", b"1.0\xfe", DEFAULT),
            Some(Difference::Bytes {
                offset: 3,
                a: 3,
                b: 4
            })
        );
        assert!(compare(b"a b", b"a  b\xff", DEFAULT).is_some());
    }

    #[test]
    fn long_and_control_tokens_are_shown_safely() {
        let long = "x".repeat(100);
        let shown_long = shown(&long);
        assert_eq!(shown_long.len(), SHOWN_CHARS + 3);
        assert!(shown_long.ends_with("..."));
        assert_eq!(shown("a\u{1b}b"), "a\\u{1b}b");
    }
}
