// One attempt of a WASI preview 1 command, run here in the browser the way the agent's sandbox
// runs it: argv[0] is the job's name, env is the job's alone, stdin is the task's bytes,
// /input and the job's mounts are read-only, /output and /scratch are writable, empty and
// capped together, stdout and stderr are capped. Used by worker.js; it touches no worker
// global, so Node can run it too (the tests do).
//
// What a browser cannot do as wasmtime does: meter fuel (none is counted), refuse a memory
// grow at the limit (memory is checked at every WASI call and after the run instead, since
// WebAssembly memory never shrinks, so its size is the peak; and the module's memory is
// capped at twice the limit before it compiles), or stop a guest that makes no WASI call (the
// page terminates the whole worker at the deadline).

import {
  WASI, File, OpenFile, Directory, OpenDirectory, ConsoleStdout, wasi as defs,
} from '../../vendor/browser_wasi_shim/index.js';
import { blake3 } from '../../vendor/noble-hashes/blake3.js';

// The agent's bound on a directory walk: deeper trees are refused, never followed.
const DEPTH_MAX = 64;
// Trap and rejection messages are cut to this many bytes of UTF-8.
export const MESSAGE_BYTES_MAX = 1024;

// ---- how the host stops a guest ----

// Thrown from inside a WASI call to unwind the guest; the host remembers why in `stopped`,
// since a guest built with exceptions could catch the throw and carry on.
export class Stop extends Error {
  constructor(kind, what) {
    super(kind === 'memory' ? 'the task passed its memory limit' : `the task wrote too much to ${what}`);
    this.name = 'Stop';
    this.kind = kind;
    this.what = what;
  }
}

// ---- the file trees ----

// What one set of preopened trees may hold: /input and mounts are read-only; /output and
// /scratch share one budget of bytes and entries, like the agent's disk cap.
class Tree {
  constructor({ readonly, bytesMax = Infinity, entriesMax = Infinity, host = null }) {
    this.readonly = readonly;
    this.bytesMax = bytesMax;
    this.entriesMax = entriesMax;
    this.host = host;
    this.roots = [];
    // Upper bounds since the last walk: writes add to them, deletes do not take away, so a
    // walk is needed only when they pass a cap.
    this.bytes = 0;
    this.entries = 0;
  }

  // `more` bytes are about to be written: stop the guest before they land if they do not fit.
  grow(more) {
    if (more <= 0) return;
    if (this.bytes + more > this.bytesMax) {
      this.bytes = this.measure().bytes;
      if (this.bytes + more > this.bytesMax) throw this.host.stop('output', '/output');
    }
    this.bytes += more;
  }

  // A file or directory is about to be made.
  add() {
    if (this.entries + 1 > this.entriesMax) {
      this.entries = this.measure().entries;
      if (this.entries + 1 > this.entriesMax) throw this.host.stop('output', '/output file count');
    }
    this.entries += 1;
  }

  measure() {
    const usage = { bytes: 0, entries: 0 };
    for (const root of this.roots) walkUsage(root, usage, 0);
    return usage;
  }
}

function walkUsage(dir, usage, depth) {
  if (depth > DEPTH_MAX) return;
  for (const entry of dir.contents.values()) {
    usage.entries += 1;
    if (entry instanceof Directory) walkUsage(entry, usage, depth + 1);
    else if (entry instanceof File) usage.bytes += entry.data.byteLength;
  }
}

// A file whose bytes grow by doubling: the shim's own File copies the whole file on every
// append, which makes writing a large output quadratic.
class TreeFile extends File {
  constructor(data, tree) {
    super(data, { readonly: tree.readonly });
    this.tree = tree;
  }

  // The shim reads and replaces `data`; `store` is the room behind it.
  get data() {
    return this.view;
  }

  set data(bytes) {
    this.store = bytes;
    this.view = bytes;
  }

  // Makes the file at least `end` bytes long; new bytes are zero.
  reserve(end) {
    if (end <= this.view.byteLength) return;
    if (end > this.store.byteLength) {
      const next = new Uint8Array(Math.max(end, this.store.byteLength * 2, 4096));
      next.set(this.view);
      this.store = next;
    }
    this.view = this.store.subarray(0, end);
  }

  // Shortens the file, zeroing what it drops so that growing it again reads zeros.
  shrink(end) {
    this.store.fill(0, end, this.view.byteLength);
    this.view = this.store.subarray(0, end);
  }

  path_open(oflags, rightsBase, fdFlags) {
    const write = BigInt(defs.RIGHTS_FD_WRITE);
    if (this.readonly && ((BigInt(rightsBase) & write) === write || (oflags & defs.OFLAGS_TRUNC))) {
      return { ret: defs.ERRNO_PERM, fd_obj: null };
    }
    if (oflags & defs.OFLAGS_TRUNC) this.shrink(0);
    return { ret: defs.ERRNO_SUCCESS, fd_obj: new TreeOpenFile(this, Boolean(fdFlags & defs.FDFLAGS_APPEND)) };
  }
}

class TreeOpenFile extends OpenFile {
  constructor(file, append) {
    super(file);
    this.append = append;
  }

  fd_write(data) {
    if (this.file.readonly) return { ret: defs.ERRNO_BADF, nwritten: 0 };
    if (this.append) this.file_pos = this.file.size;
    this.writeAt(data, Number(this.file_pos));
    this.file_pos += BigInt(data.byteLength);
    return { ret: defs.ERRNO_SUCCESS, nwritten: data.byteLength };
  }

  fd_pwrite(data, offset) {
    if (this.file.readonly) return { ret: defs.ERRNO_BADF, nwritten: 0 };
    this.writeAt(data, Number(offset));
    return { ret: defs.ERRNO_SUCCESS, nwritten: data.byteLength };
  }

  fd_allocate(offset, len) {
    if (this.file.readonly) return defs.ERRNO_BADF;
    this.resize(Number(offset + len), false);
    return defs.ERRNO_SUCCESS;
  }

  fd_filestat_set_size(size) {
    if (this.file.readonly) return defs.ERRNO_BADF;
    this.resize(Number(size), true);
    return defs.ERRNO_SUCCESS;
  }

  writeAt(data, at) {
    this.resize(at + data.byteLength, false);
    this.file.view.set(data, at);
  }

  resize(end, mayShrink) {
    const size = this.file.view.byteLength;
    if (end < size) {
      if (mayShrink) this.file.shrink(end);
      return;
    }
    this.file.tree.grow(end - size);
    this.file.reserve(end);
  }
}

class TreeDirectory extends Directory {
  constructor(contents, tree) {
    super(contents);
    this.tree = tree;
  }

  path_open() {
    return { ret: defs.ERRNO_SUCCESS, fd_obj: new TreeOpenDirectory(this) };
  }

  // The shim's own makes its plain File and Directory, which would escape the tree's budget.
  create_entry_for_path(pathText, isDir) {
    if (this.tree.readonly) return { ret: defs.ERRNO_ROFS, entry: null };
    const { ret, path } = parsePath(pathText);
    if (!path) return { ret, entry: null };
    const found = this.get_parent_dir_and_entry_for_path(path, true);
    if (!found.parent_entry || found.filename === null) return { ret: found.ret, entry: null };
    if (found.entry) return { ret: defs.ERRNO_EXIST, entry: null };
    this.tree.add();
    const entry = isDir ? new TreeDirectory(new Map(), this.tree) : new TreeFile(new ArrayBuffer(0), this.tree);
    if (isDir) entry.parent = found.parent_entry;
    found.parent_entry.contents.set(found.filename, entry);
    return { ret: defs.ERRNO_SUCCESS, entry };
  }
}

// The shim's path rules (its Path class is not exported): relative, no NUL, `..` never above
// the directory it starts from.
function parsePath(text) {
  if (text.startsWith('/')) return { ret: defs.ERRNO_NOTCAPABLE, path: null };
  if (text.includes('\0')) return { ret: defs.ERRNO_INVAL, path: null };
  const parts = [];
  for (const part of text.split('/')) {
    if (part === '' || part === '.') continue;
    if (part === '..') {
      if (parts.pop() === undefined) return { ret: defs.ERRNO_NOTCAPABLE, path: null };
      continue;
    }
    parts.push(part);
  }
  return { ret: defs.ERRNO_SUCCESS, path: { parts, is_dir: text.endsWith('/') } };
}

// A directory descriptor that refuses every change in a read-only tree, and hard links
// everywhere (the agent's sandbox refuses links too). Renames still work: the shim makes them
// of an unlink and a link that may take a directory.
class TreeOpenDirectory extends OpenDirectory {
  get readonly() {
    return this.dir.tree.readonly;
  }

  path_link(path, inode, allowDir) {
    if (this.readonly) return defs.ERRNO_ROFS;
    if (!allowDir) return defs.ERRNO_PERM;
    return super.path_link(path, inode, allowDir);
  }

  path_unlink(path) {
    if (this.readonly) return { ret: defs.ERRNO_ROFS, inode_obj: null };
    return super.path_unlink(path);
  }

  path_unlink_file(path) {
    return this.readonly ? defs.ERRNO_ROFS : super.path_unlink_file(path);
  }

  path_remove_directory(path) {
    return this.readonly ? defs.ERRNO_ROFS : super.path_remove_directory(path);
  }
}

class TreePreopen extends TreeOpenDirectory {
  constructor(name, dir) {
    super(dir);
    this.prestat_name = name;
  }

  fd_prestat_get() {
    return { ret: defs.ERRNO_SUCCESS, prestat: defs.Prestat.dir(this.prestat_name) };
  }
}

// A read-only tree of `files` ([relative path, bytes]), directories made as paths need them.
function readonlyTree(files, tree) {
  const root = new TreeDirectory(new Map(), tree);
  for (const [path, data] of files) {
    const parts = path.split('/').filter((part) => part !== '' && part !== '.');
    const name = parts.pop();
    let dir = root;
    for (const part of parts) {
      let next = dir.contents.get(part);
      if (!(next instanceof TreeDirectory)) {
        next = new TreeDirectory(new Map(), tree);
        next.parent = dir;
        dir.contents.set(part, next);
      }
      dir = next;
    }
    if (name !== undefined) dir.contents.set(name, new TreeFile(data, tree));
  }
  return root;
}

// ---- stdout and stderr ----

// Captures up to `cap` bytes; the first byte past it stops the guest, what fit is kept.
class Capture extends ConsoleStdout {
  constructor(what, cap, host) {
    super(() => {});
    this.what = what;
    this.cap = cap;
    this.host = host;
    this.store = new Uint8Array(0);
    this.length = 0;
  }

  fd_write(data) {
    const fits = Math.min(this.cap - this.length, data.byteLength);
    this.append(data.subarray(0, fits));
    if (fits < data.byteLength) throw this.host.stop('output', this.what);
    return { ret: defs.ERRNO_SUCCESS, nwritten: data.byteLength };
  }

  append(bytes) {
    const end = this.length + bytes.byteLength;
    if (end > this.store.byteLength) {
      const next = new Uint8Array(Math.max(end, this.store.byteLength * 2, 4096));
      next.set(this.store.subarray(0, this.length));
      this.store = next;
    }
    this.store.set(bytes, this.length);
    this.length = end;
  }

  bytes() {
    return this.store.slice(0, this.length);
  }
}

// ---- the host of one run ----

// Entries /output and /scratch may hold together: directories count too, so a flood of empty
// directories is caught (the agent's `disk_entries_max`).
function entriesMax(limits) {
  return limits.output_files_max * 2 + 16;
}

class Host {
  constructor(order, hooks) {
    const { limits } = order;
    this.limits = limits;
    this.hooks = hooks;
    this.stopped = null;
    this.peak = 0;
    this.instance = null;
    this.memories = [];
    this.stdout = new Capture('stdout', limits.stdout_bytes_max, this);
    this.stderr = new Capture('stderr', limits.stderr_bytes_max, this);
    const readonly = new Tree({ readonly: true });
    const writable = new Tree({
      readonly: false, bytesMax: limits.output_bytes_max, entriesMax: entriesMax(limits), host: this,
    });
    this.output = new TreeDirectory(new Map(), writable);
    const scratch = new TreeDirectory(new Map(), writable);
    writable.roots = [this.output, scratch];
    this.writable = writable;
    const stdin = new TreeFile(order.stdin || new ArrayBuffer(0), readonly);
    // The agent's order of preopens: /input, /output, /scratch, then the mounts.
    this.fds = [
      new TreeOpenFile(stdin, false),
      this.stdout,
      this.stderr,
      new TreePreopen('/input', readonlyTree((order.inputs || []).map((i) => [i.name, i.data]), readonly)),
      new TreePreopen('/output', this.output),
      new TreePreopen('/scratch', scratch),
      ...(order.mounts || []).map((m) =>
        new TreePreopen(m.guest_path, readonlyTree(m.files.map((f) => [f.path, f.data]), readonly))),
    ];
  }

  stop(kind, what) {
    if (!this.stopped) this.stopped = { kind, what };
    return new Stop(kind, what);
  }

  // The instance, once there is one; its exported memories are found once, since they are
  // measured at every WASI call.
  attach(instance) {
    this.instance = instance;
    this.memories = Object.values(instance.exports).filter((value) => value instanceof WebAssembly.Memory);
  }

  memoryBytes() {
    let most = 0;
    for (const memory of this.memories) most = Math.max(most, memory.buffer.byteLength);
    return most;
  }

  // Called at every WASI call: the peak so far, and a stop once it is past the limit.
  watchMemory(mayThrow = true) {
    const bytes = this.memoryBytes();
    if (bytes > this.peak) {
      this.peak = bytes;
      if (this.hooks.memory) this.hooks.memory(bytes);
    }
    if (mayThrow && bytes > this.limits.memory_bytes_max) throw this.stop('memory');
  }
}

// The shim's imports, each checking memory first; and its args_sizes_get, which counts UTF-16
// units where WASI wants UTF-8 bytes (args_get writes UTF-8, so a non-ASCII argument would
// overrun the guest's buffer).
function importsOf(wasi, host, args) {
  const imports = {};
  for (const [name, call] of Object.entries(wasi.wasiImport)) {
    imports[name] = (...params) => {
      host.watchMemory();
      return call(...params);
    };
  }
  const encoder = new TextEncoder();
  const argBytes = args.reduce((sum, arg) => sum + encoder.encode(arg).byteLength + 1, 0);
  imports.args_sizes_get = (argcPtr, sizePtr) => {
    host.watchMemory();
    const view = new DataView(wasi.inst.exports.memory.buffer);
    view.setUint32(argcPtr, args.length, true);
    view.setUint32(sizePtr, argBytes, true);
    return defs.ERRNO_SUCCESS;
  };
  return imports;
}

// ---- outcomes ----

export function cutMessage(text, bytesMax = MESSAGE_BYTES_MAX) {
  const bytes = new TextEncoder().encode(text);
  if (bytes.byteLength <= bytesMax) return text;
  // Keep whole characters: decoding a cut sequence would leave a replacement character.
  let end = bytesMax - 3;
  while (end > 0 && (bytes[end] & 0xc0) === 0x80) end -= 1;
  return new TextDecoder().decode(bytes.subarray(0, end)) + '…';
}

function trapMessage(error) {
  if (error instanceof RangeError && /call stack/i.test(error.message)) return 'call stack exhausted';
  if (error instanceof Error) {
    return error instanceof WebAssembly.RuntimeError ? error.message : `${error.name}: ${error.message}`;
  }
  return String(error);
}

function outcomeOf(host, ran) {
  if (host.stopped) {
    return host.stopped.kind === 'memory'
      ? { kind: 'memory_limit' }
      : { kind: 'output_too_large', what: host.stopped.what };
  }
  if (host.peak > host.limits.memory_bytes_max) return { kind: 'memory_limit' };
  if ('code' in ran) return ran.code === 0 ? { kind: 'succeeded' } : { kind: 'exit_code', code: ran.code };
  return { kind: 'trap', message: cutMessage(trapMessage(ran.error)) };
}

const RAN = new Set(['succeeded', 'exit_code', 'trap']);

// The agent's `settle`: the disk measured once more now that nothing writes (it may have
// been passed by a guest that wrote and ended at once), then /output collected; a collecting
// error changes only a success.
function settle(outcome, host) {
  const { limits } = host;
  if (RAN.has(outcome.kind)) {
    const usage = host.writable.measure();
    if (usage.bytes > limits.output_bytes_max) outcome = { kind: 'output_too_large', what: '/output' };
    else if (usage.entries > entriesMax(limits)) outcome = { kind: 'output_too_large', what: '/output file count' };
  }
  const collected = collect(host.output, limits);
  if (collected.error) {
    return { outcome: outcome.kind === 'succeeded' ? collected.error : outcome, files: [] };
  }
  return { outcome, files: collected.files };
}

// Control characters as Rust's `char::is_control` sees them (Unicode Cc).
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;

// The files under /output, sorted by path as the agent sorts them (by UTF-8 bytes, which is
// code point order), with every limit checked.
export function collect(output, limits) {
  const files = [];
  let bytes = 0;
  const pending = [[output, '', 0]];
  while (pending.length) {
    const [dir, prefix, depth] = pending.pop();
    if (depth > DEPTH_MAX) {
      return { error: { kind: 'invalid_output', message: `directories nested deeper than ${DEPTH_MAX} levels` } };
    }
    for (const [name, entry] of dir.contents) {
      if (CONTROL.test(name) || name.includes('\\')) {
        return {
          error: {
            kind: 'invalid_output',
            message: cutMessage(`the name ${JSON.stringify(name)} in /output/${prefix} holds a control character ` +
              "or '\\'; name output files with printable characters"),
          },
        };
      }
      const path = prefix ? `${prefix}/${name}` : name;
      if (entry instanceof Directory) {
        pending.push([entry, path, depth + 1]);
      } else if (entry instanceof File) {
        bytes += entry.data.byteLength;
        if (bytes > limits.output_bytes_max) return { error: { kind: 'output_too_large', what: '/output' } };
        if (files.length >= limits.output_files_max) {
          return { error: { kind: 'output_too_large', what: '/output file count' } };
        }
        files.push({ path, data: entry.data.slice() });
      } else {
        return { error: { kind: 'invalid_output', message: cutMessage(`/output/${path} is not a regular file or directory`) } };
      }
    }
  }
  files.sort((a, b) => compareCodePoints(a.path, b.path));
  return { files };
}

function compareCodePoints(a, b) {
  const x = [...a];
  const y = [...b];
  for (let i = 0; i < Math.min(x.length, y.length); i += 1) {
    const d = x[i].codePointAt(0) - y[i].codePointAt(0);
    if (d) return d;
  }
  return x.length - y.length;
}

export function blake3Hex(bytes) {
  let out = '';
  for (const b of blake3(bytes)) out += b.toString(16).padStart(2, '0');
  return out;
}

// ---- running ----

export function zeroUsage() {
  return { fuel_used: 0, wall_ms: 0, memory_peak_bytes: 0, output_bytes: 0, compile_ms: 0 };
}

function ended(outcome, usage = {}) {
  return { outcome, usage: { ...zeroUsage(), ...usage }, stdout: null, stderr: null, outputs: [] };
}

// The module, compiled here when the page had none ready: {module, compileMs} or {outcome}.
async function ready(order, hooks) {
  if (order.module) return { module: order.module, compileMs: 0 };
  const started = performance.now();
  let capped;
  try {
    capped = capMemory(new Uint8Array(order.wasm), capPages(order.limits.memory_bytes_max));
  } catch {
    capped = order.wasm; // not a module that parses: compile() says why
  }
  if (capped === null) return { outcome: { kind: 'memory_limit' } };
  let module;
  try {
    module = await WebAssembly.compile(capped);
  } catch (error) {
    return { outcome: { kind: 'module_rejected', message: cutMessage(`cannot compile: ${error.message}`) } };
  }
  const compileMs = Math.round(performance.now() - started);
  if (hooks.compiled) hooks.compiled(module, compileMs);
  return { module, compileMs };
}

// ---- the memory cap ----
//
// A browser cannot refuse a guest's memory.grow as wasmtime's limiter does, and it sees no
// WASI call in a loop that only allocates. So the module's own memory is given a maximum
// before it compiles: twice the attempt's limit. Past the limit, the next WASI call or the
// end of the run reports memory_limit, as an agent does; the cap only keeps a guest that
// asks for far more at once from taking the device's memory (its grow fails, as on an agent,
// and the guest usually traps).

const PAGE_BYTES = 65536;
const PAGES_MAX = 65536; // 4 GiB, all a 32-bit memory has

export function capPages(memoryBytesMax) {
  return Math.min(PAGES_MAX, Math.ceil((2 * memoryBytesMax) / PAGE_BYTES));
}

// `bytes` with every memory the module defines given a maximum of at most `pages`; the same
// bytes when there is nothing to cap (no memory section, or a 64-bit or shared memory, which
// compile() refuses or the checks cover); null when a memory's minimum is already past it.
export function capMemory(bytes, pages) {
  const sections = sectionsOf(bytes);
  const memory = sections && sections.find((s) => s.id === 5);
  if (!memory) return bytes;
  const body = bytes.subarray(memory.start, memory.end);
  let at = 0;
  const [count, afterCount] = leb(body, at);
  at = afterCount;
  const out = [...uleb(count)];
  for (let i = 0; i < count; i += 1) {
    const flags = body[at];
    if (flags & 0x06) return bytes; // shared or 64-bit: left to compile() and the checks
    const [min, afterMin] = leb(body, at + 1);
    at = afterMin;
    let max = PAGES_MAX;
    if (flags & 0x01) [max, at] = leb(body, at);
    if (min > pages) return null;
    out.push(0x01, ...uleb(min), ...uleb(Math.min(max, pages)));
  }
  const section = [5, ...uleb(out.length), ...out];
  const result = new Uint8Array(memory.headerStart + section.length + (bytes.length - memory.end));
  result.set(bytes.subarray(0, memory.headerStart), 0);
  result.set(section, memory.headerStart);
  result.set(bytes.subarray(memory.end), memory.headerStart + section.length);
  return result;
}

// The sections of a module: {id, headerStart, start, end}; null when it is not one.
function sectionsOf(bytes) {
  if (bytes.length < 8 || bytes[0] !== 0 || bytes[1] !== 0x61 || bytes[2] !== 0x73 || bytes[3] !== 0x6d) {
    return null;
  }
  const sections = [];
  let at = 8;
  while (at < bytes.length) {
    const headerStart = at;
    const id = bytes[at];
    const [size, start] = leb(bytes, at + 1);
    if (start + size > bytes.length) return null;
    sections.push({ id, headerStart, start, end: start + size });
    at = start + size;
  }
  return sections;
}

// An unsigned LEB128 of at most 32 bits at `at`: [value, where it ends].
function leb(bytes, at) {
  let value = 0;
  let shift = 0;
  for (;;) {
    const byte = bytes[at];
    if (byte === undefined || shift > 28) throw new Error('the module is cut short');
    value += (byte & 0x7f) * 2 ** shift;
    at += 1;
    if (!(byte & 0x80)) return [value, at];
    shift += 7;
  }
}

function uleb(value) {
  const out = [];
  do {
    let byte = value % 128;
    value = Math.floor(value / 128);
    if (value) byte |= 0x80;
    out.push(byte);
  } while (value);
  return out;
}

function hasStart(module) {
  return WebAssembly.Module.exports(module).some((e) => e.name === '_start' && e.kind === 'function');
}

// Instantiates and runs `_start`: {code} when it returned or exited, {error} when it trapped
// or was stopped, or {outcome} when the module cannot be linked here.
async function instantiateAndStart(module, host, args, env) {
  const wasi = new WASI(args, env, host.fds, { debug: false });
  const imports = importsOf(wasi, host, args);
  let instance;
  try {
    instance = await WebAssembly.instantiate(module, { wasi_snapshot_preview1: imports });
  } catch (error) {
    if (error instanceof WebAssembly.LinkError || error instanceof TypeError) {
      return { outcome: { kind: 'module_rejected', message: cutMessage(`cannot instantiate: ${error.message}`) } };
    }
    return { error }; // its start function trapped or was stopped
  }
  host.attach(instance);
  if (!(instance.exports.memory instanceof WebAssembly.Memory)) {
    const message = 'the module exports no memory named `memory`; build it as a WASI command';
    return { outcome: { kind: 'module_rejected', message } };
  }
  try {
    host.watchMemory(); // an initial memory past the limit fails before it runs
    return { code: wasi.start(instance) };
  } catch (error) {
    return { error };
  }
}

// Runs one attempt to its end. `order`: {module | wasm, args (argv[0] first), env ['K=V'],
// stdin, inputs [{name, data}], mounts [{guest_path, files: [{path, data}]}], limits}.
// `hooks`: compiled(module, ms), started(), memory(bytes), all optional. Returns {outcome,
// usage, stdout, stderr, outputs}: stdout and stderr {data, hash} when not empty, outputs
// [{path, hash, size_bytes, data}].
export async function runTask(order, hooks = {}) {
  const prepared = await ready(order, hooks);
  if (prepared.outcome) return ended(prepared.outcome);
  const compileMs = prepared.compileMs;
  if (!hasStart(prepared.module)) {
    return ended({ kind: 'module_rejected', message: 'the module exports no `_start() -> ()`; build it as a WASI command' },
      { compile_ms: compileMs });
  }
  if (hooks.started) hooks.started();
  const started = performance.now();
  const host = new Host(order, hooks);
  const ran = await instantiateAndStart(prepared.module, host, order.args, order.env);
  if (ran.outcome) return ended(ran.outcome, { compile_ms: compileMs, wall_ms: Math.round(performance.now() - started) });
  host.watchMemory(false);
  const { outcome, files } = settle(outcomeOf(host, ran), host);
  const wallMs = Math.round(performance.now() - started);
  const outputs = files.map((f) => ({ path: f.path, hash: blake3Hex(f.data), size_bytes: f.data.byteLength, data: f.data }));
  return {
    outcome,
    usage: {
      fuel_used: 0,
      wall_ms: wallMs,
      memory_peak_bytes: host.peak,
      output_bytes: outputs.reduce((sum, f) => sum + f.size_bytes, 0),
      compile_ms: compileMs,
    },
    stdout: stream(host.stdout.bytes()),
    stderr: stream(host.stderr.bytes()),
    outputs,
  };
}

// The agent uploads stdout and stderr only when they hold something.
function stream(data) {
  return data.byteLength ? { data, hash: blake3Hex(data) } : null;
}

// The buffers of a result, to transfer rather than copy to the page.
export function transfers(result) {
  const buffers = new Set();
  for (const part of [result.stdout, result.stderr, ...(result.outputs || [])]) {
    if (part && part.data) buffers.add(part.data.buffer);
  }
  return [...buffers];
}
