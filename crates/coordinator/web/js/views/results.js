// One task's results: its stdout, stderr and output files, each downloadable. Text is shown in
// a <pre> (the first 64 KiB, of a file of at most 1 MiB); an output is shown as a picture only
// when the coordinator serves its bytes as an image (Content-Type image/…), from an object URL
// in an <img> (never inline markup, an SVG included).

import { h, fill } from '../dom.js';
import * as fmt from '../format.js';
import { download, facts } from './parts.js';

const SHOW_BYTES = 64 * 1024;
const FETCH_TEXT_MAX = 1024 * 1024;
const IMAGE_MAX = 8 * 1024 * 1024;
const IMAGE_PREVIEWS_MAX = 12;
const TEXT_NAME = /\.(txt|csv|json|log|md)$/i;
const HASH = /^[0-9a-f]{64}$/;

function baseName(path) {
  const parts = String(path).split('/');
  return parts[parts.length - 1] || 'output';
}

// `sealed`: the job is private, so its results are ciphertext that opens only on the
// requester's device; they are listed and may be downloaded, never shown.
export function drawResults(container, ctx, jobId, task, nodeName, sealed) {
  const controller = new AbortController();
  const abort = () => controller.abort();
  ctx.signal.addEventListener('abort', abort, { once: true });
  const urls = [];
  const sub = { ...ctx, signal: controller.signal };

  const usage = task.usage || {};
  const argsText = (task.args || []).map((a) => (/^[^\s'"\\]+$/.test(a) ? a : JSON.stringify(a))).join(' ');
  const files = [];
  if (task.stdout) files.push({ label: 'stdout', filename: `task-${task.index}-stdout.txt`, ...task.stdout, text: !sealed });
  if (task.stderr) files.push({ label: 'stderr', filename: `task-${task.index}-stderr.txt`, ...task.stderr, text: !sealed });
  let previews = 0;
  for (const output of task.outputs || []) {
    const text = !sealed && TEXT_NAME.test(output.path);
    const preview = !sealed && !text && output.size_bytes > 0 && output.size_bytes <= IMAGE_MAX && previews < IMAGE_PREVIEWS_MAX;
    if (preview) previews += 1;
    files.push({
      label: `output/${output.path}`, filename: baseName(output.path), hash: output.hash,
      size_bytes: output.size_bytes, text, preview,
    });
  }

  fill(container,
    h('div', { class: 'panel-head' },
      h('h2', null, `Task ${task.index}`),
      h('span', { class: `badge state-${task.state}` }, fmt.taskState(task))),
    facts([
      ['Arguments', argsText ? h('code', { class: 'args' }, argsText) : 'none', true],
      // A task another pool ran names that pool and its node.
      ['Node', task.ran_on || (task.node_id ? nodeName(task.node_id) : '')],
      ['Attempts', fmt.int(task.attempts)],
      ['Fuel', task.usage ? fmt.int(usage.fuel_used) : ''],
      ['Wall time', task.usage ? fmt.duration(usage.wall_ms) : ''],
      ['Memory peak', task.usage ? fmt.bytes(usage.memory_peak_bytes) : ''],
      ['Compile', usage.compile_ms ? fmt.duration(usage.compile_ms) : ''],
      ['Verified', task.verification ? `by ${task.verification.by} (${task.verification.nodes.length} node${task.verification.nodes.length === 1 ? '' : 's'})` : ''],
      ['Reused', task.reused_from ? 'its result was taken from an earlier job' : ''],
      ['Recalled from', task.recalled_from ? nodeName(task.recalled_from) : ''],
    ]),
    files.length
      ? h('div', { class: 'files' }, files.map((file) => fileBlock(sub, file, urls)))
      : h('p', { class: 'muted' }, task.state === 'pending' || task.state === 'running'
        ? 'No results yet: the task has not ended.'
        : 'This task left no output.'));

  return () => {
    controller.abort();
    ctx.signal.removeEventListener('abort', abort);
    for (const url of urls) URL.revokeObjectURL(url);
  };
}

function fileBlock(ctx, file, urls) {
  const valid = HASH.test(file.hash);
  const path = `/v1/blobs/${file.hash}`;
  const button = h('button', { type: 'button', class: 'small-button secondary', disabled: !valid }, 'Download');
  button.addEventListener('click', () => download(ctx, path, file.filename, button));
  const body = h('div', { class: 'file-body' });
  const block = h('div', { class: 'file', data: { file: file.label } },
    h('div', { class: 'file-head' },
      h('span', { class: 'file-name mono' }, file.label),
      h('span', { class: 'muted' }, fmt.bytes(file.size_bytes)),
      button),
    body);
  if (!valid) return block;
  if (file.text) {
    if (file.size_bytes === 0) {
      fill(body, h('p', { class: 'muted small' }, 'empty'));
    } else if (file.size_bytes > FETCH_TEXT_MAX) {
      fill(body, h('p', { class: 'muted small' },
        `Too large to show here (${fmt.bytes(file.size_bytes)}): download it.`));
    } else {
      fill(body, h('p', { class: 'muted small' }, 'Loading…'));
      showText(ctx, path, file, body);
    }
  } else if (file.preview) {
    showImage(ctx, path, file, body, urls);
  }
  return block;
}

async function showText(ctx, path, file, body) {
  try {
    const { blob } = await ctx.api.getBlob(path, { signal: ctx.signal });
    const bytes = new Uint8Array(await blob.slice(0, SHOW_BYTES).arrayBuffer());
    const shown = new TextDecoder('utf-8', { fatal: false }).decode(bytes);
    fill(body,
      h('pre', { class: 'output' }, shown),
      blob.size > SHOW_BYTES
        ? h('p', { class: 'muted small' }, `The first 64 KiB of ${fmt.bytes(blob.size)}; download it for the rest.`)
        : null);
  } catch (error) {
    if (ctx.signal.aborted || ctx.api.isAbort(error)) return;
    fill(body, h('p', { class: 'muted small' }, `Could not load it: ${error.message}`));
  }
}

async function showImage(ctx, path, file, body, urls) {
  try {
    const { blob, type } = await ctx.api.getBlob(path, { signal: ctx.signal });
    if (!type.toLowerCase().startsWith('image/')) return; // not served as an image: download only
    const url = URL.createObjectURL(new Blob([blob], { type }));
    urls.push(url);
    fill(body, h('img', { class: 'result-image', src: url, alt: file.label, decoding: 'async' }));
  } catch (error) {
    if (ctx.signal.aborted || ctx.api.isAbort(error)) return;
    fill(body, h('p', { class: 'muted small' }, `Could not load it: ${error.message}`));
  }
}
