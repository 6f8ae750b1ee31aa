// This tab's node identity: an Ed25519 key made by WebCrypto, its private half not extractable,
// kept in IndexedDB (a CryptoKey is structured-cloneable). Identities live in numbered slots
// and each tab holds the first slot it can lock for as long as it lives, so several tabs of
// one browser are several nodes, never one node twice (the pool refuses an identity online
// from two places), and a reloaded tab finds its slot, and so its node, again.

const DB_NAME = 'crowdcloud-lend';
const STORE = 'identities';
const LOCK_PREFIX = 'crowdcloud-node-';
const SLOTS_MAX = 64;

export function hex(bytes) {
  let out = '';
  for (const b of new Uint8Array(bytes)) out += b.toString(16).padStart(2, '0');
  return out;
}

// ---- the slot ----

// Resolves true once the lock is held (and holds it for the tab's life), false when another
// tab has it.
function tryLock(name) {
  return new Promise((resolve) => {
    navigator.locks.request(name, { ifAvailable: true }, (lock) => {
      resolve(Boolean(lock));
      return lock ? new Promise(() => {}) : undefined;
    }).catch(() => resolve(false));
  });
}

let slotTaken = null;

// The slot of this tab, the same for every call.
export function takeSlot() {
  if (!slotTaken) slotTaken = findSlot();
  return slotTaken;
}

async function findSlot() {
  // Without Web Locks (an old browser) tabs cannot tell each other apart: all use slot 0.
  if (!navigator.locks || !navigator.locks.request) return 0;
  for (let slot = 0; slot < SLOTS_MAX; slot += 1) {
    if (await tryLock(LOCK_PREFIX + slot)) return slot;
  }
  throw new Error(`more than ${SLOTS_MAX} tabs of this browser lend it already; close one`);
}

// ---- the store ----

function openDb() {
  return new Promise((resolve, reject) => {
    const request = indexedDB.open(DB_NAME, 1);
    request.onupgradeneeded = () => request.result.createObjectStore(STORE);
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
}

async function withStore(mode, act) {
  const db = await openDb();
  try {
    return await new Promise((resolve, reject) => {
      const tx = db.transaction(STORE, mode);
      const request = act(tx.objectStore(STORE));
      tx.oncomplete = () => resolve(request.result);
      tx.onerror = () => reject(tx.error);
      tx.onabort = () => reject(tx.error);
    });
  } finally {
    db.close();
  }
}

// ---- the key ----

async function makeKey() {
  let pair;
  try {
    pair = await crypto.subtle.generateKey({ name: 'Ed25519' }, false, ['sign', 'verify']);
  } catch (error) {
    throw new Error(`this browser cannot make an Ed25519 key (${error.message}); ` +
      'lend from a recent Chrome, Edge, Firefox or Safari');
  }
  const raw = await crypto.subtle.exportKey('raw', pair.publicKey);
  return { privateKey: pair.privateKey, publicKey: hex(raw) };
}

// The identity of `slot`: {slot, privateKey, publicKey (64 hex)}, made on first use.
export async function identityOf(slot) {
  const kept = await withStore('readonly', (store) => store.get(slot));
  if (kept && kept.privateKey && /^[0-9a-f]{64}$/.test(kept.publicKey || '')) return { slot, ...kept };
  return renewIdentity(slot);
}

// A new identity for `slot`, in place of the old one (which a pool may have removed).
export async function renewIdentity(slot) {
  if (!globalThis.isSecureContext || !globalThis.crypto || !crypto.subtle) {
    throw new Error('lending needs a secure page (https:// or localhost) for its key; open the pool over https');
  }
  const made = await makeKey();
  await withStore('readwrite', (store) => store.put(made, slot));
  return { slot, ...made };
}

// An Ed25519 signature of `bytes`, as 128 hex digits.
export async function sign(privateKey, bytes) {
  return hex(await crypto.subtle.sign({ name: 'Ed25519' }, privateKey, bytes));
}
