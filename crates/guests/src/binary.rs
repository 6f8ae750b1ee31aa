//! Building WebAssembly binaries byte by byte, for test modules too large or too odd to write
//! as text: the LEB128 numbers the format is made of, sections, and custom sections.

/// Appends `value` as unsigned LEB128, as the format writes sizes, counts and indices.
pub fn leb128(mut value: u64, out: &mut Vec<u8>) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// Appends section `id` holding `payload`.
pub fn section(id: u8, payload: &[u8], module: &mut Vec<u8>) {
    module.push(id);
    leb128(payload.len() as u64, module);
    module.extend_from_slice(payload);
}

/// Appends a custom section named `name` holding `payload`: what engines skip (names, debug
/// info), so it makes a module large without giving the compiler work.
pub fn custom_section(name: &str, payload: &[u8], module: &mut Vec<u8>) {
    let mut contents = Vec::with_capacity(name.len() + payload.len() + 5);
    leb128(name.len() as u64, &mut contents);
    contents.extend_from_slice(name.as_bytes());
    contents.extend_from_slice(payload);
    section(0, &contents, module);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_take_seven_bits_a_byte_low_first() {
        let encoded = |value| {
            let mut out = Vec::new();
            leb128(value, &mut out);
            out
        };
        assert_eq!(encoded(0), [0]);
        assert_eq!(encoded(127), [0x7f]);
        assert_eq!(encoded(128), [0x80, 0x01]);
        assert_eq!(encoded(624_485), [0xe5, 0x8e, 0x26]);
        let mut module = Vec::new();
        custom_section("n", b"xy", &mut module);
        assert_eq!(module, [0, 4, 1, b'n', b'x', b'y']);
    }
}
