// A render job's picture: tasks whose args carry --width/--height/--x0/--y0 and whose output
// `tile.ppm` is one tile of a W×H image. Each finished tile is fetched, decoded (binary PPM)
// and put on <canvas id="picture"> as it arrives, so the picture fills in while the job runs.
// The canvas's data-tiles-drawn says how many tiles are on it.

import { h, fill } from '../dom.js';
import { flags } from '../args.js';
import { parsePPM } from '../ppm.js';

const TILE_OUTPUT = 'tile.ppm';
const PAGE = 1000;
const CONCURRENCY = 4;
const SIDE_MAX = 16384;

function intFlag(f, name) {
  const n = Number(f[name]);
  return Number.isInteger(n) && n >= 0 ? n : null;
}

// The picture's size when these tasks look like tiles of one, else null.
export function pictureLayout(tasks) {
  const task = tasks.find((t) => Array.isArray(t.args) && t.args.includes('--x0'));
  if (!task) return null;
  const f = flags(task.args);
  const width = intFlag(f, 'width');
  const height = intFlag(f, 'height');
  if (!width || !height || width > SIDE_MAX || height > SIDE_MAX) return null;
  if (intFlag(f, 'x0') === null || intFlag(f, 'y0') === null) return null;
  return { width, height };
}

function tileOf(task) {
  if (task.state !== 'succeeded' || !Array.isArray(task.outputs)) return null;
  const output = task.outputs.find((o) => o.path === TILE_OUTPUT);
  if (!output || !/^[0-9a-f]{64}$/.test(output.hash)) return null;
  const f = flags(task.args || []);
  const x0 = intFlag(f, 'x0');
  const y0 = intFlag(f, 'y0');
  if (x0 === null || y0 === null) return null;
  return { index: task.index, hash: output.hash, x0, y0 };
}

export function createPicture(ctx, jobId, { width, height }) {
  const canvas = h('canvas', { id: 'picture', width, height, data: { tilesDrawn: 0 } });
  canvas.setAttribute('aria-label', `the picture, ${width} × ${height}`);
  const status = h('span', { class: 'muted' });
  const save = h('span', { class: 'save' });
  const problems = h('p', { class: 'muted small', hidden: true });
  const el = h('section', { class: 'panel picture' },
    h('div', { class: 'panel-head' }, h('h2', null, 'Picture'), save),
    h('div', { class: 'canvas-wrap' }, canvas),
    h('p', { class: 'small' }, status),
    problems);
  const g = canvas.getContext('2d');

  const drawn = new Map(); // task index -> hash drawn
  const broken = new Map(); // task index -> why it cannot be drawn
  const queued = new Map(); // task index -> tile
  let active = 0;
  let total = 0;
  let ended = false;
  let saveFor = -1;
  let saveUrl = null;
  let scanning = false;
  let lastScan = 0;
  let owed = false;

  function report() {
    canvas.dataset.tilesDrawn = String(drawn.size);
    status.textContent = `${drawn.size} of ${total} tiles drawn` +
      (queued.size + active ? ` · ${queued.size + active} on the way` : '');
    if (broken.size) {
      problems.hidden = false;
      const [index, why] = broken.entries().next().value;
      problems.textContent = `${broken.size} tile${broken.size === 1 ? '' : 's'} could not be drawn (task ${index}: ${why}).`;
    }
    offerSave();
  }

  // A "Save PNG" link once every tile is drawn, or once the job ended with some drawn; made
  // again only when more tiles landed, and only between draws (encoding costs).
  function offerSave() {
    const complete = total > 0 && drawn.size >= total;
    if (queued.size || active) return;
    if (!(complete || (ended && drawn.size > 0)) || saveFor === drawn.size) return;
    saveFor = drawn.size;
    canvas.toBlob((blob) => {
      if (!blob || ctx.signal.aborted) return;
      if (saveUrl) URL.revokeObjectURL(saveUrl);
      saveUrl = URL.createObjectURL(blob);
      fill(save, h('a', {
        class: 'button save-png',
        href: saveUrl,
        download: `${jobId}-${width}x${height}.png`,
      }, complete ? 'Save PNG' : 'Save PNG (incomplete)'));
    }, 'image/png');
  }

  function pump() {
    while (active < CONCURRENCY && queued.size && !ctx.signal.aborted) {
      const [index, tile] = queued.entries().next().value;
      queued.delete(index);
      active += 1;
      drawTile(tile).finally(() => {
        active -= 1;
        report();
        pump();
      });
    }
  }

  async function drawTile(tile) {
    try {
      const { blob } = await ctx.api.getBlob(`/v1/blobs/${tile.hash}`, { signal: ctx.signal });
      const ppm = parsePPM(new Uint8Array(await blob.arrayBuffer()));
      g.putImageData(new ImageData(ppm.rgba, ppm.width, ppm.height), tile.x0, tile.y0);
      drawn.set(tile.index, tile.hash);
      broken.delete(tile.index);
    } catch (error) {
      if (ctx.signal.aborted || ctx.api.isAbort(error)) return;
      // 401 shows the sign-in form; a network failure or a busy server is tried again later
      if (error.status === 401 || error.status === 0 || error.status >= 500) return;
      broken.set(tile.index, error.message);
    }
  }

  // Takes what it can draw from tasks the page already fetched.
  function offer(tasks) {
    for (const task of tasks) {
      const tile = tileOf(task);
      if (!tile || drawn.get(tile.index) === tile.hash || queued.has(tile.index)) continue;
      if (broken.has(tile.index)) continue;
      queued.set(tile.index, tile);
    }
    report();
    pump();
  }

  function pageDone(k) {
    const end = Math.min(total, (k + 1) * PAGE);
    for (let i = k * PAGE; i < end; i += 1) {
      if (!drawn.has(i) && !broken.has(i) && !queued.has(i)) return false;
    }
    return true;
  }

  // Reads every page of tasks that still has tiles to draw (at most every 2 s for big jobs).
  // A scan put off (one was running, or the last was too recent) is owed: see `owed`.
  async function scan(job) {
    total = job.tasks.total;
    ended = job.state !== 'running';
    if (scanning || (total > PAGE && Date.now() - lastScan < 2000)) {
      owed = true;
      return;
    }
    owed = false;
    scanning = true;
    lastScan = Date.now();
    try {
      for (let k = 0; k * PAGE < total; k += 1) {
        if (pageDone(k)) continue;
        const page = await ctx.api.get(
          `/v1/jobs/${jobId}/tasks?offset=${k * PAGE}&limit=${PAGE}`, { signal: ctx.signal });
        offer(page.tasks);
      }
    } catch (error) {
      owed = true;
      throw error;
    } finally {
      scanning = false;
    }
    report();
  }

  function setJob(job) {
    total = job.tasks.total;
    ended = job.state !== 'running';
    report();
  }

  function stop() {
    if (saveUrl) URL.revokeObjectURL(saveUrl);
  }

  return { el, offer, scan, setJob, stop, owed: () => owed, drawnCount: () => drawn.size };
}
