// What the page keeps between attempts: compiled modules by hash (compiling is most of a short
// task's cost) and small blobs such as a job's mounts, which every attempt of the job reads.
// Both drop a deleted job's entries when the pool asks.

// Least recently used first out, by count.
export class ModuleCache {
  constructor(count) {
    this.count = count;
    this.items = new Map();
  }

  get(hash) {
    const module = this.items.get(hash);
    if (module) {
      this.items.delete(hash);
      this.items.set(hash, module);
    }
    return module || null;
  }

  put(hash, module) {
    this.items.delete(hash);
    this.items.set(hash, module);
    while (this.items.size > this.count) this.items.delete(this.items.keys().next().value);
  }

  // A deleted job's modules, kept under keys that start with their hash.
  forget(hashes, everything) {
    for (const key of [...this.items.keys()]) {
      if (everything || hashes.some((hash) => key.startsWith(hash))) this.items.delete(key);
    }
  }
}

// Least recently used first out, by bytes; a blob over `itemBytesMax` is never kept.
export class BlobCache {
  constructor(bytesMax, itemBytesMax) {
    this.bytesMax = bytesMax;
    this.itemBytesMax = itemBytesMax;
    this.bytes = 0;
    this.items = new Map();
  }

  get(hash) {
    const data = this.items.get(hash);
    if (!data) return null;
    this.items.delete(hash);
    this.items.set(hash, data);
    return data;
  }

  put(hash, data) {
    if (data.byteLength > this.itemBytesMax || this.items.has(hash)) return;
    this.items.set(hash, data);
    this.bytes += data.byteLength;
    for (const [oldest, old] of this.items) {
      if (this.bytes <= this.bytesMax) break;
      this.items.delete(oldest);
      this.bytes -= old.byteLength;
    }
  }

  // A deleted job's blobs, or every blob.
  forget(hashes, everything) {
    for (const hash of everything ? [...this.items.keys()] : hashes) {
      const data = this.items.get(hash);
      if (!data) continue;
      this.items.delete(hash);
      this.bytes -= data.byteLength;
    }
  }
}
