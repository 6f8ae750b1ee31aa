//! The logic of `wordfreq`, independent of any file: splitting text into words, counting them,
//! choosing each word's partition, and writing and reading the `word<TAB>count` lines that the
//! map stage hands to the reduce stage.
//!
//! The splitting rule: a word is a maximal run of characters for which [`char::is_alphanumeric`]
//! is true (Unicode `Alphabetic` or `Numeric`), lowercased with [`str::to_lowercase`] after the
//! split. Everything else separates words: spaces, punctuation, underscores, hyphens and
//! apostrophes (so `don't` is the two words `don` and `t`). The text is not normalised, so a
//! decomposed accent (a combining mark, not alphanumeric) splits its word too. Bytes that are not
//! UTF-8 become U+FFFD, which separates words like any other symbol.

use std::collections::BTreeMap;
use std::io::{self, BufRead};

/// Each word and how often it occurs. A `BTreeMap` of `String`s iterates in byte order, the
/// order every output file is in.
pub type Counts = BTreeMap<String, u64>;

/// The words of `text`, in order, each lowercased.
pub fn words(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|word| !word.is_empty())
        .map(str::to_lowercase)
}

/// Adds one to the count of every word of `text`.
pub fn add_text(counts: &mut Counts, text: &str) {
    for word in words(text) {
        *counts.entry(word).or_insert(0) += 1;
    }
}

/// Adds the words of everything `reader` holds. It goes line by line so a large input needs no
/// more memory than its longest line; no word spans a line, and a `\n` byte is never part of a
/// multi-byte UTF-8 character, so splitting there changes nothing.
pub fn count_reader(counts: &mut Counts, mut reader: impl BufRead) -> io::Result<()> {
    let mut line = Vec::new();
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 {
            return Ok(());
        }
        add_text(counts, &String::from_utf8_lossy(&line));
    }
}

const FNV_OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// The 64-bit FNV-1a hash of `bytes`: simple, fast and the same on every host, which is all a
/// partitioner needs (it is not meant to resist chosen inputs).
pub fn fnv1a_64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(FNV_OFFSET_BASIS, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(FNV_PRIME)
    })
}

/// The partition of `word` among `parts` (at least 1): `fnv1a_64(word) % parts`. Every mapper
/// must agree on it, so it depends on nothing but the word's UTF-8 bytes and `parts`.
pub fn partition(word: &str, parts: usize) -> usize {
    // usize is at most 64 bits on every target, so neither conversion loses anything.
    (fnv1a_64(word.as_bytes()) % parts as u64) as usize
}

/// `counts` as `word<TAB>count\n` lines, sorted by word in byte order.
pub fn render(counts: &Counts) -> String {
    let mut text = String::new();
    for (word, count) in counts {
        push_line(&mut text, word, *count);
    }
    text
}

/// `counts` split into `parts` (at least 1) texts like [`render`]'s, each word in the text of its
/// [`partition`]. Walking the sorted map keeps every part sorted too.
pub fn partitions(counts: &Counts, parts: usize) -> Vec<String> {
    let mut texts = vec![String::new(); parts];
    for (word, count) in counts {
        push_line(&mut texts[partition(word, parts)], word, *count);
    }
    texts
}

fn push_line(text: &mut String, word: &str, count: u64) {
    text.push_str(word);
    text.push('\t');
    text.push_str(&count.to_string());
    text.push('\n');
}

/// The number of words counted (the sum of the counts) and the number of distinct words. The sum
/// is a `u128` because reduce inputs may hold counts near `u64::MAX` for several words.
pub fn totals(counts: &Counts) -> (u128, usize) {
    let words = counts.values().map(|&count| u128::from(count)).sum();
    (words, counts.len())
}

/// Why a reduce input was refused.
#[derive(Debug)]
pub enum ReduceError {
    /// The input could not be read.
    Io(io::Error),
    /// The line at this 1-based number is not a `word<TAB>count` line; the text says why.
    Line(u64, &'static str),
}

/// Adds the counts of the `word<TAB>count` lines that `reader` holds: a non-empty word, one tab
/// and a decimal count, ended by `\n` (optional on the last line). Anything else, blank lines
/// included, is refused rather than skipped, since a damaged part file would otherwise give
/// wrong totals without a word of warning.
pub fn add_counts_reader(counts: &mut Counts, mut reader: impl BufRead) -> Result<(), ReduceError> {
    let mut line = Vec::new();
    let mut number = 0;
    loop {
        line.clear();
        if reader
            .read_until(b'\n', &mut line)
            .map_err(ReduceError::Io)?
            == 0
        {
            return Ok(());
        }
        number += 1;
        let text = line.strip_suffix(b"\n").unwrap_or(&line);
        let (word, count) = parse_line(text).map_err(|why| ReduceError::Line(number, why))?;
        add_count(counts, word, count).map_err(|why| ReduceError::Line(number, why))?;
    }
}

/// The word and count of one line, without its `\n`.
fn parse_line(line: &[u8]) -> Result<(&str, u64), &'static str> {
    let line = std::str::from_utf8(line).map_err(|_| "is not UTF-8")?;
    let (word, count) = line
        .split_once('\t')
        .ok_or("has no tab between the word and its count")?;
    if word.is_empty() {
        return Err("has an empty word");
    }
    // Digits only: `u64::from_str` would also take a leading `+`, which map never writes.
    if count.is_empty() || !count.bytes().all(|b| b.is_ascii_digit()) {
        return Err("has a count that is not a decimal number");
    }
    let count = count
        .parse()
        .map_err(|_| "has a count larger than 18446744073709551615")?;
    Ok((word, count))
}

fn add_count(counts: &mut Counts, word: &str, count: u64) -> Result<(), &'static str> {
    // Look up by &str first so a word already seen costs no allocation.
    let total = match counts.get_mut(word) {
        Some(total) => total,
        None => counts.entry(word.to_owned()).or_insert(0),
    };
    *total = total
        .checked_add(count)
        .ok_or("makes its word's total overflow 64 bits")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(texts: &[&str]) -> Counts {
        let mut counts = Counts::new();
        for text in texts {
            count_reader(&mut counts, text.as_bytes()).expect("reading a slice cannot fail");
        }
        counts
    }

    fn reduce(inputs: &[&str]) -> Result<Counts, ReduceError> {
        let mut counts = Counts::new();
        for input in inputs {
            add_counts_reader(&mut counts, input.as_bytes())?;
        }
        Ok(counts)
    }

    fn split(text: &str) -> Vec<String> {
        words(text).collect()
    }

    #[test]
    fn words_are_runs_of_alphanumerics_lowercased() {
        assert_eq!(
            split("Hello, World! don't stop-2-go 42x snake_case ÉTÉ naïve Straße"),
            [
                "hello", "world", "don", "t", "stop", "2", "go", "42x", "snake", "case", "été",
                "naïve", "straße"
            ]
        );
        assert_eq!(split(""), Vec::<String>::new());
        assert_eq!(split("  ...\t\n--"), Vec::<String>::new());
        // Typographic apostrophes split words too, and CJK characters are alphabetic.
        assert_eq!(split("it’s 東京タワー"), ["it", "s", "東京タワー"]);
    }

    #[test]
    fn lowercasing_comes_after_the_split() {
        // U+0130 lowercases to `i` and U+0307, a combining mark that is not alphanumeric; the
        // word stays whole because it was split before being lowercased.
        assert_eq!(split("İstanbul"), ["i\u{307}stanbul"]);
        // A decomposed accent is not alphanumeric, so it separates words.
        assert_eq!(split("e\u{301}te\u{301}"), ["e", "te"]);
    }

    #[test]
    fn invalid_utf8_separates_words() {
        let mut counts = Counts::new();
        count_reader(&mut counts, &b"ab\xffcd ab"[..]).expect("reading a slice cannot fail");
        assert_eq!(render(&counts), "ab\t2\ncd\t1\n");
    }

    #[test]
    fn lines_do_not_join_words() {
        assert_eq!(render(&count(&["a\nb\r\na"])), "a\t2\nb\t1\n");
        // Separate inputs are separate texts: no word runs from one into the next.
        assert_eq!(render(&count(&["ab", "cd"])), "ab\t1\ncd\t1\n");
    }

    #[test]
    fn fnv1a_64_matches_the_reference_values() {
        assert_eq!(fnv1a_64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a_64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a_64(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn partitions_are_stable_and_in_range() {
        for parts in [1, 2, 3, 7, 64, 10_000] {
            for word in ["", "a", "the", "été", "東京", "zzzzzzzzzzzzzzzz"] {
                let p = partition(word, parts);
                assert!(p < parts, "{word:?} went to {p} of {parts}");
                assert_eq!(partition(word, parts), p, "{word:?} moved");
                assert_eq!(p as u64, fnv1a_64(word.as_bytes()) % parts as u64);
            }
        }
        assert_eq!(
            partition("foobar", 1000),
            (0x8594_4171_f739_67e8u64 % 1000) as usize
        );
    }

    #[test]
    fn outputs_are_sorted_by_bytes() {
        let counts = reduce(&["z\t1\né\t2\nZ\t3\n"]).expect("well-formed input");
        assert_eq!(render(&counts), "Z\t3\nz\t1\né\t2\n");
        assert_eq!(totals(&counts), (6, 3));
    }

    #[test]
    fn every_part_is_written_sorted_even_empty() {
        let counts = count(&["one two three four five six seven eight nine ten"]);
        let texts = partitions(&counts, 50);
        assert_eq!(texts.len(), 50);
        assert!(texts.iter().any(String::is_empty));
        for (i, text) in texts.iter().enumerate() {
            let words: Vec<&str> = text
                .lines()
                .map(|l| l.split('\t').next().unwrap())
                .collect();
            assert!(words.is_sorted(), "part {i} is not sorted: {words:?}");
            assert!(
                words.iter().all(|w| partition(w, 50) == i),
                "part {i}: {words:?}"
            );
        }
    }

    #[test]
    fn map_then_reduce_equals_count() {
        let texts = [
            "The quick brown fox jumps over the lazy dog.",
            "the dog didn't care; THE FOX did.\nÉté, été, ete!",
            "",
            "fox\nfox\nfox 42 42",
        ];
        let reference = count(&texts);
        for parts in [1, 2, 3, 7, 100] {
            // One mapper per text, as one task per input file would run.
            let mapped: Vec<Vec<String>> = texts
                .iter()
                .map(|text| partitions(&count(&[text]), parts))
                .collect();
            let mut merged = Counts::new();
            // Reducer i gets part i of every mapper.
            for i in 0..parts {
                let inputs: Vec<&str> = mapped.iter().map(|parts| parts[i].as_str()).collect();
                let reduced = reduce(&inputs).expect("map output is well-formed");
                assert!(reduced.keys().all(|w| partition(w, parts) == i));
                merged.extend(reduced);
            }
            assert_eq!(render(&merged), render(&reference), "{parts} parts");
        }
        assert_eq!(totals(&reference), (25, 15));
        assert_eq!(reference["fox"], 5);
    }

    #[test]
    fn well_formed_reduce_inputs_are_accepted() {
        let counts = reduce(&["", "a\t1\nb\t2", "a\t0\na\t007\n"]).expect("well-formed");
        assert_eq!(render(&counts), "a\t8\nb\t2\n");
    }

    #[test]
    fn malformed_reduce_input_is_refused() {
        let cases: [(&str, u64, &str); 10] = [
            ("a\t1\nb 2\n", 2, "has no tab"),
            ("a\t1\n\nb\t2\n", 2, "has no tab"),
            ("\t3\n", 1, "has an empty word"),
            ("a\t\n", 1, "not a decimal number"),
            ("a\t-1\n", 1, "not a decimal number"),
            ("a\t+1\n", 1, "not a decimal number"),
            ("a\t1\t2\n", 1, "not a decimal number"),
            ("a\t1\r\n", 1, "not a decimal number"),
            ("a\t1\nb\t18446744073709551616\n", 2, "larger than"),
            ("a\t18446744073709551615\nb\t1\na\t1\n", 3, "overflow"),
        ];
        for (input, line, reason) in cases {
            match reduce(&[input]) {
                Err(ReduceError::Line(n, why)) => {
                    assert_eq!(n, line, "{input:?}: {why}");
                    assert!(why.contains(reason), "{input:?}: {why}");
                }
                other => panic!("{input:?} gave {other:?}"),
            }
        }
        let mut counts = Counts::new();
        match add_counts_reader(&mut counts, &b"ok\t1\n\xff\t1\n"[..]) {
            Err(ReduceError::Line(2, why)) => assert_eq!(why, "is not UTF-8"),
            other => panic!("invalid UTF-8 gave {other:?}"),
        }
    }
}
