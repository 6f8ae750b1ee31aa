//! Admission of a module before compilation: size, function count and kind checks that keep a
//! hostile module (a "compile bomb") from tying up the node in the compiler.
//!
//! Compilation itself is the engine's job ([`crate::Sandbox::prepare`]); this module decides
//! what is worth compiling and carries the result, linked against WASI and ready to instantiate.

use std::sync::Arc;

use wasmparser::{Encoding, Parser, Payload};

use crate::attempt::AttemptState;

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
            module_bytes_max: 64 << 20,
            functions_max: 200_000,
            function_bytes_max: 4 << 20,
        }
    }
}

/// A module compiled by this node and linked against WASI: instantiating it is cheap.
#[derive(Clone)]
pub struct Prepared {
    pub(crate) instance_pre: Arc<wasmtime::InstancePre<AttemptState>>,
    pub(crate) flavor: Arc<crate::engine::Flavor>,
}

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prepared").finish_non_exhaustive()
    }
}

/// Checks what can be checked cheaply before compiling; returns why a module is refused.
pub(crate) fn admit(wasm: &[u8], limits: &ModuleLimits) -> Result<(), String> {
    if wasm.len() > limits.module_bytes_max {
        return Err(format!(
            "module is {} bytes, more than the {} this node compiles",
            wasm.len(),
            limits.module_bytes_max
        ));
    }
    if !wasm.starts_with(b"\0asm") {
        return Err("not a WebAssembly binary (it does not start with \\0asm)".to_owned());
    }
    let mut functions = 0u64;
    for payload in Parser::new(0).parse_all(wasm) {
        let payload = payload.map_err(|error| format!("malformed module: {error}"))?;
        match payload {
            Payload::Version {
                encoding: Encoding::Component,
                ..
            } => {
                return Err("this is a component; nodes run WASI preview 1 core modules".to_owned());
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
}
