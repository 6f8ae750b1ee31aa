// The WebAssembly proposals this browser compiles, by the names of `wire::wasm::FEATURES`, each
// found by validating a tiny module that uses it. The pool sends a job only to nodes that name
// every proposal its module uses, and a module this browser then failed to compile would fail
// its task for good (module_rejected is final), so a proposal is named only when it validates.

// The proposals a browser node may name (not memory64: a browser caps 64-bit memories far
// below what a native agent gives them).
export const CANDIDATES = [
  'bulk-memory', 'exceptions', 'extended-const', 'multi-memory', 'reference-types',
  'relaxed-simd', 'saturating-float-to-int', 'sign-extension', 'simd', 'tail-call',
];

const HEADER = [0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00];

function section(id, bytes) {
  // Every probe's section is shorter than 128 bytes: its length is one LEB128 byte.
  return [id, bytes.length, ...bytes];
}

const TYPE = section(1, [1, 0x60, 0, 0]); // one type: [] -> []
const FUNC = section(3, [1, 0]); // one function of that type
const MEMORY = section(5, [1, 0, 1]); // one memory of one page

function code(body) {
  const fn = [0, ...body, 0x0b]; // no locals, body, end
  return section(10, [1, fn.length, ...fn]);
}

function module(...sections) {
  return new Uint8Array([...HEADER, ...sections.flat()]);
}

const V128_ZERO = [0xfd, 0x0c, ...new Array(16).fill(0)];

// Each proposal's probes; all must validate. Both forms of exception handling are probed:
// the pool names either one `exceptions`, and a toolchain may emit either.
const PROBES = {
  'bulk-memory': [module(TYPE, FUNC, MEMORY, code([0x41, 0, 0x41, 0, 0x41, 0, 0xfc, 0x0b, 0x00]))],
  exceptions: [
    module(TYPE, FUNC, code([0x1f, 0x40, 0x00, 0x0b])), // try_table end
    module(TYPE, FUNC, code([0x06, 0x40, 0x19, 0x0b])), // try catch_all end (the legacy form)
  ],
  'extended-const': [module(section(6, [1, 0x7f, 0x00, 0x41, 1, 0x41, 2, 0x6a, 0x0b]))],
  'multi-memory': [module(section(5, [2, 0, 1, 0, 1]))],
  'reference-types': [module(TYPE, FUNC, code([0xd0, 0x70, 0x1a]))],
  'relaxed-simd': [module(TYPE, FUNC, code([...V128_ZERO, ...V128_ZERO, 0xfd, 0x80, 0x02, 0x1a]))],
  'saturating-float-to-int': [module(TYPE, FUNC, code([0x43, 0, 0, 0, 0, 0xfc, 0x00, 0x1a]))],
  'sign-extension': [module(TYPE, FUNC, code([0x41, 0, 0xc0, 0x1a]))],
  simd: [module(TYPE, FUNC, code([...V128_ZERO, 0x1a]))],
  'tail-call': [module(TYPE, FUNC, code([0x12, 0x00]))],
};

function validates(bytes) {
  try {
    return WebAssembly.validate(bytes);
  } catch {
    return false;
  }
}

let found = null;

export function wasmFeatures() {
  if (found) return found;
  // A probe that fails for a fault of its own would hide a proposal; the plain module checks
  // the builder itself.
  if (!validates(module(TYPE, FUNC, code([])))) return [...CANDIDATES];
  found = CANDIDATES.filter((name) => PROBES[name].every(validates));
  return found;
}
