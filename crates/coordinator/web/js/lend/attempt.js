// One attempt on this page, as the agent's runner does it: fetch what it needs, run it in a
// worker (one attempt at a time each), upload what it left (stdout and stderr when not empty,
// every /output file, each distinct content once) and build its report.
//
// Two signals stop it: `signal` until its guest has ended (the pool cancelled it, or the page
// gives it back), `uploadSignal` after that, which only the pool's cancel aborts: a result
// that arrived is worth more than giving the task back.

import { NodeApiError, isAbort, sleep } from './client.js';
import { MODULE_BYTES_MAX } from './register.js';
import { cutMessage, zeroUsage } from './sandbox.js';

export const WORKER_URL = '/app/js/lend/worker.js';
// How long fetches and uploads are retried while the coordinator cannot answer.
const RETRY_FOR_MS = 10 * 60 * 1000;
const RETRY_DELAY_MAX_MS = 5000;

export function bareReport(grant, outcome, usage = zeroUsage()) {
  return { attempt_id: grant.attempt_id, outcome, usage, stdout: null, stderr: null, outputs: [] };
}

function nodeError(message) {
  return { kind: 'node_error', message: cutMessage(message) };
}

// Thrown to end an attempt early with an outcome to report.
class Ended extends Error {
  constructor(outcome) {
    super(outcome.message || outcome.kind);
    this.outcome = outcome;
  }
}

// `call()` until it succeeds, retrying transient failures with backoff while `signal` holds.
export async function retrying(what, call, signal) {
  const giveUpAt = Date.now() + RETRY_FOR_MS;
  let delay = 100;
  for (;;) {
    try {
      return await call();
    } catch (error) {
      if (isAbort(error) || (signal && signal.aborted)) throw new DOMException('stopped', 'AbortError');
      if (!(error instanceof NodeApiError) || !error.transient || Date.now() + delay > giveUpAt) {
        throw new Error(`cannot ${what}: ${error.message}`);
      }
      await sleep(delay, signal);
      delay = Math.min(delay * 2, RETRY_DELAY_MAX_MS);
    }
  }
}

// ---- what the attempt needs ----

function moduleKey(hash, memoryBytesMax) {
  return `${hash}/${memoryBytesMax}`;
}

// {module} ready from memory, or {wasm} to compile. A module is compiled with its memory
// capped for the attempt's limit (see sandbox.js's capMemory), so the cache keeps it per cap.
async function moduleOf(node, runtime, memoryBytesMax, signal) {
  const ready = node.modules.get(moduleKey(runtime.module, memoryBytesMax));
  if (ready) return { module: ready };
  // Its bytes are not kept: the compiled module is.
  const wasm = await node.blob(runtime.module, signal, false);
  if (wasm.byteLength > MODULE_BYTES_MAX) {
    throw new Ended({
      kind: 'module_rejected',
      message: `the module is ${wasm.byteLength} bytes, more than the ${MODULE_BYTES_MAX} a browser node compiles`,
    });
  }
  return { wasm };
}

// The worker's order: module, argv (the job's name first, as the agent gives it), env, stdin,
// inputs, mounts and limits.
async function orderOf(node, runtime, grant, signal) {
  const fetchOne = (hash) => node.blob(hash, signal);
  const memoryBytesMax = grant.memory_bytes_max || runtime.limits.memory_bytes_max;
  const { module, wasm } = await moduleOf(node, runtime, memoryBytesMax, signal);
  const stdin = grant.stdin ? await fetchOne(grant.stdin) : new ArrayBuffer(0);
  const inputs = [];
  for (const input of grant.inputs) inputs.push({ name: input.name, data: await fetchOne(input.blob) });
  const mounts = [];
  for (const mount of runtime.mounts) {
    const files = await Promise.all(mount.files.map(async (f) => ({ path: f.path, data: await fetchOne(f.blob) })));
    mounts.push({ guest_path: mount.guest_path, files });
  }
  const limits = { ...runtime.limits };
  if (grant.memory_bytes_max) limits.memory_bytes_max = grant.memory_bytes_max;
  return {
    module,
    wasm,
    args: [runtime.name, ...grant.args],
    env: Object.keys(runtime.env).sort().map((k) => `${k}=${runtime.env[k]}`),
    stdin,
    inputs,
    mounts,
    limits,
  };
}

// ---- running it ----

// Workers that ran an attempt to its end wait here for the next one: a new worker loads its
// modules again (the app's files are served without validators, so all of them, every time),
// which costs more than a short task. A worker that was stopped is never kept: terminating it
// is what stopped its guest.
export class WorkerPool {
  constructor(idleMax) {
    this.idleMax = idleMax;
    this.idle = [];
  }

  take() {
    return this.idle.pop() || new Worker(WORKER_URL, { type: 'module' });
  }

  give(worker) {
    if (this.idle.length < this.idleMax) this.idle.push(worker);
    else worker.terminate();
  }

  clear() {
    for (const worker of this.idle.splice(0)) worker.terminate();
  }
}

// A worker whose guest grew its memory this far is not kept: its memory goes back only when
// the worker's heap is collected, and a terminated worker gives it back at once.
const REUSE_PEAK_MAX = 256 * 1024 * 1024;

// Runs `order` in a worker of `node.workers` until it ends, passes its deadline or `signal`
// aborts: {result} | {deadline, wall_ms, memory_peak_bytes, compile_ms} | {failed} | {stopped}.
function runInWorker(node, runtime, order, signal) {
  return new Promise((resolve) => {
    const worker = node.workers.take();
    const deadlineMs = runtime.limits.deadline_ms;
    let timer = null;
    let startedAt = null;
    let peak = 0;
    let compileMs = 0;
    const end = (value, reusable = false) => {
      clearTimeout(timer);
      worker.removeEventListener('message', onMessage);
      worker.removeEventListener('error', onError);
      worker.removeEventListener('messageerror', onMessageError);
      signal.removeEventListener('abort', onAbort);
      if (reusable) node.workers.give(worker);
      else worker.terminate();
      resolve(value);
    };
    // The deadline bounds compiling too, and starts again from zero when the guest starts.
    const arm = () => {
      clearTimeout(timer);
      timer = setTimeout(() => end({
        deadline: true,
        wall_ms: startedAt === null ? 0 : Math.round(performance.now() - startedAt),
        memory_peak_bytes: peak,
        compile_ms: compileMs,
      }), Math.min(deadlineMs, 2 ** 31 - 1));
    };
    const onAbort = () => end({ stopped: true });
    const onMessage = ({ data }) => {
      if (data.type === 'compiled') {
        compileMs = data.compile_ms;
        if (data.module) node.modules.put(moduleKey(runtime.module, order.limits.memory_bytes_max), data.module);
      } else if (data.type === 'started') {
        startedAt = performance.now();
        arm();
      } else if (data.type === 'memory') {
        peak = Math.max(peak, data.bytes);
      } else if (data.type === 'done') {
        end({ result: data.result }, Math.max(peak, data.result.usage.memory_peak_bytes) < REUSE_PEAK_MAX);
      }
    };
    const onError = (event) => {
      event.preventDefault();
      end({ failed: `the task's worker failed: ${event.message || 'it could not start'}` });
    };
    const onMessageError = () => end({ failed: "the task's worker sent what the page cannot read" });
    worker.addEventListener('message', onMessage);
    worker.addEventListener('error', onError);
    worker.addEventListener('messageerror', onMessageError);
    signal.addEventListener('abort', onAbort, { once: true });
    arm();
    worker.postMessage(order);
  });
}

// ---- what it left ----

// Uploads stdout, stderr and the /output files, each distinct content once, and gives the
// report's references to them.
async function upload(node, grant, result, signal) {
  const distinct = new Map();
  const ref = (part) => {
    if (!part) return null;
    distinct.set(part.hash, part.data);
    return { hash: part.hash, size_bytes: part.data.byteLength };
  };
  const stdout = ref(result.stdout);
  const stderr = ref(result.stderr);
  const outputs = result.outputs.map((file) => {
    ref(file);
    return { path: file.path, hash: file.hash, size_bytes: file.size_bytes };
  });
  await Promise.all([...distinct].map(([hash, data]) => node.put(hash, data, grant.attempt_id, signal)));
  return { stdout, stderr, outputs };
}

async function reportOf(node, grant, ran, signal) {
  if (ran.failed) return bareReport(grant, nodeError(ran.failed));
  if (ran.deadline) {
    return bareReport(grant, { kind: 'deadline_exceeded' }, {
      ...zeroUsage(), wall_ms: ran.wall_ms, memory_peak_bytes: ran.memory_peak_bytes, compile_ms: ran.compile_ms,
    });
  }
  const { result } = ran;
  try {
    const refs = await upload(node, grant, result, signal);
    return { attempt_id: grant.attempt_id, outcome: result.outcome, usage: result.usage, ...refs };
  } catch (error) {
    if (isAbort(error)) throw error;
    return bareReport(grant, nodeError(`could not upload the outputs: ${error.message}`), result.usage);
  }
}

// Runs `grant` of `runtime` on this page. `node` gives blob(hash, signal), put(hash, data,
// attempt, signal), the module cache `modules` and the WorkerPool `workers`. Resolves to
// {report} or {stopped}; onPhase('fetching' | 'running' | 'uploading') says where it is.
export async function runAttempt(node, runtime, grant, signal, uploadSignal, onPhase = () => {}) {
  let order;
  try {
    onPhase('fetching');
    order = await orderOf(node, runtime, grant, signal);
  } catch (error) {
    if (signal.aborted) return { stopped: true };
    if (error instanceof Ended) return { report: bareReport(grant, error.outcome) };
    return { report: bareReport(grant, nodeError(error.message)) };
  }
  onPhase('running');
  const ran = await runInWorker(node, runtime, order, signal);
  if (ran.stopped) return { stopped: true };
  onPhase('uploading');
  try {
    return { report: await reportOf(node, grant, ran, uploadSignal) };
  } catch {
    return { stopped: true };
  }
}
