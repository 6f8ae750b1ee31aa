// Joining the pool as a node: what this browser offers, and the signed registration
// (`wire::auth::registration_message`): the key proves itself by signing every field of the
// request with a fresh nonce from `POST /v1/nodes/challenge`.

import { blake3 } from '../../vendor/noble-hashes/blake3.js';
import { hex, sign } from './identity.js';
import { postJson } from './client.js';
import { wasmFeatures } from './features.js';

export const AGENT_VERSION = 'web-1';
const GIB = 1024 ** 3;
// The largest module this node compiles: a phone's browser is no place for more.
export const MODULE_BYTES_MAX = 64 * 1024 * 1024;
// A node's name as the Lend page takes it: short enough to read in a list (the wire allows 128).
const NAME_BYTES_MAX = 64;
const LABEL_BYTES_MAX = 128;
const LABELS_MAX = 64;
const DOMAIN = 'crowdcloud-register-v2\n';

// What this browser lends: `cores` is the owner's slots, since a tab gets no more threads.
export function capabilities(cores) {
  const deviceGib = Math.min(Number(navigator.deviceMemory) || 4, 4);
  return {
    cores,
    memory_bytes: Math.round(deviceGib * GIB),
    disk_free_bytes: 0,
    arch: 'wasm32',
    os: 'browser',
    module_bytes_max: MODULE_BYTES_MAX,
    wasi_interfaces: [],
    wasm_features: wasmFeatures(),
    runtime: 'browser',
  };
}

// ---- the owner's words, checked as the coordinator checks them ----

// A name of 1 to 64 bytes without control characters, or null.
export function checkName(name) {
  const text = name.trim();
  if (!text) return null;
  if (new TextEncoder().encode(text).byteLength > NAME_BYTES_MAX) {
    throw new Error(`the name is longer than ${NAME_BYTES_MAX} bytes; shorten it`);
  }
  if (/[\u0000-\u001f\u007f-\u009f]/.test(text)) throw new Error('the name holds control characters; remove them');
  return text;
}

// `key=value` pairs separated by spaces or commas, as `wire::validate::labels` takes them.
export function parseLabels(text) {
  const labels = {};
  const ok = (part) => part.length >= 1 && part.length <= LABEL_BYTES_MAX && /^[A-Za-z0-9\-_./:]+$/.test(part);
  for (const pair of text.split(/[\s,]+/).filter(Boolean)) {
    const at = pair.indexOf('=');
    const key = at < 0 ? pair : pair.slice(0, at);
    const value = at < 0 ? '' : pair.slice(at + 1);
    if (!ok(key) || !ok(value)) {
      throw new Error(`label ${JSON.stringify(pair)}: write key=value, each 1 to ${LABEL_BYTES_MAX} ` +
        'letters, digits or - _ . / :');
    }
    labels[key] = value;
  }
  if (Object.keys(labels).length > LABELS_MAX) throw new Error(`give at most ${LABELS_MAX} labels`);
  return labels;
}

// ---- the signed message ----

// The keys of a BTreeMap in its order: by bytes. Labels are ASCII, where that is code-unit order.
function sortedKeys(map) {
  return Object.keys(map).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
}

// The labels as serde_json writes a BTreeMap. Not JSON.stringify of an object: JavaScript
// lists integer-like keys ("7", "10") first and in numeric order, which would sign other bytes.
function labelsJson(labels) {
  return '{' + sortedKeys(labels).map((k) => JSON.stringify(k) + ':' + JSON.stringify(labels[k])).join(',') + '}';
}

function capabilitiesJson(caps) {
  return JSON.stringify({
    cores: caps.cores,
    memory_bytes: caps.memory_bytes,
    disk_free_bytes: caps.disk_free_bytes,
    arch: caps.arch,
    os: caps.os,
    module_bytes_max: caps.module_bytes_max,
    wasi_interfaces: caps.wasi_interfaces,
    wasm_features: caps.wasm_features,
    runtime: caps.runtime,
  });
}

export function tokenHash(token) {
  return hex(blake3(new TextEncoder().encode(token)));
}

// The exact bytes a registration signs: the domain tag, then the JSON of every field but the
// signature in the order of `SignedRegistration`, with the join token as its BLAKE3 hash.
// serde_json and JSON.stringify write these strings and numbers alike.
export function registrationMessage(request) {
  const json = '{' + [
    '"nonce":' + JSON.stringify(request.nonce),
    '"join_token_hash":' + JSON.stringify(tokenHash(request.join_token)),
    '"public_key":' + JSON.stringify(request.public_key),
    '"name":' + JSON.stringify(request.name),
    '"capabilities":' + capabilitiesJson(request.capabilities),
    '"labels":' + labelsJson(request.labels),
    '"slots":' + JSON.stringify(request.slots),
    '"agent_version":' + JSON.stringify(request.agent_version),
  ].join(',') + '}';
  return new TextEncoder().encode(DOMAIN + json);
}

// The request for `identity` with `settings` ({joinToken, name, labels, slots}) and `nonce`,
// signed last since the signature covers every other field.
export async function signedRequest(identity, settings, nonce) {
  const request = {
    join_token: settings.joinToken,
    public_key: identity.publicKey,
    signature: '',
    nonce,
    name: settings.name || `browser-${identity.publicKey.slice(0, 6)}`,
    capabilities: capabilities(settings.slots),
    labels: settings.labels,
    slots: settings.slots,
    agent_version: AGENT_VERSION,
  };
  request.signature = await sign(identity.privateKey, registrationMessage(request));
  return request;
}

// One registration with a fresh challenge: {node_id, node_token, lease_ms, heartbeat_ms,
// pool_name}, or the coordinator's refusal (NodeApiError).
// A refusal's `stage` tells a join token the pool does not take ('challenge') from a nonce it
// no longer knows ('register'), which a new challenge mends.
export async function register(identity, settings, signal) {
  const stage = (name) => (error) => {
    error.stage = name;
    throw error;
  };
  const challenge = await postJson('/v1/nodes/challenge', { join_token: settings.joinToken }, { signal, timeoutMs: 30_000 })
    .catch(stage('challenge'));
  const request = await signedRequest(identity, settings, challenge.nonce);
  return postJson('/v1/nodes/register', request, { signal, timeoutMs: 30_000 }).catch(stage('register'));
}
