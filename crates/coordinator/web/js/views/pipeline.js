// #/pipelines/<id>: one pipeline as a picture. Each stage is a box, in a column one right of
// the stage it reads, with its state and a bar of its tasks; each arrow says how the later
// stage reads the earlier one (each output, all of them, or a shuffle into N parts). A started
// stage's box opens its job. Below, the same as a list, with why a stage waits or was not run.
// Polled every second while the pipeline runs.

import { h, svg, fill, setText } from '../dom.js';
import { poll } from '../poll.js';
import * as fmt from '../format.js';
import { facts } from './parts.js';

const PIPELINE_ID = /^p-[0-9a-fA-F]{16}$/;

// The picture's grid, in SVG user units; it scales to the page's width.
const BOX_W = 200;
const BOX_H = 78;
const GAP_X = 90;
const GAP_Y = 26;
const PAD = 12;
const BAR_W = BOX_W - 24;

const STATE_WORDS = {
  waiting: 'waiting', running: 'running', completed: 'completed', failed: 'failed',
  cancelled: 'cancelled', not_run: 'not run',
};

// How a stage reads the one before it, in the words of the spec.
export function readsWords(input) {
  if (!input) return '';
  if (input.each !== undefined) return 'each';
  if (input.all !== undefined) return 'all';
  if (input.partition) return `partition ×${fmt.int(input.partition.parts)}`;
  return '';
}

function readsStage(input) {
  if (!input) return null;
  if (input.each !== undefined) return input.each;
  if (input.all !== undefined) return input.all;
  return input.partition ? input.partition.stage : null;
}

// Columns and rows: a stage that reads nothing is in column 0, any other one column right of
// the stage it reads (which is always listed before it); rows fill in the order of the list.
export function layout(stages) {
  const column = new Map();
  const rowsUsed = [];
  return stages.map((stage) => {
    const source = readsStage(stage.input);
    const col = source !== null && column.has(source) ? column.get(source) + 1 : 0;
    column.set(stage.name, col);
    const row = rowsUsed[col] || 0;
    rowsUsed[col] = row + 1;
    return { stage, source, col, row, x: PAD + col * (BOX_W + GAP_X), y: PAD + row * (BOX_H + GAP_Y) };
  });
}

function stageBox(place) {
  const { stage, x, y } = place;
  const counts = stage.counts || { total: 0, succeeded: 0, failed: 0, running: 0, cancelled: 0 };
  const total = counts.total || 0;
  const width = (n) => (total ? (BAR_W * n) / total : 0);
  const okW = width(counts.succeeded);
  const failW = width(counts.failed);
  const runW = width(counts.running);
  const progress = total ? `${fmt.int(counts.succeeded)} / ${fmt.int(total)} done` : 'no tasks yet';
  const box = svg('g', { class: `stage stage-${stage.state}`, data: { stage: stage.name, state: stage.state } },
    svg('rect', { class: 'stage-box', x, y, width: BOX_W, height: BOX_H, rx: 8 }),
    svg('text', { class: 'stage-name', x: x + 12, y: y + 22 }, stage.name),
    svg('text', { class: 'stage-state', x: x + 12, y: y + 40 }, STATE_WORDS[stage.state] || stage.state),
    svg('rect', { class: 'stage-bar', x: x + 12, y: y + 50, width: BAR_W, height: 8, rx: 4 }),
    svg('rect', { class: 'seg-ok', x: x + 12, y: y + 50, width: okW, height: 8 }),
    svg('rect', { class: 'seg-fail', x: x + 12 + okW, y: y + 50, width: failW, height: 8 }),
    svg('rect', { class: 'seg-run', x: x + 12 + okW + failW, y: y + 50, width: runW, height: 8 }),
    svg('text', { class: 'stage-count', x: x + 12, y: y + 72 }, progress),
    svg('title', null, `${stage.name}: ${STATE_WORDS[stage.state] || stage.state}, ${progress}` +
      (stage.reason ? ` (${stage.reason})` : '')));
  // A stage that has not started has no job to open yet.
  if (stage.state === 'waiting' || stage.state === 'not_run') return box;
  return svg('a', { href: `#/jobs/${stage.job_id}`, class: 'stage-link' }, box);
}

function arrow(from, to, words) {
  const x1 = from.x + BOX_W;
  const y1 = from.y + BOX_H / 2;
  const x2 = to.x - 6;
  const y2 = to.y + BOX_H / 2;
  const bend = (x1 + x2) / 2;
  return svg('g', { class: 'reads', data: { from: from.stage.name, to: to.stage.name } },
    svg('path', { d: `M ${x1} ${y1} C ${bend} ${y1}, ${bend} ${y2}, ${x2} ${y2}`, 'marker-end': 'url(#arrow-head)' }),
    svg('text', { x: bend, y: (y1 + y2) / 2 - 6, 'text-anchor': 'middle' }, words));
}

// The picture of `stages`, as an <svg> that keeps its proportions at any width.
export function picture(stages) {
  const places = layout(stages);
  const byName = new Map(places.map((p) => [p.stage.name, p]));
  const columns = Math.max(1, ...places.map((p) => p.col + 1));
  const rows = Math.max(1, ...places.map((p) => p.row + 1));
  const width = 2 * PAD + columns * BOX_W + (columns - 1) * GAP_X;
  const height = 2 * PAD + rows * BOX_H + (rows - 1) * GAP_Y;
  const arrows = places.filter((p) => p.source !== null && byName.has(p.source))
    .map((p) => arrow(byName.get(p.source), p, readsWords(p.stage.input)));
  return svg('svg', {
    class: 'pipeline-graph', viewBox: `0 0 ${width} ${height}`, role: 'img',
    'aria-label': `the pipeline's ${stages.length} stages and what each reads`,
  },
  svg('defs', null, svg('marker', {
    id: 'arrow-head', viewBox: '0 0 10 10', refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: 'auto',
  }, svg('path', { d: 'M 0 0 L 10 5 L 0 10 z' }))),
  arrows, places.map(stageBox));
}

function stageList(stages) {
  return h('ul', { class: 'stage-list' }, stages.map((s) => {
    const reads = readsStage(s.input);
    return h('li', { data: { stage: s.name } },
      h('span', { class: `badge state-${s.state}` }, STATE_WORDS[s.state] || s.state), ' ',
      s.state === 'waiting' || s.state === 'not_run'
        ? h('strong', null, s.name)
        : h('a', { href: `#/jobs/${s.job_id}` }, s.name),
      reads ? h('span', { class: 'muted' }, ` · reads ${reads} (${readsWords(s.input)})`) : null,
      s.counts && s.counts.total ? h('span', { class: 'muted' }, ` · ${fmt.countsLine(s.counts)}`) : null,
      s.reason ? h('p', { class: 'muted small stage-reason' }, s.reason) : null);
  }));
}

export function mount(container, parent, pipelineId) {
  parent.title('Pipeline');
  if (!PIPELINE_ID.test(pipelineId)) {
    fill(container, h('h1', null, 'No such pipeline'),
      h('p', null, 'A pipeline id is "p-" and 16 hex digits. ', h('a', { href: '#/jobs' }, 'See your jobs'), '.'));
    return undefined;
  }
  const controller = new AbortController();
  parent.signal.addEventListener('abort', () => controller.abort(), { once: true });
  const ctx = { ...parent, signal: controller.signal };
  const name = h('h1', { class: 'job-title' }, pipelineId);
  const badge = h('span', { class: 'badge' }, '…');
  const factsBox = h('div');
  const graph = h('div', { class: 'pipeline-picture' });
  const list = h('section', { class: 'panel' });
  const root = h('div', { class: 'pipeline-page', data: { pipelinePage: pipelineId, state: 'loading' } },
    h('p', { class: 'back' }, h('a', { href: '#/jobs' }, '← Jobs')),
    h('div', { class: 'job-head' }, name, badge),
    h('p', { class: 'mono muted small' }, pipelineId),
    factsBox, graph, list);
  fill(container, root);
  let pipeline = null;

  async function step() {
    let p;
    try {
      p = await ctx.api.get(`/v1/pipelines/${pipelineId}`, { signal: ctx.signal });
    } catch (error) {
      if (error.status === 404 || error.status === 400) {
        setText(name, 'No such pipeline');
        root.dataset.state = 'missing';
        controller.abort();
        parent.fail(error, 'pipeline');
        return;
      }
      throw error;
    }
    pipeline = p;
    root.dataset.state = p.state;
    parent.title(p.name);
    setText(name, p.name);
    setText(badge, fmt.jobStateWords(p.state));
    badge.className = `badge state-${p.state}`;
    fill(factsBox, facts([
      ['Stages', fmt.int(p.stages.length)],
      ['Submitted', fmt.clock(p.created_at_ms)],
    ]));
    fill(graph, picture(p.stages));
    fill(list, h('h2', null, 'Stages'), stageList(p.stages));
    ctx.clearError('pipeline');
  }

  poll(step, () => (pipeline && pipeline.state !== 'running' ? 5000 : 1000), ctx.signal,
    (error) => ctx.fail(error, 'pipeline'));
  return undefined;
}
