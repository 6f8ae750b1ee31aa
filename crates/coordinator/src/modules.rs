//! Whether a blob is a WebAssembly core module or WASI 0.2 component a node can run: decided
//! once per blob, while streaming it, and remembered.
//!
//! A submission names its module by hash. Reading the module whole for every submission let
//! parallel submissions of one large module hold a copy each; here the first submission to
//! need a verdict streams the blob through `wasmparser`'s incremental parser and validator,
//! the others wait for that verdict, and later ones read it from a bounded cache. Custom
//! sections (names, debug info) are skipped as they stream by: nothing validates them. What
//! stays in memory is one chunk plus one section being parsed (one function body for code).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use parking_lot::Mutex;
use tokio::sync::{OnceCell, Semaphore};
use wasmparser::{
    Chunk, Encoding, FuncValidatorAllocations, Parser, Payload, ValidPayload, Validator,
};

use blobstore::{BlobError, BlobStore};

use crate::wasm_features::FeaturesUsed;
use wire::BlobHash;

/// A module's verdict: what it is and needs, or what is wrong with it, for the requester.
pub(crate) type Verdict = Result<ModuleFacts, String>;

/// What a valid module is and what nodes need to run it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ModuleFacts {
    pub(crate) kind: ModuleKind,
    /// Its size, as streamed: a submission need not ask the store again.
    pub(crate) size_bytes: u64,
    /// The WebAssembly proposals it uses, by the names of `wire::wasm::FEATURES`.
    pub(crate) wasm_features: Vec<String>,
}

/// What a valid module is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ModuleKind {
    /// A core module (a WASI preview 1 command).
    Core,
    /// A WASI 0.2 command component and the interfaces it imports, as it names them
    /// (`wasi:io/streams@0.2.6`); the pool decides whether its nodes give them.
    Component { imports: Vec<String> },
}

/// Imports of one component; more is refused, as no WASI command needs that many.
const COMPONENT_IMPORTS_MAX: usize = 256;

/// The WebAssembly features nodes run, as the sandbox configures its engines: WebAssembly 3.0
/// (exceptions, tail calls, extended constants, SIMD, bulk memory, multiple memories, 64-bit
/// memories) without the GC proposal, typed function references or threads, and the component
/// model for WASI 0.2 components. A module that needs anything else is refused at submit,
/// since no node could run it.
pub(crate) fn node_features() -> wasmparser::WasmFeatures {
    use wasmparser::WasmFeatures as F;
    F::WASM3
        .union(F::GC_TYPES)
        .union(F::COMPONENT_MODEL)
        .difference(F::GC.union(F::FUNCTION_REFERENCES).union(F::THREADS))
}

/// Verdicts remembered; past this the oldest is forgotten (and found again if asked for).
const VERDICTS_MAX: usize = 4096;
/// Modules validated at once: each takes a core and holds a section in memory.
const VALIDATIONS_AT_ONCE: usize = 2;

/// Verdicts by module hash, each decided by one validation however many ask at once.
pub(crate) struct ModuleVerdicts {
    cells: Mutex<Cells>,
    validations: Semaphore,
}

#[derive(Default)]
struct Cells {
    by_hash: HashMap<BlobHash, Arc<OnceCell<Verdict>>>,
    /// Hashes in the order they were first asked for, to forget the oldest.
    order: VecDeque<BlobHash>,
}

impl Default for ModuleVerdicts {
    fn default() -> Self {
        Self {
            cells: Mutex::new(Cells::default()),
            validations: Semaphore::new(VALIDATIONS_AT_ONCE),
        }
    }
}

impl ModuleVerdicts {
    /// The verdict on `module`, validating it if nobody has yet. A storage error is returned,
    /// not remembered: the next submission tries again.
    pub(crate) async fn verdict(
        &self,
        blobs: &BlobStore,
        module: BlobHash,
    ) -> Result<Verdict, BlobError> {
        let cell = self.cell(module);
        let verdict = cell
            .get_or_try_init(|| async {
                let _permit = self
                    .validations
                    .acquire()
                    .await
                    .map_err(|error| BlobError::Storage(error.to_string()))?;
                validate_blob(blobs, module).await
            })
            .await?;
        Ok(verdict.clone())
    }

    fn cell(&self, module: BlobHash) -> Arc<OnceCell<Verdict>> {
        let mut cells = self.cells.lock();
        if let Some(cell) = cells.by_hash.get(&module) {
            return Arc::clone(cell);
        }
        if cells.order.len() >= VERDICTS_MAX
            && let Some(oldest) = cells.order.pop_front()
        {
            cells.by_hash.remove(&oldest);
        }
        cells.order.push_back(module);
        Arc::clone(cells.by_hash.entry(module).or_default())
    }

    /// Forgets the verdict on a deleted blob: bytes uploaded again under its hash are the same,
    /// but the cache need not hold what is gone.
    pub(crate) fn forget(&self, module: &BlobHash) {
        let mut cells = self.cells.lock();
        if cells.by_hash.remove(module).is_some() {
            cells.order.retain(|hash| hash != module);
        }
    }
}

/// Streams the blob through the validator on a blocking thread, pulling chunks as it goes.
async fn validate_blob(blobs: &BlobStore, module: BlobHash) -> Result<Verdict, BlobError> {
    let (size_bytes, mut stream) = blobs.get_stream(&module).await?;
    if size_bytes > wire::limits::MODULE_BYTES_MAX {
        return Ok(Err(format!(
            "{size_bytes} bytes; modules may be at most {} bytes",
            wire::limits::MODULE_BYTES_MAX
        )));
    }
    let runtime = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        validate_chunks(
            size_bytes,
            std::iter::from_fn(|| runtime.block_on(stream.next())),
        )
    })
    .await
    .map_err(|error| BlobError::Storage(format!("validating a module stopped: {error}")))?
}

/// The verdict on a module of `size_bytes`, whose bytes `chunks` yield in order.
pub(crate) fn validate_chunks(
    size_bytes: u64,
    chunks: impl Iterator<Item = Result<Bytes, BlobError>>,
) -> Result<Verdict, BlobError> {
    let mut module = StreamingModule::new(size_bytes);
    for chunk in chunks {
        if let Err(problem) = module.push(&chunk?) {
            return Ok(Err(problem));
        }
    }
    Ok(module.finish())
}

/// A module being validated as its bytes arrive.
struct StreamingModule {
    sections: SectionFilter,
    /// Bytes past the filter that the parser has not consumed yet.
    pending: Vec<u8>,
    parser: Parser,
    /// The parsers of the components around the module or component being parsed.
    outer: Vec<Parser>,
    validator: Validator,
    allocations: FuncValidatorAllocations,
    size_bytes: u64,
    /// Set once the outermost header is read: whether it is a component, and what it imports
    /// and whether it exports `wasi:cli/run`.
    component: Option<ComponentSeen>,
    features: FeaturesUsed,
    ended: bool,
}

#[derive(Default)]
struct ComponentSeen {
    imports: Vec<String>,
    runs: bool,
}

fn not_valid(error: impl std::fmt::Display) -> String {
    format!("not valid WebAssembly: {error}")
}

impl StreamingModule {
    fn new(size_bytes: u64) -> Self {
        Self {
            sections: SectionFilter::new(size_bytes),
            size_bytes,
            pending: Vec::new(),
            parser: Parser::new(0),
            outer: Vec::new(),
            validator: Validator::new_with_features(node_features()),
            allocations: FuncValidatorAllocations::default(),
            component: None,
            features: FeaturesUsed::default(),
            ended: false,
        }
    }

    fn push(&mut self, chunk: &[u8]) -> Result<(), String> {
        self.sections.pass(chunk, &mut self.pending)?;
        self.parse(false)
    }

    fn finish(mut self) -> Verdict {
        self.sections.finish()?;
        self.parse(true)?;
        if !self.ended {
            return Err(not_valid("the module ends early"));
        }
        let kind = match self.component {
            None => ModuleKind::Core,
            Some(ComponentSeen { runs: false, .. }) => {
                return Err(format!(
                    "a component that exports no {}@0.2; build it for wasm32-wasip2 as a \
                     program with a main",
                    wire::wasi::COMMAND_EXPORT
                ));
            }
            Some(ComponentSeen { imports, .. }) => ModuleKind::Component { imports },
        };
        Ok(ModuleFacts {
            kind,
            size_bytes: self.size_bytes,
            wasm_features: self.features.names(),
        })
    }

    /// Parses and validates every whole payload in `pending`, then drops the bytes it used.
    fn parse(&mut self, eof: bool) -> Result<(), String> {
        let mut consumed_total = 0;
        while !self.ended {
            let chunk = self
                .parser
                .parse(&self.pending[consumed_total..], eof)
                .map_err(not_valid)?;
            let (consumed, payload) = match chunk {
                Chunk::NeedMoreData(_) => break,
                Chunk::Parsed { consumed, payload } => (consumed, payload),
            };
            if self.outer.is_empty() {
                note_outermost(&mut self.component, &payload)?;
            }
            self.features.payload(&payload).map_err(not_valid)?;
            match self.validator.payload(&payload).map_err(not_valid)? {
                ValidPayload::Func(to_validate, body) => {
                    self.features.function(&body).map_err(not_valid)?;
                    let allocations = std::mem::take(&mut self.allocations);
                    let mut function = to_validate.into_validator(allocations);
                    function.validate(&body).map_err(not_valid)?;
                    self.allocations = function.into_allocations();
                }
                // A nested module or component: parsed by its own parser, then the outer one
                // takes over again at its end.
                ValidPayload::Parser(nested) => {
                    self.outer.push(std::mem::replace(&mut self.parser, nested));
                }
                ValidPayload::End(_) => match self.outer.pop() {
                    Some(outer) => self.parser = outer,
                    None => self.ended = true,
                },
                ValidPayload::Ok => {}
            }
            consumed_total += consumed;
        }
        self.pending.drain(..consumed_total);
        Ok(())
    }
}

/// What the outermost component imports and exports; nested ones are its own business.
fn note_outermost(
    component: &mut Option<ComponentSeen>,
    payload: &Payload<'_>,
) -> Result<(), String> {
    match payload {
        Payload::Version {
            encoding: Encoding::Component,
            ..
        } => *component = Some(ComponentSeen::default()),
        Payload::ComponentImportSection(imports) => {
            let seen = component.get_or_insert_default();
            for import in imports.clone() {
                let import = import.map_err(not_valid)?;
                if seen.imports.len() == COMPONENT_IMPORTS_MAX {
                    return Err(format!(
                        "a component with more than {COMPONENT_IMPORTS_MAX} imports; a WASI \
                             command needs a few dozen"
                    ));
                }
                seen.imports.push(import.name.name.to_owned());
            }
        }
        Payload::ComponentExportSection(exports) => {
            let seen = component.get_or_insert_default();
            for export in exports.clone() {
                let export = export.map_err(not_valid)?;
                seen.runs |= wire::wasi::is_command_export(export.name.name);
            }
        }
        _ => {}
    }
    Ok(())
}

/// Passes a module's bytes on to the parser without its custom sections, so that a large one
/// (debug info) streams by instead of being held whole, and refuses at once a section the
/// parser would otherwise wait for to the end of the blob: one of an unknown kind, or one that
/// claims more bytes than the module has left.
#[derive(Debug)]
struct SectionFilter {
    framing: Framing,
    /// Bytes of the module not yet seen.
    left_bytes: u64,
}

#[derive(Debug)]
enum Framing {
    /// The first 8 bytes: magic and version.
    Preamble(Vec<u8>),
    /// A section's id and size (LEB128, at most 5 bytes) being read.
    Header(Vec<u8>),
    /// Inside a section that goes to the parser.
    Pass(u64),
    /// Inside a custom section, dropped.
    Skip(u64),
    /// Not a core module, or a header that is not well formed: everything goes to the parser,
    /// which says why.
    Raw,
}

/// Magic and version of a WebAssembly binary.
const PREAMBLE_BYTES: usize = 8;
/// The version field of a core module (a component's differs).
const CORE_VERSION: [u8; 4] = [1, 0, 0, 0];
/// A section id byte and a size of at most 5 LEB128 bytes.
const SECTION_HEADER_BYTES_MAX: usize = 6;
/// The highest section id of a core module (13: tags).
const SECTION_ID_MAX: u8 = 13;

impl SectionFilter {
    fn new(size_bytes: u64) -> Self {
        Self {
            framing: Framing::Preamble(Vec::with_capacity(PREAMBLE_BYTES)),
            left_bytes: size_bytes,
        }
    }

    /// Appends what the parser must see of `chunk` to `out`.
    fn pass(&mut self, chunk: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
        self.left_bytes = self.left_bytes.saturating_sub(chunk.len() as u64);
        let mut rest = chunk;
        while !rest.is_empty() {
            let left_after_rest = self.left_bytes + rest.len() as u64;
            match &mut self.framing {
                Framing::Preamble(seen) => {
                    let take = rest.len().min(PREAMBLE_BYTES - seen.len());
                    seen.extend_from_slice(&rest[..take]);
                    out.extend_from_slice(&rest[..take]);
                    rest = &rest[take..];
                    check_magic(seen, false)?;
                    if seen.len() == PREAMBLE_BYTES {
                        self.framing = if seen[4..] == CORE_VERSION {
                            Framing::Header(Vec::new())
                        } else {
                            Framing::Raw
                        };
                    }
                }
                Framing::Header(header) => {
                    header.push(rest[0]);
                    rest = &rest[1..];
                    if let Some(next) = after_header(header, left_after_rest - 1)? {
                        if !matches!(next, Framing::Skip(_)) {
                            out.extend_from_slice(header);
                        }
                        self.framing = next;
                    }
                }
                Framing::Pass(left) => {
                    out.extend_from_slice(take_section(&mut rest, left));
                    if *left == 0 {
                        self.framing = Framing::Header(Vec::new());
                    }
                }
                Framing::Skip(left) => {
                    take_section(&mut rest, left);
                    if *left == 0 {
                        self.framing = Framing::Header(Vec::new());
                    }
                }
                Framing::Raw => {
                    out.extend_from_slice(rest);
                    rest = &[];
                }
            }
        }
        Ok(())
    }

    /// Refuses a module that ends where the parser cannot see it: in its preamble, a section
    /// header or a custom section.
    fn finish(&self) -> Result<(), String> {
        match &self.framing {
            Framing::Preamble(seen) => check_magic(seen, true),
            Framing::Header(header) if !header.is_empty() => {
                Err(not_valid("the module ends inside a section header"))
            }
            Framing::Skip(_) => Err(not_valid("the module ends inside a custom section")),
            _ => Ok(()),
        }
    }
}

/// The bytes of `chunk` that belong to the section with `left` bytes to go; moves both on.
fn take_section<'a>(chunk: &mut &'a [u8], left: &mut u64) -> &'a [u8] {
    let take = chunk
        .len()
        .min(usize::try_from(*left).unwrap_or(usize::MAX));
    let (taken, rest) = chunk.split_at(take);
    *chunk = rest;
    *left -= take as u64;
    taken
}

/// Refuses bytes that do not start as WebAssembly; `complete` once no more will come.
fn check_magic(seen: &[u8], complete: bool) -> Result<(), String> {
    let magic = b"\0asm";
    let common = seen.len().min(magic.len());
    if seen[..common] != magic[..common] || (complete && seen.len() < magic.len()) {
        return Err(
            "not WebAssembly (it does not start with \\0asm); build it for wasm32-wasip1"
                .to_owned(),
        );
    }
    Ok(())
}

/// What follows a section header read so far (`None` while it is incomplete), given the bytes
/// of the module after the header.
fn after_header(header: &[u8], left_bytes: u64) -> Result<Option<Framing>, String> {
    let id = header[0];
    if id > SECTION_ID_MAX {
        return Err(not_valid(format!("unknown section id {id}")));
    }
    let Some(last) = header[1..].last() else {
        return Ok(None);
    };
    if last & 0x80 != 0 {
        return Ok((header.len() >= SECTION_HEADER_BYTES_MAX).then_some(Framing::Raw));
    }
    let size = header[1..]
        .iter()
        .enumerate()
        .fold(0u64, |size, (index, byte)| {
            size | (u64::from(byte & 0x7f) << (7 * index))
        });
    if size > u64::from(u32::MAX) {
        return Ok(Some(Framing::Raw));
    }
    if size > left_bytes {
        return Err(not_valid(format!(
            "a section claims {size} bytes and only {left_bytes} follow"
        )));
    }
    Ok(Some(match id {
        0 => Framing::Skip(size),
        _ => Framing::Pass(size),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The verdict on `bytes` fed in chunks of `chunk_bytes`.
    fn verdict_in_chunks(bytes: &[u8], chunk_bytes: usize) -> Verdict {
        let chunks = bytes
            .chunks(chunk_bytes)
            .map(|chunk| Ok(Bytes::copy_from_slice(chunk)));
        validate_chunks(bytes.len() as u64, chunks).unwrap()
    }

    fn whole_verdict(bytes: &[u8]) -> bool {
        Validator::new_with_features(node_features())
            .validate_all(bytes)
            .is_ok()
    }

    /// A module with a function, a data segment and custom sections around them.
    fn module_with_custom_sections() -> Vec<u8> {
        let mut bytes = b"\0asm\x01\0\0\0".to_vec();
        let custom = |name: &str, payload: &[u8]| {
            let mut section = Vec::new();
            guests::binary::custom_section(name, payload, &mut section);
            section
        };
        bytes.extend(custom("first", &[7; 300]));
        // type: () -> (); function 0 of type 0; memory of 1 page; code: one empty body.
        bytes.extend([0x01, 0x04, 0x01, 0x60, 0x00, 0x00]);
        bytes.extend([0x03, 0x02, 0x01, 0x00]);
        bytes.extend([0x05, 0x03, 0x01, 0x00, 0x01]);
        bytes.extend(custom("between", &[9; 200]));
        bytes.extend([0x0a, 0x04, 0x01, 0x02, 0x00, 0x0b]);
        // data: one active segment at offset 0 with 3 bytes.
        bytes.extend([0x0b, 0x09, 0x01, 0x00, 0x41, 0x00, 0x0b, 0x03, 1, 2, 3]);
        bytes.extend(custom("last", b"debug"));
        bytes
    }

    #[test]
    fn a_valid_module_passes_in_chunks_of_any_size() {
        let bytes = module_with_custom_sections();
        assert!(whole_verdict(&bytes), "the test module is valid");
        for chunk_bytes in [1, 2, 3, 7, 64, 4096, bytes.len()] {
            assert_eq!(
                verdict_in_chunks(&bytes, chunk_bytes),
                Ok(ModuleFacts {
                    kind: ModuleKind::Core,
                    size_bytes: bytes.len() as u64,
                    wasm_features: Vec::new(),
                }),
                "{chunk_bytes}"
            );
        }
    }

    #[test]
    fn every_truncation_and_corruption_is_judged_as_the_whole_module_validator_does() {
        let bytes = module_with_custom_sections();
        for end in 0..bytes.len() {
            let cut = &bytes[..end];
            assert_eq!(
                verdict_in_chunks(cut, 5).is_ok(),
                whole_verdict(cut),
                "cut at {end}"
            );
        }
        // Flipping a byte outside custom sections' payloads must be judged the same.
        for index in 0..bytes.len() {
            let mut broken = bytes.clone();
            broken[index] ^= 0x55;
            let streamed = verdict_in_chunks(&broken, 9).is_ok();
            if streamed != whole_verdict(&broken) {
                // Only a custom section's contents (its name included) may differ: nothing
                // validates them.
                assert!(streamed, "byte {index}: the streamed verdict is stricter");
            }
        }
    }

    #[test]
    fn what_nodes_run_passes_and_what_they_refuse_is_refused_at_submit() {
        let proposals = wat::parse_str(guests::PROPOSALS_WAT).unwrap();
        assert_eq!(
            verdict_in_chunks(&proposals, 7),
            Ok(ModuleFacts {
                kind: ModuleKind::Core,
                size_bytes: proposals.len() as u64,
                wasm_features: ["exceptions", "extended-const", "tail-call"]
                    .map(String::from)
                    .into(),
            }),
            "what it needs is found as it streams by"
        );
        let shared = wat::parse_str("(module (memory 1 1 shared))").unwrap();
        let refused = verdict_in_chunks(&shared, 7).unwrap_err();
        assert!(refused.contains("threads"), "{refused}");
        let gc = wat::parse_str("(module (type (struct (field i32))))").unwrap();
        assert!(
            verdict_in_chunks(&gc, 7).is_err(),
            "the GC proposal is off on nodes"
        );
    }

    #[test]
    fn a_command_component_passes_in_chunks_with_what_it_imports() {
        let component = guests::PROBE_COMPONENT;
        for chunk_bytes in [7, 4096, component.len()] {
            let Ok(ModuleFacts {
                kind: ModuleKind::Component { imports },
                ..
            }) = verdict_in_chunks(component, chunk_bytes)
            else {
                panic!("the probe component was refused in chunks of {chunk_bytes}");
            };
            assert!(
                imports
                    .iter()
                    .any(|name| name.starts_with("wasi:filesystem/types@0.2.")),
                "{imports:?}"
            );
            assert!(
                imports.iter().all(|name| name.starts_with("wasi:")),
                "{imports:?}"
            );
        }
        // Cut anywhere, it is judged as the whole validator judges it.
        for end in (0..component.len()).step_by(997) {
            let cut = &component[..end];
            assert_eq!(
                verdict_in_chunks(cut, 4096).is_ok(),
                whole_verdict(cut),
                "cut at {end}"
            );
        }
        let library =
            wat::parse_str(r#"(component (import "wasi:cli/stdout@0.2.0" (instance)))"#).unwrap();
        let refused = verdict_in_chunks(&library, 5).unwrap_err();
        assert!(refused.contains("wasi:cli/run"), "{refused}");
    }

    #[test]
    fn refusals_say_what_the_bytes_are() {
        let not_wasm = verdict_in_chunks(b"#!/bin/sh\nrm -rf /\n", 4).unwrap_err();
        assert!(not_wasm.starts_with("not WebAssembly"), "{not_wasm}");
        assert!(
            verdict_in_chunks(b"", 4)
                .unwrap_err()
                .contains("not WebAssembly")
        );
        let component = verdict_in_chunks(b"\0asm\x0d\0\x01\0", 3).unwrap_err();
        assert!(component.contains("exports no wasi:cli/run"), "{component}");
        let broken = verdict_in_chunks(b"\0asm\x01\0\0\0\x01\x05", 3).unwrap_err();
        assert!(broken.starts_with("not valid WebAssembly"), "{broken}");
    }

    #[test]
    fn a_large_custom_section_streams_by_without_being_held() {
        // A custom section of 64 MiB, fed in 64 KiB chunks.
        let mut header = vec![0u8];
        guests::binary::leb128(64 << 20, &mut header);
        let mut module = StreamingModule::new(8 + header.len() as u64 + (64 << 20));
        module.push(b"\0asm\x01\0\0\0").unwrap();
        module.push(&header).unwrap();
        module.push(&[0]).unwrap(); // an empty name
        let chunk = vec![0u8; 64 << 10];
        for _ in 0..1023 {
            module.push(&chunk).unwrap();
            assert!(module.pending.len() < 16, "{}", module.pending.len());
        }
        module.push(&chunk[..(64 << 10) - 1]).unwrap();
        assert_eq!(
            module.finish().map(|facts| facts.kind),
            Ok(ModuleKind::Core)
        );
    }
}
