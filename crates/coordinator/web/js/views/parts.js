// Pieces several views share.

import { h, setWidth, saveBlob } from '../dom.js';
import * as fmt from '../format.js';

// A bar of a job's tasks: succeeded, failed, cancelled and running, in that order.
export function progressBar() {
  const ok = h('span', { class: 'seg ok' });
  const fail = h('span', { class: 'seg fail' });
  const cancel = h('span', { class: 'seg cancel' });
  const run = h('span', { class: 'seg run' });
  const el = h('div', { class: 'bar', role: 'progressbar', 'aria-valuemin': 0, 'aria-valuemax': 100 },
    ok, fail, cancel, run);
  return {
    el,
    update(counts) {
      const total = counts.total || 0;
      const part = (n) => (total ? n / total : 0);
      setWidth(ok, part(counts.succeeded));
      setWidth(fail, part(counts.failed));
      setWidth(cancel, part(counts.cancelled));
      setWidth(run, part(counts.running));
      el.setAttribute('aria-valuenow', String(Math.round(100 * part(fmt.ended(counts)))));
    },
  };
}

// A definition list from [term, value, wide?] pairs; values that are empty are left out, and a
// wide one takes a whole row.
export function facts(pairs) {
  const dl = h('dl', { class: 'facts' });
  for (const [term, value, wide] of pairs) {
    if (value === null || value === undefined || value === '') continue;
    dl.append(h('div', { class: wide ? 'wide' : null }, h('dt', null, term), h('dd', null, value)));
  }
  return dl;
}

// Fetches `path` with the token and saves it as `filename`; the button says so meanwhile.
export async function download(ctx, path, filename, button) {
  const label = button ? button.textContent : '';
  if (button) {
    button.disabled = true;
    button.textContent = 'Preparing…';
  }
  try {
    const { blob } = await ctx.api.getBlob(path, { signal: ctx.signal });
    saveBlob(blob, filename);
    ctx.clearError('download');
  } catch (error) {
    ctx.fail(error, 'download');
  } finally {
    if (button) {
      button.disabled = false;
      button.textContent = label;
    }
  }
}
