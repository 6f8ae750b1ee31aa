//! Which WebAssembly proposals a module uses, by the names of `wire::wasm::FEATURES`, found as
//! it is validated: its tasks then go only to nodes that compile them all.
//!
//! Each operator is assigned its proposal by wasmparser's own table of operators
//! (`for_each_visit_operator!`), in function bodies and constant expressions alike. What no
//! operator shows is read from the module's structure: a tag section (exceptions), a 64-bit
//! memory, more than one memory, more than one table, and a constant expression of more than one
//! instruction (extended constants). The threads, GC and other proposals nodes do not compile
//! are refused by the validator before they would matter here.

use wasmparser::{
    BinaryReaderError, ConstExpr, DataKind, ElementKind, FunctionBody, OperatorsReader, Payload,
    TypeRef, VisitOperator, VisitSimdOperator,
};

/// Bits of the proposals, in the order of `wire::wasm::FEATURES` (checked by a test).
const BULK_MEMORY: u32 = 1 << 0;
const EXCEPTIONS: u32 = 1 << 1;
const EXTENDED_CONST: u32 = 1 << 2;
const MEMORY64: u32 = 1 << 3;
const MULTI_MEMORY: u32 = 1 << 4;
const REFERENCE_TYPES: u32 = 1 << 5;
const RELAXED_SIMD: u32 = 1 << 6;
const SATURATING_FLOAT_TO_INT: u32 = 1 << 7;
const SIGN_EXTENSION: u32 = 1 << 8;
const SIMD: u32 = 1 << 9;
const TAIL_CALL: u32 = 1 << 10;

/// The bit of a proposal as wasmparser's operator table names it; 0 for 1.0 and for proposals
/// nodes do not compile (the validator refuses those).
macro_rules! proposal_bit {
    (bulk_memory) => {
        BULK_MEMORY
    };
    (exceptions) => {
        EXCEPTIONS
    };
    (legacy_exceptions) => {
        EXCEPTIONS
    };
    (reference_types) => {
        REFERENCE_TYPES
    };
    (relaxed_simd) => {
        RELAXED_SIMD
    };
    (saturating_float_to_int) => {
        SATURATING_FLOAT_TO_INT
    };
    (sign_extension) => {
        SIGN_EXTENSION
    };
    (simd) => {
        SIMD
    };
    (tail_call) => {
        TAIL_CALL
    };
    ($other:ident) => {
        0
    };
}

/// One visit method per operator that records the operator's proposal.
macro_rules! note_proposals {
    ($( @$proposal:ident $op:ident $({ $($arg:ident: $argty:ty),* })? => $visit:ident ($($ann:tt)*) )*) => {
        $(
            fn $visit(&mut self $($(, $arg: $argty)*)?) {
                $($(let _ = $arg;)*)?
                self.0 |= proposal_bit!($proposal);
            }
        )*
    };
}

struct Notes(u32);

impl<'a> VisitOperator<'a> for Notes {
    type Output = ();

    fn simd_visitor(&mut self) -> Option<&mut dyn VisitSimdOperator<'a, Output = ()>> {
        Some(self)
    }

    wasmparser::for_each_visit_operator!(note_proposals);
}

impl<'a> VisitSimdOperator<'a> for Notes {
    wasmparser::for_each_visit_simd_operator!(note_proposals);
}

/// The proposals a module (with any modules a component holds) uses so far.
#[derive(Debug, Default)]
pub(crate) struct FeaturesUsed {
    bits: u32,
    /// Memories and tables of the core module being read, imported ones included.
    memories: u32,
    tables: u32,
}

impl FeaturesUsed {
    /// The names of the proposals seen, in `wire::wasm::FEATURES` order.
    pub(crate) fn names(&self) -> Vec<String> {
        wire::wasm::feature_names(self.bits)
            .into_iter()
            .map(str::to_owned)
            .collect()
    }

    pub(crate) fn function(&mut self, body: &FunctionBody<'_>) -> Result<(), BinaryReaderError> {
        self.operators(body.get_operators_reader()?)
    }

    fn operators(&mut self, mut reader: OperatorsReader<'_>) -> Result<(), BinaryReaderError> {
        let mut notes = Notes(0);
        while !reader.eof() {
            reader.visit_operator(&mut notes)?;
        }
        self.bits |= notes.0;
        Ok(())
    }

    /// A constant expression is 1.0 when it is one instruction and its `end`.
    fn const_expr(&mut self, expr: &ConstExpr<'_>) -> Result<(), BinaryReaderError> {
        let mut reader = expr.get_operators_reader();
        let mut count = 0;
        let mut notes = Notes(0);
        while !reader.eof() {
            reader.visit_operator(&mut notes)?;
            count += 1;
        }
        if count > 2 {
            notes.0 |= EXTENDED_CONST;
        }
        self.bits |= notes.0;
        Ok(())
    }

    fn memory(&mut self, memory64: bool) {
        self.memories += 1;
        if memory64 {
            self.bits |= MEMORY64;
        }
        if self.memories > 1 {
            self.bits |= MULTI_MEMORY;
        }
    }

    fn table(&mut self) {
        self.tables += 1;
        if self.tables > 1 {
            self.bits |= REFERENCE_TYPES;
        }
    }

    /// What `payload` shows of the proposals; function bodies go to [`Self::function`].
    pub(crate) fn payload(&mut self, payload: &Payload<'_>) -> Result<(), BinaryReaderError> {
        match payload {
            // Each core module counts its own memories and tables.
            Payload::Version { .. } => (self.memories, self.tables) = (0, 0),
            Payload::TagSection(_) => self.bits |= EXCEPTIONS,
            Payload::ImportSection(imports) => {
                for import in imports.clone().into_imports() {
                    match import?.ty {
                        TypeRef::Memory(memory) => self.memory(memory.memory64),
                        TypeRef::Table(_) => self.table(),
                        TypeRef::Tag(_) => self.bits |= EXCEPTIONS,
                        _ => {}
                    }
                }
            }
            Payload::MemorySection(memories) => {
                for memory in memories.clone() {
                    self.memory(memory?.memory64);
                }
            }
            Payload::TableSection(tables) => {
                for _ in tables.clone() {
                    self.table();
                }
            }
            Payload::GlobalSection(globals) => {
                for global in globals.clone() {
                    self.const_expr(&global?.init_expr)?;
                }
            }
            Payload::DataSection(data) => {
                for segment in data.clone() {
                    if let DataKind::Active { offset_expr, .. } = segment?.kind {
                        self.const_expr(&offset_expr)?;
                    }
                }
            }
            Payload::ElementSection(elements) => {
                for element in elements.clone() {
                    if let ElementKind::Active { offset_expr, .. } = element?.kind {
                        self.const_expr(&offset_expr)?;
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use wasmparser::Parser;

    use super::*;

    fn used_by(wat: &str) -> Vec<String> {
        let wasm = wat::parse_str(wat).unwrap();
        let mut used = FeaturesUsed::default();
        for payload in Parser::new(0).parse_all(&wasm) {
            let payload = payload.unwrap();
            used.payload(&payload).unwrap();
            if let Payload::CodeSectionEntry(body) = &payload {
                used.function(body).unwrap();
            }
        }
        used.names()
    }

    #[test]
    fn the_bits_are_the_wire_names_in_order() {
        let bits = [
            BULK_MEMORY,
            EXCEPTIONS,
            EXTENDED_CONST,
            MEMORY64,
            MULTI_MEMORY,
            REFERENCE_TYPES,
            RELAXED_SIMD,
            SATURATING_FLOAT_TO_INT,
            SIGN_EXTENSION,
            SIMD,
            TAIL_CALL,
        ];
        let names: Vec<_> = bits
            .iter()
            .flat_map(|bit| wire::wasm::feature_names(*bit))
            .collect();
        assert_eq!(names, wire::wasm::FEATURES);
    }

    #[test]
    fn a_plain_module_uses_nothing_and_each_proposal_is_found() {
        assert!(used_by("(module (func (drop (i32.add (i32.const 1) (i32.const 2)))))").is_empty());
        assert!(used_by("(module (memory 1) (global i32 (i32.const 7)))").is_empty());
        let found = |body: &str| used_by(&format!("(module (memory 1) (func $f {body}))"));
        assert_eq!(found("(return_call $f)"), ["tail-call"]);
        assert_eq!(
            found("(drop (i32.extend8_s (i32.const 1)))"),
            ["sign-extension"]
        );
        assert_eq!(
            found("(memory.fill (i32.const 0) (i32.const 0) (i32.const 0))"),
            ["bulk-memory"]
        );
        assert_eq!(
            found("(drop (i32.trunc_sat_f32_s (f32.const 1)))"),
            ["saturating-float-to-int"]
        );
        assert_eq!(found("(drop (v128.const i64x2 1 2))"), ["simd"]);
        assert_eq!(
            found("(drop (i32x4.relaxed_trunc_f32x4_s (v128.const f32x4 1 2 3 4)))"),
            ["relaxed-simd", "simd"]
        );
        assert_eq!(found("(drop (ref.null extern))"), ["reference-types"]);
        assert_eq!(
            used_by(guests::PROPOSALS_WAT),
            ["exceptions", "extended-const", "tail-call"]
        );
        assert_eq!(
            used_by("(module (memory 1) (memory i64 1))"),
            ["memory64", "multi-memory"]
        );
        assert_eq!(
            used_by("(module (table 1 funcref) (table 1 funcref))"),
            ["reference-types"]
        );
    }
}
