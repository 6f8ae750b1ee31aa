// Uploading files as blobs: a blob's name is the BLAKE3 hash of its bytes (64 lowercase hex).
// Each file is hashed in slices (so a large one is never held whole), then asked for with HEAD
// and sent with PUT only when the coordinator does not hold it yet.

import { blake3 } from '../vendor/noble-hashes/blake3.js';

const SLICE = 4 * 1024 * 1024;

function hex(bytes) {
  let out = '';
  for (const b of bytes) out += b.toString(16).padStart(2, '0');
  return out;
}

export function blake3Hex(bytes) {
  return hex(blake3(bytes));
}

// BLAKE3 of a File or Blob; onProgress(doneBytes, totalBytes).
export async function hashBlob(blob, { onProgress, signal } = {}) {
  const hasher = blake3.create({});
  for (let offset = 0; offset < blob.size; offset += SLICE) {
    if (signal && signal.aborted) throw new DOMException('hashing aborted', 'AbortError');
    const part = new Uint8Array(await blob.slice(offset, offset + SLICE).arrayBuffer());
    hasher.update(part);
    if (onProgress) onProgress(Math.min(blob.size, offset + SLICE), blob.size);
  }
  return hex(hasher.digest());
}

// Makes sure the coordinator holds `file`; returns its hash. report(phase, fraction) with phase
// one of "hashing", "checking", "uploading", "held" (already there), "uploaded".
export async function ensureBlob(api, file, { report = () => {}, signal } = {}) {
  report('hashing', 0);
  const hash = await hashBlob(file, {
    signal,
    onProgress: (done, total) => report('hashing', total ? done / total : 1),
  });
  report('checking', 0);
  if (await api.hasBlob(hash, { signal })) {
    report('held', 1);
    return hash;
  }
  report('uploading', 0);
  await api.putBlob(hash, file, {
    signal,
    onProgress: (sent, total) => report('uploading', total ? sent / total : 1),
  });
  report('uploaded', 1);
  return hash;
}
