// The node side of `/v1/`, as the agent's client speaks it: JSON bodies, the node token as
// `Authorization: Bearer ccn_…`. Apart from api.js on purpose, but for how a refusal's body
// reads: a 401 here means this node's session is gone (it registers again), not that the
// person must sign in again.

import { refusalOf } from '../api.js';

export class NodeApiError extends Error {
  constructor(status, message, code) {
    super(message);
    this.name = 'NodeApiError';
    this.status = status; // 0 when the coordinator could not be reached
    this.code = code || null;
  }

  // Worth trying again as it is: the coordinator is away, restarting or busy.
  get transient() {
    return this.status === 0 || this.status === 408 || this.status === 429 || this.status >= 500;
  }
}

export function isAbort(error) {
  return Boolean(error) && (error.name === 'AbortError' || error.name === 'TimeoutError');
}

// A signal that aborts with `signal` or after `ms`, whichever comes first.
function bounded(signal, ms) {
  if (!ms) return { signal, done: () => {} };
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(new DOMException('timed out', 'TimeoutError')), ms);
  const follow = () => controller.abort(signal.reason);
  if (signal) {
    if (signal.aborted) follow();
    else signal.addEventListener('abort', follow, { once: true });
  }
  return {
    signal: controller.signal,
    done: () => {
      clearTimeout(timer);
      if (signal) signal.removeEventListener('abort', follow);
    },
  };
}

async function errorOf(response) {
  const { message, code } = await refusalOf(response);
  return new NodeApiError(response.status,
    message || `the coordinator answered ${response.status} ${response.statusText}`.trim(), code);
}

// One request: `read(response)` of an ok answer, or NodeApiError (or the abort). `timeoutMs`
// bounds the whole exchange, long polls and reading the body included.
export async function send(method, path, { token, json, body, signal, timeoutMs, keepalive } = {},
  read = () => undefined) {
  const headers = new Headers();
  if (token) headers.set('Authorization', 'Bearer ' + token);
  const init = { method, headers, credentials: 'omit', cache: 'no-store', keepalive: Boolean(keepalive) };
  if (json !== undefined) {
    headers.set('Content-Type', 'application/json');
    init.body = JSON.stringify(json);
  } else if (body !== undefined) {
    headers.set('Content-Type', 'application/octet-stream');
    init.body = body;
  }
  const limit = bounded(signal, timeoutMs);
  init.signal = limit.signal;
  try {
    const response = await fetch(path, init);
    if (!response.ok) throw await errorOf(response);
    return await read(response);
  } catch (error) {
    if (error instanceof NodeApiError || error instanceof SyntaxError) throw error;
    if (signal && signal.aborted) throw new DOMException('stopped', 'AbortError');
    if (isAbort(error)) throw new NodeApiError(0, `no answer from the coordinator in ${Math.round(timeoutMs / 1000)} s`);
    throw new NodeApiError(0, `cannot reach the coordinator (${error.message})`);
  } finally {
    limit.done();
  }
}

export function postJson(path, json, options = {}) {
  return send('POST', path, { ...options, json }, async (response) => {
    const text = await response.text();
    return text ? JSON.parse(text) : {};
  });
}

export function getJson(path, options = {}) {
  return send('GET', path, options, (response) => response.json());
}

export function getBytes(path, options = {}) {
  return send('GET', path, options, (response) => response.arrayBuffer());
}

// Waits `ms`, or less if `signal` aborts (then it rejects with the abort).
export function sleep(ms, signal) {
  return new Promise((resolve, reject) => {
    if (signal && signal.aborted) {
      reject(new DOMException('stopped', 'AbortError'));
      return;
    }
    const timer = setTimeout(() => {
      if (signal) signal.removeEventListener('abort', stop);
      resolve();
    }, ms);
    const stop = () => {
      clearTimeout(timer);
      reject(new DOMException('stopped', 'AbortError'));
    };
    if (signal) signal.addEventListener('abort', stop, { once: true });
  });
}

// At most `count` transfers at once. A browser opens at most 6 HTTP/1.1 connections to one
// server, shared by every tab; the presence request and the parked lease hold two, and a
// heartbeat stuck behind downloads would let the leases run out.
export class Gate {
  constructor(count) {
    this.free = count;
    this.waiting = [];
  }

  async run(task) {
    if (this.free > 0) this.free -= 1;
    else await new Promise((resolve) => this.waiting.push(resolve));
    try {
      return await task();
    } finally {
      const next = this.waiting.shift();
      if (next) next();
      else this.free += 1;
    }
  }
}
