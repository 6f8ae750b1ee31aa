//! Admission of a module before compilation: size, function count and kind checks that keep a
//! hostile module (a "compile bomb") from tying up the node in the compiler.
//!
//! Compilation itself is the engine's job ([`crate::Sandbox::prepare`]), and so is the result,
//! linked against WASI and ready to instantiate ([`crate::Prepared`]); this module decides
//! what is worth compiling. It imports none of the crate's other modules.

use wasmparser::{FunctionBody, Operator, Parser, Payload};

/// Control blocks (`block`, `loop`, `if`, `try`) open inside one another in one function.
/// Compile time grows with the square of the nesting: 40 000 nested blocks in a 120 KB module
/// took 6 s to compile, 20 000 nested loops in 60 KB took 72 s. Real programs stay far below:
/// compiled Rust nests a few dozen deep, a large `switch` a few hundred.
const CONTROL_DEPTH_MAX: usize = 1024;

/// Loops open inside one another in one function, the costliest nesting to compile; real
/// programs nest a handful.
const LOOP_DEPTH_MAX: usize = 64;

/// What a node agrees to compile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModuleLimits {
    pub module_bytes_max: usize,
    /// Functions defined by the module (imports excluded).
    pub functions_max: u32,
    /// Bytes of one function body.
    pub function_bytes_max: u32,
}

impl Default for ModuleLimits {
    fn default() -> Self {
        Self {
            // The coordinator's bound on modules (`wire::limits::MODULE_BYTES_MAX`): language
            // runtimes and large C++ programs are tens to hundreds of MB.
            module_bytes_max: 256 << 20,
            functions_max: 200_000,
            function_bytes_max: 4 << 20,
        }
    }
}

/// Refuses a module larger than this node takes, whether it is compiled or loaded compiled.
pub(crate) fn admit_size(wasm: &[u8], limits: &ModuleLimits) -> Result<(), String> {
    if wasm.len() > limits.module_bytes_max {
        return Err(format!(
            "module is {} bytes, more than the {} this node compiles",
            wasm.len(),
            limits.module_bytes_max
        ));
    }
    Ok(())
}

/// The WASI 0.2 interfaces a component may import, without their versions: the
/// `wasi:cli/command` world without `wasi:sockets`, as `component` links them. Agents report
/// them to the coordinator, which refuses at submit a component that imports anything else.
pub const WASI_INTERFACES: &[&str] = &[
    "wasi:cli/environment",
    "wasi:cli/exit",
    "wasi:cli/stdin",
    "wasi:cli/stdout",
    "wasi:cli/stderr",
    "wasi:cli/terminal-input",
    "wasi:cli/terminal-output",
    "wasi:cli/terminal-stdin",
    "wasi:cli/terminal-stdout",
    "wasi:cli/terminal-stderr",
    "wasi:clocks/monotonic-clock",
    "wasi:clocks/wall-clock",
    "wasi:filesystem/preopens",
    "wasi:filesystem/types",
    "wasi:io/error",
    "wasi:io/poll",
    "wasi:io/streams",
    "wasi:random/insecure",
    "wasi:random/insecure-seed",
    "wasi:random/random",
];

/// Checks what can be checked cheaply before compiling; returns why a module is refused.
///
/// A component is checked like the core modules inside it, whose functions count together,
/// and its own imports must be interfaces of [`WASI_INTERFACES`] at a 0.2 version.
pub(crate) fn admit(wasm: &[u8], limits: &ModuleLimits) -> Result<(), String> {
    admit_size(wasm, limits)?;
    if !wasm.starts_with(b"\0asm") {
        return Err("not a WebAssembly binary (it does not start with \\0asm)".to_owned());
    }
    let mut functions = 0u64;
    // Nested modules and components each open with a version and close with an end.
    let mut depth = 0usize;
    for payload in Parser::new(0).parse_all(wasm) {
        let payload = payload.map_err(|error| format!("malformed module: {error}"))?;
        match payload {
            Payload::Version { .. } => depth += 1,
            Payload::End(_) => depth = depth.saturating_sub(1),
            Payload::ComponentImportSection(imports) if depth == 1 => {
                for import in imports {
                    let import = import.map_err(|error| format!("malformed component: {error}"))?;
                    check_component_import(import.name.name)?;
                }
            }
            Payload::FunctionSection(section) => functions += u64::from(section.count()),
            Payload::CodeSectionEntry(body) => {
                let body_bytes = body.range().len();
                if body_bytes > limits.function_bytes_max as usize {
                    return Err(format!(
                        "a function body of {body_bytes} bytes is more than the {} this node compiles",
                        limits.function_bytes_max
                    ));
                }
                check_nesting(&body)?;
            }
            _ => {}
        }
        if functions > u64::from(limits.functions_max) {
            return Err(format!(
                "module defines more than {} functions, more than this node compiles",
                limits.functions_max
            ));
        }
    }
    Ok(())
}

fn check_component_import(name: &str) -> Result<(), String> {
    let (interface, version) = name.split_once('@').unwrap_or((name, ""));
    if !WASI_INTERFACES.contains(&interface) {
        return Err(format!(
            "the component imports {name}, which this node does not provide: components get \
             WASI 0.2 without network access; build it without that import"
        ));
    }
    if !version.starts_with("0.2.") {
        return Err(format!(
            "the component imports {name}; this node provides WASI 0.2, so build it for \
             wasm32-wasip2"
        ));
    }
    Ok(())
}

/// Refuses a function whose control blocks nest deeper than this node compiles in reasonable
/// time; it reads the operators but does not validate them (the compiler does).
fn check_nesting(body: &FunctionBody<'_>) -> Result<(), String> {
    let malformed = |error: wasmparser::BinaryReaderError| format!("malformed module: {error}");
    // One entry per open block: whether it is a loop.
    let mut open: Vec<bool> = Vec::new();
    let mut loops = 0usize;
    let mut reader = body.get_operators_reader().map_err(malformed)?;
    while !reader.eof() {
        match reader.read().map_err(malformed)? {
            Operator::Block { .. }
            | Operator::If { .. }
            | Operator::Try { .. }
            | Operator::TryTable { .. } => open.push(false),
            Operator::Loop { .. } => {
                open.push(true);
                loops += 1;
            }
            Operator::End | Operator::Delegate { .. } => {
                let closed_a_loop = open.pop() == Some(true);
                loops -= usize::from(closed_a_loop);
            }
            _ => {}
        }
        if open.len() > CONTROL_DEPTH_MAX || loops > LOOP_DEPTH_MAX {
            return Err(format!(
                "a function nests blocks more than {CONTROL_DEPTH_MAX} deep or loops more than \
                 {LOOP_DEPTH_MAX} deep, which this node does not compile; flatten its control flow"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_wasm_and_oversize_modules_are_refused_before_compiling() {
        let limits = ModuleLimits::default();
        assert!(
            admit(b"#!/bin/sh\necho hi", &limits)
                .unwrap_err()
                .contains("not a WebAssembly")
        );
        let small = ModuleLimits {
            module_bytes_max: 4,
            ..limits
        };
        assert!(
            admit(b"\0asm\x01\0\0\0", &small)
                .unwrap_err()
                .contains("bytes")
        );
        assert!(admit(b"\0asm\x01\0\0\0", &limits).is_ok());
        assert!(
            admit(b"\0asm\x01\0\0\0\x01\xff", &limits)
                .unwrap_err()
                .contains("malformed")
        );
    }

    /// A module with one function of type `() -> ()` whose body (after its locals) is `code`.
    fn one_function(code: &[u8]) -> Vec<u8> {
        let mut body = vec![0];
        body.extend_from_slice(code);
        body.push(0x0b);
        let mut module = b"\0asm\x01\0\0\0".to_vec();
        module.extend_from_slice(&[1, 4, 1, 0x60, 0, 0, 3, 2, 1, 0]);
        let mut code_section = vec![1];
        guests::binary::leb128(body.len() as u64, &mut code_section);
        code_section.extend_from_slice(&body);
        guests::binary::section(10, &code_section, &mut module);
        module
    }

    /// `depth` blocks of `opener` (`0x02` block, `0x03` loop) nested and closed again.
    fn nested(opener: u8, depth: usize) -> Vec<u8> {
        let mut code = [opener, 0x40].repeat(depth);
        code.extend(std::iter::repeat_n(0x0b, depth));
        code
    }

    #[test]
    fn deeply_nested_control_flow_is_refused_before_compiling() {
        let limits = ModuleLimits::default();
        assert!(admit(&one_function(&nested(0x02, CONTROL_DEPTH_MAX)), &limits).is_ok());
        let blocks = admit(&one_function(&nested(0x02, CONTROL_DEPTH_MAX + 1)), &limits);
        assert!(blocks.unwrap_err().contains("flatten"));
        assert!(admit(&one_function(&nested(0x03, LOOP_DEPTH_MAX)), &limits).is_ok());
        let loops = admit(&one_function(&nested(0x03, LOOP_DEPTH_MAX + 1)), &limits);
        assert!(loops.unwrap_err().contains("flatten"));
        // Many loops one after another are fine: only nesting costs.
        let in_a_row = nested(0x03, LOOP_DEPTH_MAX).repeat(100);
        assert!(admit(&one_function(&in_a_row), &limits).is_ok());
    }
}
