// #/pool: the last hour of the pool in charts (uPlot, loaded with this view), refreshed every
// 10 s: tasks finished per second, tasks queued, nodes online, fuel used, attempts lost. Also
// how the pool checks results, and the requester's credits.

import { h, fill } from '../dom.js';
import { poll } from '../poll.js';
import * as fmt from '../format.js';

const CHART_HEIGHT = 170;

const SERIES = [
  { key: 'finished_per_s', title: 'Tasks finished per second', color: '#1f9d6b', rate: true },
  { key: 'tasks_queued', title: 'Tasks queued', color: '#2563eb' },
  { key: 'nodes_online', title: 'Nodes online', color: '#7c3aed' },
  { key: 'fuel_used', title: 'Fuel used per interval', color: '#d98a1c' },
  { key: 'attempts_lost', title: 'Attempts lost per interval', color: '#d14343' },
];

// The samples as uPlot's columns: [times in s, …one array per chart].
export function columns(history) {
  const samples = history.samples || [];
  const seconds = Math.max(1, (history.interval_ms || 10_000) / 1000);
  const x = samples.map((s) => s.at_ms / 1000);
  const values = {
    finished_per_s: samples.map((s) => s.tasks_finished / seconds),
    tasks_queued: samples.map((s) => s.tasks_queued),
    nodes_online: samples.map((s) => s.nodes_online),
    fuel_used: samples.map((s) => s.fuel_used),
    attempts_lost: samples.map((s) => s.attempts_lost),
  };
  return { x, values };
}

export function mount(container, ctx) {
  ctx.title('Pool');
  const trust = h('p', { class: 'muted' });
  const credits = h('p', { class: 'muted' });
  const nodesLine = h('p');
  const note = h('p', { class: 'muted' }, 'Loading…');
  const chartsBox = h('div', { class: 'charts' });
  fill(container,
    h('h1', null, 'Pool'),
    h('section', { class: 'panel' }, nodesLine, trust, credits),
    h('section', { class: 'panel' },
      h('h2', null, 'The last hour'),
      note,
      chartsBox));

  let uPlot = null;
  const charts = []; // { plot, box, series }
  let resize = null;

  function width(box) {
    return Math.max(200, Math.floor(box.clientWidth || chartsBox.clientWidth || 320));
  }

  function build(data) {
    for (const s of SERIES) {
      const box = h('div', { class: 'chart', data: { chart: s.key } });
      const card = h('div', { class: 'chart-card' }, h('h3', null, s.title), box);
      chartsBox.append(card);
      const plot = new uPlot({
        width: width(box),
        height: CHART_HEIGHT,
        legend: { show: true, live: true },
        cursor: { drag: { x: false, y: false }, points: { size: 6 } },
        scales: { x: { time: true }, y: { range: (u, min, max) => [0, Math.max(max, s.rate ? 0.1 : 1)] } },
        axes: [
          { stroke: '#7a828c', grid: { stroke: 'rgba(128,128,128,0.15)' }, ticks: { show: false } },
          {
            stroke: '#7a828c',
            grid: { stroke: 'rgba(128,128,128,0.15)' },
            ticks: { show: false },
            size: 48,
            values: (u, ticks) => ticks.map((v) => (s.rate && v < 10 ? String(Math.round(v * 100) / 100) : fmt.short(v))),
          },
        ],
        series: [
          {},
          { label: s.title, stroke: s.color, fill: `${s.color}22`, width: 2, points: { show: false } },
        ],
      }, [data.x, data.values[s.key]], box);
      charts.push({ plot, box, series: s });
    }
    resize = new ResizeObserver(() => {
      for (const c of charts) {
        const w = width(c.box);
        if (Math.abs(w - c.plot.width) >= 1) c.plot.setSize({ width: w, height: CHART_HEIGHT });
      }
    });
    resize.observe(chartsBox);
  }

  async function loadHistory() {
    const history = await ctx.api.get('/v1/metrics/history', { signal: ctx.signal });
    if (!uPlot) uPlot = (await import('../../vendor/uPlot.esm.js')).default;
    if (ctx.signal.aborted) return;
    const data = columns(history);
    if (!data.x.length) {
      note.hidden = false;
      note.textContent = `No samples yet: the coordinator takes one every ${fmt.duration(history.interval_ms || 10_000)}.`;
    } else {
      note.hidden = true;
    }
    if (!charts.length) build(data);
    else for (const c of charts) c.plot.setData([data.x, data.values[c.series.key]]);
  }

  async function loadSummary() {
    const [nodes, account] = await Promise.all([
      ctx.api.get('/v1/nodes', { signal: ctx.signal }),
      ctx.api.get('/v1/credits', { signal: ctx.signal }),
    ]);
    const list = nodes.nodes || [];
    const online = list.filter((n) => n.state === 'online');
    const slots = online.reduce((a, n) => a + n.slots, 0);
    const running = online.reduce((a, n) => a + n.running, 0);
    fill(nodesLine,
      h('strong', null, `${online.length} of ${list.length} node${list.length === 1 ? '' : 's'} online`),
      ` · ${fmt.int(running)} of ${fmt.int(slots)} slots busy · `,
      h('a', { href: '#/nodes' }, 'see the nodes'));
    trust.textContent = fmt.trustLine(nodes.trust);
    credits.textContent = `Your credits: ${fmt.credits(account.balance.fuel, account.fuel_per_credit)}` +
      (account.required ? ' (this pool runs jobs only on credit).' : ' (counted, never required here).');
  }

  async function step() {
    const results = await Promise.allSettled([loadHistory(), loadSummary()]);
    const failed = results.find((r) => r.status === 'rejected');
    if (failed) throw failed.reason;
    ctx.clearError('pool');
  }

  poll(step, 10_000, ctx.signal, (error) => {
    if (error.status === 404) note.textContent = `No history on this coordinator: ${error.message}`;
    ctx.fail(error, 'pool');
  });

  return () => {
    if (resize) resize.disconnect();
    for (const c of charts) c.plot.destroy();
  };
}
