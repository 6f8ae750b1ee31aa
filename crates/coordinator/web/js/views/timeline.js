// A job's attempts in time, one lane per node, one bar per attempt from its grant to its end
// (or now, while it runs), coloured by how it ended. Plain elements positioned in percent of
// the lane, so it always fits the width; attempts that overlap on one node (several slots)
// take rows of their own within the lane.

import { h, fill } from '../dom.js';
import * as fmt from '../format.js';

const ROW_PX = 12;

// The colour class of an attempt: from its outcome when it has one, else from its state.
export function attemptClass(a) {
  if (a.outcome) return fmt.outcomeClass(a.outcome);
  switch (a.state) {
    case 'running': return a.finished_at_ms ? 'lost' : 'run';
    case 'succeeded': return 'ok';
    case 'failed': return 'fail';
    case 'cancelled': return 'cancel';
    case 'released': return 'cancel';
    case 'expired': return 'lost';
    default: return a.finished_at_ms ? 'lost' : 'run';
  }
}

function attemptWords(a) {
  if (a.outcome) return fmt.outcome(a.outcome);
  switch (a.state) {
    case 'running': return a.finished_at_ms ? 'ended' : 'running';
    case 'expired': return 'lost with its node';
    case 'released': return 'given back unfinished';
    case 'ended': return 'ended without a report';
    default: return String(a.state || '');
  }
}

// Greedy interval partitioning: each attempt takes the first row free at its start.
function rows(attempts, now) {
  const ends = [];
  const placed = [];
  for (const a of attempts) {
    const end = a.finished_at_ms || now;
    let row = ends.findIndex((e) => e <= a.granted_at_ms);
    if (row < 0) {
      row = ends.length;
      ends.push(end);
    } else {
      ends[row] = end;
    }
    placed.push({ a, row });
  }
  return { placed, count: Math.max(1, ends.length) };
}

// Draws `attempts` into `container`; nodeName(id) gives a node's name when known.
export function drawTimeline(container, attempts, nodeName, now = Date.now()) {
  if (!attempts.length) {
    fill(container, h('p', { class: 'muted' }, 'No attempt has started yet.'));
    return;
  }
  const start = Math.min(...attempts.map((a) => a.granted_at_ms));
  const end = Math.max(...attempts.map((a) => a.finished_at_ms || now), start + 1000);
  const span = end - start;
  const lanes = new Map();
  for (const a of [...attempts].sort((x, y) => x.granted_at_ms - y.granted_at_ms)) {
    if (!lanes.has(a.node_id)) lanes.set(a.node_id, []);
    lanes.get(a.node_id).push(a);
  }
  const laneEls = [];
  for (const [nodeId, list] of lanes) {
    const { placed, count } = rows(list, now);
    const track = h('div', { class: 'lane-track' });
    track.style.height = `${count * ROW_PX}px`;
    for (const { a, row } of placed) {
      const from = a.granted_at_ms;
      const to = a.finished_at_ms || now;
      const cls = attemptClass(a);
      const bar = h('span', {
        class: `tl-bar ${cls}`,
        title: `task ${a.task_index} · ${attemptWords(a)} · ${fmt.duration(to - from)}`,
        data: { task: a.task_index, attempt: a.attempt_id },
      });
      bar.style.left = `${(100 * (from - start) / span).toFixed(3)}%`;
      bar.style.width = `${(100 * (to - from) / span).toFixed(3)}%`;
      bar.style.top = `${row * ROW_PX}px`;
      track.append(bar);
    }
    const running = list.filter((a) => !a.finished_at_ms).length;
    laneEls.push(h('div', { class: 'lane' },
      h('div', { class: 'lane-label' },
        h('span', { class: 'lane-name', title: nodeName(nodeId) }, nodeName(nodeId)),
        h('span', { class: 'muted' },
          `· ${list.length} attempt${list.length === 1 ? '' : 's'}` + (running ? `, ${running} running` : ''))),
      track));
  }
  fill(container,
    h('div', { class: 'lanes' }, laneEls),
    h('div', { class: 'tl-axis muted small' },
      h('span', null, fmt.clock(start)),
      h('span', null, fmt.duration(span))),
    h('div', { class: 'legend small' },
      legendItem('run', 'running'), legendItem('ok', 'succeeded'), legendItem('fail', 'failed'),
      legendItem('lost', 'lost'), legendItem('cancel', 'cancelled or given back')));
}

function legendItem(cls, words) {
  return h('span', { class: 'legend-item' }, h('span', { class: `swatch ${cls}` }), words);
}
