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

/// A WASI command that does nothing and costs the compiler much: `functions` functions of
/// `adds_per_function` additions each, every one called from `_start`, all within what a node
/// admits (short bodies, no deep nesting). Compile time grows with the product; 10 000 × 1 000
/// takes Cranelift tens of seconds.
pub fn costly_to_compile(functions: u32, adds_per_function: u32) -> Vec<u8> {
    let mut module = b"\0asm\x01\0\0\0".to_vec();
    section(1, &[1, 0x60, 0, 0], &mut module);
    let mut declared = Vec::new();
    leb128(u64::from(functions) + 1, &mut declared);
    declared.extend(std::iter::repeat_n(0u8, functions as usize + 1));
    section(3, &declared, &mut module);
    let mut exports = vec![1, 6];
    exports.extend_from_slice(b"_start");
    exports.extend_from_slice(&[0, 0]);
    section(7, &exports, &mut module);
    let mut code = Vec::new();
    leb128(u64::from(functions) + 1, &mut code);
    let mut start = vec![0];
    for index in 1..=functions {
        start.push(0x10);
        leb128(u64::from(index), &mut start);
    }
    start.push(0x0b);
    body(&start, &mut code);
    let mut adds = vec![0, 0x41, 0];
    for _ in 0..adds_per_function {
        adds.extend_from_slice(&[0x41, 1, 0x6a]);
    }
    adds.extend_from_slice(&[0x1a, 0x0b]);
    for _ in 0..functions {
        body(&adds, &mut code);
    }
    section(10, &code, &mut module);
    module
}

/// Appends one function body (locals and code) with its size first.
fn body(contents: &[u8], code: &mut Vec<u8>) {
    leb128(contents.len() as u64, code);
    code.extend_from_slice(contents);
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
