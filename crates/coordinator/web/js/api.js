// The coordinator's HTTP+JSON API (`/v1/`, described by /v1/openapi.json). Every call but
// /v1/health carries the requester's API token as `Authorization: Bearer …`; the token lives in
// sessionStorage and never goes into a URL. An answer of 401 forgets the token and calls the
// handler main.js sets, which shows the sign-in form with the server's message.

const TOKEN_KEY = 'crowdcloud-token';

export class ApiError extends Error {
  constructor(status, message, code) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.code = code || null;
  }
}

let unauthorized = () => {};

export function onUnauthorized(handler) {
  unauthorized = handler;
}

export function token() {
  try {
    return sessionStorage.getItem(TOKEN_KEY) || '';
  } catch {
    return '';
  }
}

export function setToken(value) {
  sessionStorage.setItem(TOKEN_KEY, value);
}

export function clearToken() {
  try {
    sessionStorage.removeItem(TOKEN_KEY);
  } catch {
    // nothing to forget
  }
}

export function isAbort(error) {
  return error && (error.name === 'AbortError' || error.name === 'TimeoutError');
}

function headers(extra) {
  const h = new Headers(extra || {});
  const t = token();
  if (t) h.set('Authorization', 'Bearer ' + t);
  return h;
}

// What the coordinator said of a refusal: the `message` and `code` of its `ApiError` body,
// empty when the body is not one.
export async function refusalOf(response) {
  let message = '';
  let code = null;
  try {
    const body = await response.json();
    if (body && typeof body.message === 'string') message = body.message;
    if (body && typeof body.code === 'string') code = body.code;
  } catch {
    // not JSON
  }
  return { message, code };
}

// The error of a response that is not ok: the server's `{"message": …}` when there is one.
async function errorOf(response) {
  let { message, code } = await refusalOf(response);
  if (!message) {
    message = response.status === 404
      ? `not found (${response.url.replace(location.origin, '')})`
      : `the coordinator answered ${response.status} ${response.statusText}`.trim();
  }
  return new ApiError(response.status, message, code);
}

function fail(error) {
  if (error.status === 401) {
    clearToken();
    unauthorized(error.message);
  }
  throw error;
}

// fetch with the token; resolves to the Response when it is ok (or one of `accept`ed statuses),
// throws ApiError otherwise.
export async function request(method, path, { body, json, signal, accept = [] } = {}) {
  const init = { method, headers: headers(), signal, credentials: 'omit', cache: 'no-store' };
  if (json !== undefined) {
    init.headers.set('Content-Type', 'application/json');
    init.body = JSON.stringify(json);
  } else if (body !== undefined) {
    init.body = body;
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (error) {
    if (isAbort(error)) throw error;
    throw new ApiError(0, `cannot reach the coordinator (${error.message})`);
  }
  if (response.ok || accept.includes(response.status)) return response;
  return fail(await errorOf(response));
}

export async function get(path, options) {
  return (await request('GET', path, options)).json();
}

export async function post(path, json, options = {}) {
  const response = await request('POST', path, { ...options, json: json === undefined ? {} : json });
  const textBody = await response.text();
  return textBody ? JSON.parse(textBody) : {};
}

// Whether the coordinator holds a blob this requester may use.
export async function hasBlob(hash, options = {}) {
  const response = await request('HEAD', `/v1/blobs/${hash}`, { ...options, accept: [404] });
  return response.status !== 404;
}

// A blob's bytes, with the Content-Type the server gave them.
export async function getBlob(path, options) {
  const response = await request('GET', path, options);
  const type = response.headers.get('Content-Type') || 'application/octet-stream';
  return { blob: await response.blob(), type };
}

// PUT /v1/blobs/{hash} of a File or Blob, streamed by XMLHttpRequest so the upload's progress
// can be shown (fetch cannot report it). onProgress(sentBytes, totalBytes).
export function putBlob(hash, data, { onProgress, signal } = {}) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open('PUT', `/v1/blobs/${hash}`);
    const t = token();
    if (t) xhr.setRequestHeader('Authorization', 'Bearer ' + t);
    xhr.setRequestHeader('Content-Type', 'application/octet-stream');
    xhr.upload.addEventListener('progress', (event) => {
      if (onProgress && event.lengthComputable) onProgress(event.loaded, event.total);
    });
    xhr.addEventListener('load', () => {
      if (xhr.status >= 200 && xhr.status < 300) {
        resolve();
        return;
      }
      let message = '';
      let code = null;
      try {
        const body = JSON.parse(xhr.responseText);
        message = body.message || '';
        code = body.code || null;
      } catch {
        // not JSON
      }
      const error = new ApiError(xhr.status,
        message || `the upload was refused (${xhr.status} ${xhr.statusText})`, code);
      try {
        fail(error);
      } catch (e) {
        reject(e);
      }
    });
    xhr.addEventListener('error', () => reject(new ApiError(0, 'the upload failed: cannot reach the coordinator')));
    xhr.addEventListener('abort', () => reject(new DOMException('upload aborted', 'AbortError')));
    if (signal) {
      if (signal.aborted) {
        reject(new DOMException('upload aborted', 'AbortError'));
        return;
      }
      signal.addEventListener('abort', () => xhr.abort(), { once: true });
    }
    xhr.send(data);
  });
}

// GET /v1/health: no token needed.
export async function health(options = {}) {
  const response = await fetch('/v1/health', { signal: options.signal, credentials: 'omit', cache: 'no-store' });
  if (!response.ok) throw await errorOf(response);
  return response.json();
}

// What views receive: the calls above, in one object.
export const api = { request, get, post, hasBlob, getBlob, putBlob, health, token, isAbort, ApiError };
