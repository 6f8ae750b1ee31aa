// #/jobs: the requester's recent jobs with live progress, polled every second while shown; a
// stage's job links to its pipeline too.

import { h, fill, setText } from '../dom.js';
import { poll } from '../poll.js';
import * as fmt from '../format.js';
import { progressBar } from './parts.js';

export function mount(container, ctx) {
  ctx.title('Jobs');
  const list = h('ul', { class: 'cards jobs', 'aria-live': 'polite' });
  const empty = h('div', { class: 'empty', hidden: true },
    h('p', null, 'No jobs yet.'),
    h('p', null, h('a', { class: 'button', href: '#/submit' }, 'Submit a job')));
  const loading = h('p', { class: 'muted' }, 'Loading jobs…');
  fill(container,
    h('div', { class: 'view-head' },
      h('h1', null, 'Jobs'),
      h('a', { class: 'button', href: '#/submit' }, 'New job')),
    loading, empty, list);

  const cards = new Map(); // job id -> { el, update }

  async function step() {
    const { jobs } = await ctx.api.get('/v1/jobs?limit=50', { signal: ctx.signal });
    ctx.clearError('jobs');
    loading.hidden = true;
    empty.hidden = jobs.length > 0;
    const seen = new Set();
    const order = [];
    for (const job of jobs) {
      seen.add(job.job_id);
      let card = cards.get(job.job_id);
      if (!card) {
        card = jobCard(job);
        cards.set(job.job_id, card);
      }
      card.update(job);
      order.push(card.el);
    }
    for (const [id, card] of cards) {
      if (!seen.has(id)) {
        card.el.remove();
        cards.delete(id);
      }
    }
    const same = order.length === list.children.length && order.every((el, i) => list.children[i] === el);
    if (!same) list.replaceChildren(...order);
  }

  poll(step, 1000, ctx.signal, (error) => ctx.fail(error, 'jobs'));
}

function jobCard(job) {
  const name = h('span', { class: 'job-name' });
  const state = h('span', { class: 'badge' });
  const bar = progressBar();
  const counts = h('span', { class: 'counts' });
  const extra = h('span', { class: 'muted' });
  // A stage's job: its own link to the pipeline, beside the card's (links do not nest).
  const stageOf = h('p', { class: 'card-stage muted small', hidden: true });
  const el = h('li', { class: 'card job-card', data: { jobId: job.job_id } },
    h('a', { class: 'card-link', href: `#/jobs/${encodeURIComponent(job.job_id)}` },
      h('div', { class: 'card-title' }, name, state),
      bar.el,
      h('div', { class: 'card-meta' }, counts, extra)),
    stageOf);
  let last = '';
  return {
    el,
    update(j) {
      const key = JSON.stringify([j.version, j.state, j.tasks, j.fuel_used, j.name]);
      // the "ago" part changes with time alone
      extra.textContent = [`fuel ${fmt.fuel(j.fuel_used)}`, fmt.ago(j.created_at_ms)].filter(Boolean).join(' · ');
      if (key === last) return;
      last = key;
      el.dataset.state = j.state;
      setText(name, j.name);
      setText(state, fmt.jobStateWords(j.state));
      state.className = `badge state-${j.state}`;
      bar.update(j.tasks);
      setText(counts, fmt.countsLine(j.tasks));
      const of = j.stage_of;
      stageOf.hidden = !of;
      if (of) {
        fill(stageOf, `stage ${of.stage} of `,
          h('a', { href: `#/pipelines/${encodeURIComponent(of.pipeline_id)}` }, of.pipeline));
      }
    },
  };
}
