//! Streaming line, word and byte counts with `wc` semantics, independent of any I/O.

use std::io::{self, Read};

/// Totals for one input. Counters are `u64` because `usize` is only 32 bits in wasm32.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub lines: u64,
    pub words: u64,
    pub bytes: u64,
}

impl Counts {
    pub fn add(&mut self, other: Counts) {
        self.lines += other.lines;
        self.words += other.words;
        self.bytes += other.bytes;
    }
}

/// Counts input fed in arbitrary chunks; a word split across two chunks counts once.
#[derive(Debug, Default)]
pub struct Counter {
    counts: Counts,
    in_word: bool,
}

impl Counter {
    pub fn feed(&mut self, chunk: &[u8]) {
        self.counts.bytes += chunk.len() as u64;
        for &b in chunk {
            if b == b'\n' {
                self.counts.lines += 1;
            }
            if b.is_ascii_whitespace() {
                self.in_word = false;
            } else if !self.in_word {
                self.in_word = true;
                self.counts.words += 1;
            }
        }
    }

    pub fn finish(self) -> Counts {
        self.counts
    }
}

pub fn count_reader(mut reader: impl Read) -> io::Result<Counts> {
    let mut counter = Counter::default();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match reader.read(&mut buf) {
            Ok(0) => return Ok(counter.finish()),
            Ok(n) => counter.feed(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(bytes: &[u8]) -> Counts {
        let mut c = Counter::default();
        c.feed(bytes);
        c.finish()
    }

    #[test]
    fn counts_like_wc() {
        assert_eq!(count(b""), Counts::default());
        assert_eq!(
            count(b"hello world\n"),
            Counts {
                lines: 1,
                words: 2,
                bytes: 12
            }
        );
        assert_eq!(
            count(b"  a\tb\r\nc  \n\nd"),
            Counts {
                lines: 3,
                words: 4,
                bytes: 13
            }
        );
    }

    #[test]
    fn non_ascii_bytes_are_word_characters() {
        // U+00A0 (no-break space) is two bytes that are not ASCII whitespace.
        assert_eq!(count("a\u{a0}b é\n".as_bytes()).words, 2);
    }

    #[test]
    fn vertical_tab_is_not_ascii_whitespace() {
        // Rust's is_ascii_whitespace excludes U+000B, unlike C isspace; pin the choice.
        assert_eq!(count(b"a\x0bb").words, 1);
        assert_eq!(count(b"a\x0cb").words, 2);
    }

    #[test]
    fn words_split_across_chunks_count_once() {
        let text = b"one two  three\nfour";
        let whole = count(text);
        for split in 0..=text.len() {
            let mut c = Counter::default();
            c.feed(&text[..split]);
            c.feed(&text[split..]);
            assert_eq!(c.finish(), whole, "split at {split}");
        }
    }

    #[test]
    fn count_reader_reads_everything() {
        let data = vec![b'x'; 200_000];
        let c = count_reader(&data[..]).expect("reading a slice cannot fail");
        assert_eq!(
            c,
            Counts {
                lines: 0,
                words: 1,
                bytes: 200_000
            }
        );
    }
}
