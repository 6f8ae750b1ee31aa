// #/jobs/<id>: one job. Its state and progress (polled every second while it runs), Cancel and
// "Download all (zip)", why tasks wait, the picture of a render job, its tasks (100 a page;
// a row shows that task's results), and a timeline of its attempts, one lane per node.

import { h, fill, cell, numCell, setText } from '../dom.js';
import { poll } from '../poll.js';
import * as fmt from '../format.js';
import { progressBar, facts, download } from './parts.js';
import { drawTimeline } from './timeline.js';
import { createPicture, pictureLayout } from './picture.js';
import { drawResults } from './results.js';

// The same words as wire::private::PRIVATE_JOB_TRUTH, which the CLI prints.
const PRIVATE_JOB_TRUTH = 'sealed from the coordinator and the network; readable by the owner of the machine that runs it';

const PAGE = 100;
const ATTEMPT_PAGE = 1000;
const ATTEMPTS_MAX = 20_000;
const JOB_ID = /^j-[0-9a-fA-F]{16}$/;

export function mount(container, parent, jobId) {
  parent.title('Job');
  if (!JOB_ID.test(jobId)) {
    fill(container, h('h1', null, 'No such job'),
      h('p', null, 'A job id is "j-" and 16 hex digits. ', h('a', { href: '#/jobs' }, 'See your jobs'), '.'));
    return undefined;
  }
  // The job's own signal, so that polling can stop when the job is not found.
  const controller = new AbortController();
  parent.signal.addEventListener('abort', () => controller.abort(), { once: true });
  const ctx = { ...parent, signal: controller.signal };
  const base = `/v1/jobs/${jobId}`;

  // ---- the page's parts ----
  const name = h('h1', { class: 'job-title' }, jobId);
  const badge = h('span', { class: 'badge' }, '…');
  const bar = progressBar();
  const counts = h('p', { class: 'counts' });
  const factsBox = h('div');
  const aborted = h('p', { class: 'notice', hidden: true });
  const sealed = h('p', { class: 'notice', id: 'private-job', hidden: true });
  const stageOf = h('p', { class: 'stage-of', hidden: true });

  const cancelButton = h('button', { type: 'button', id: 'cancel-job', class: 'danger', hidden: true }, 'Cancel job');
  const confirmYes = h('button', { type: 'button', id: 'cancel-confirm', class: 'danger' }, 'Yes, cancel it');
  const confirmNo = h('button', { type: 'button', class: 'secondary' }, 'Keep it running');
  const confirmRow = h('div', { class: 'confirm', hidden: true, role: 'group' },
    h('span', null, 'Cancel this job? Tasks not yet done stop and are not run again.'), confirmYes, confirmNo);
  const zipButton = h('button', { type: 'button', id: 'download-zip', class: 'secondary' }, 'Download all (zip)');

  const whyPanel = h('section', { class: 'panel why', hidden: true });
  const pictureSlot = h('div');
  const tasksBody = h('tbody');
  const prevButton = h('button', { type: 'button', class: 'secondary', disabled: true }, '← Previous');
  const nextButton = h('button', { type: 'button', class: 'secondary', disabled: true }, 'Next →');
  const pageLabel = h('span', { class: 'muted' });
  const resultsPanel = h('section', { class: 'panel results', id: 'results', hidden: true });
  const timelineBox = h('div', { class: 'timeline' });
  const timelinePanel = h('section', { class: 'panel', hidden: true },
    h('h2', null, 'Timeline'),
    h('p', { class: 'muted small' }, 'Each bar is one attempt, from when its node took it until it ended.'),
    timelineBox);
  const sharesPanel = h('section', { class: 'panel', hidden: true });

  const root = h('div', { class: 'job-page', data: { jobPage: jobId, state: 'loading' } },
    h('p', { class: 'back' }, h('a', { href: '#/jobs' }, '← Jobs')),
    h('div', { class: 'job-head' }, name, badge),
    h('p', { class: 'mono muted small' }, jobId),
    stageOf,
    bar.el, counts, aborted, sealed, factsBox,
    h('div', { class: 'actions' }, cancelButton, zipButton),
    confirmRow,
    whyPanel,
    pictureSlot,
    h('section', { class: 'panel' },
      h('div', { class: 'panel-head' }, h('h2', null, 'Tasks'), pageLabel),
      h('p', { class: 'muted small' }, 'Tap a task to see its output.'),
      h('div', { class: 'table-wrap' },
        h('table', { class: 'stack tasks' },
          h('thead', null, h('tr', null,
            ['Task', 'State', 'Node', 'Fuel', 'Wall time', 'Attempts', 'Arguments'].map((t) => h('th', { scope: 'col' }, t)))),
          tasksBody)),
      h('div', { class: 'pager' }, prevButton, nextButton)),
    resultsPanel,
    timelinePanel,
    sharesPanel);
  fill(container, root);

  // ---- state ----
  let job = null;
  let seenVersion = -1;
  let offset = 0;
  let pageTasks = [];
  let nextOffset = null;
  let pageDirty = true;
  let selected = null; // task index
  let selectedKey = '';
  let stopResults = null;
  let attempts = [];
  let attemptsAt = 0;
  let attemptsVersion = -1;
  let attemptsMore = false;
  let timelineMissing = false;
  let whyAt = 0;
  let nodesAt = 0;
  let picture = null;
  let pictureChecked = false;
  const nodeNames = new Map();
  const nodeName = (id) => nodeNames.get(id) || id;

  // ---- the job itself ----
  function showJob(j) {
    job = j;
    root.dataset.state = j.state;
    parent.title(j.name);
    setText(name, j.name);
    setText(badge, fmt.jobStateWords(j.state));
    badge.className = `badge state-${j.state}`;
    bar.update(j.tasks);
    setText(counts, fmt.countsLine(j.tasks));
    const took = j.finished_at_ms ? j.finished_at_ms - j.created_at_ms : Date.now() - j.created_at_ms;
    fill(factsBox, facts([
      ['Fuel used', fmt.int(j.fuel_used)],
      ['Attempts', fmt.int(j.attempts)],
      ['Submitted', fmt.clock(j.created_at_ms)],
      ['Finished', j.finished_at_ms ? fmt.clock(j.finished_at_ms) : ''],
      [j.finished_at_ms ? 'Took' : 'Running for', fmt.duration(took)],
      ['Being verified', j.verifying ? `${fmt.int(j.verifying)} tasks` : ''],
      ['Recalled', j.recalled ? `${fmt.int(j.recalled)} results taken back and run again` : ''],
    ]));
    if (j.aborted) {
      aborted.hidden = false;
      setText(aborted, `Stopped early: task ${j.aborted.task_index} exited with code ${j.aborted.exit_code}, ` +
        'a code the job stops on; the tasks not yet done were cancelled.');
    } else {
      aborted.hidden = true;
    }
    showStageOf(j.stage_of);
    // Its results are ciphertext here: they open only on the requester's device.
    sealed.hidden = !j.private;
    zipButton.hidden = Boolean(j.private);
    if (j.private) {
      setText(sealed, `Private job: ${PRIVATE_JOB_TRUTH}. Its results open only with the key of the ` +
        `device that submitted it: crowdcloud results ${jobId}`);
    }
    const running = j.state === 'running';
    cancelButton.hidden = !running;
    if (!running) confirmRow.hidden = true;
    for (const share of j.nodes || []) nodeNames.set(share.node_id, share.node_name);
    showShares(j);
  }

  // A stage's job links to its pipeline's picture.
  function showStageOf(of) {
    stageOf.hidden = !of;
    if (!of) return;
    fill(stageOf, 'Stage ', h('strong', null, of.stage), ' of pipeline ',
      h('a', { href: `#/pipelines/${of.pipeline_id}`, id: 'pipeline-link' }, of.pipeline));
  }

  function showShares(j) {
    const shares = j.nodes || [];
    sharesPanel.hidden = shares.length === 0;
    if (!shares.length) return;
    fill(sharesPanel, h('h2', null, 'Who did the work'),
      h('ul', { class: 'shares' }, shares.map((s) => h('li', null,
        h('span', { class: 'share-name' }, s.node_name || s.node_id),
        h('span', { class: 'muted' }, ` · ${fmt.int(s.tasks_succeeded)} task${s.tasks_succeeded === 1 ? '' : 's'}` +
          (s.browser ? ' · in a browser tab: no fuel counted, no credits earned' : ''))))));
  }

  // ---- cancel and download ----
  cancelButton.addEventListener('click', () => {
    confirmRow.hidden = false;
    confirmYes.focus();
  });
  confirmNo.addEventListener('click', () => {
    confirmRow.hidden = true;
  });
  confirmYes.addEventListener('click', async () => {
    confirmYes.disabled = true;
    try {
      const status = await ctx.api.post(`${base}/cancel`, {}, { signal: ctx.signal });
      confirmRow.hidden = true;
      if (status && status.job_id) showJob(status);
      ctx.clearError('cancel');
      poller.now();
    } catch (error) {
      ctx.fail(error, 'cancel');
    } finally {
      confirmYes.disabled = false;
    }
  });
  zipButton.addEventListener('click', () => download(ctx, `${base}/results.zip`, `${jobId}-results.zip`, zipButton));

  // ---- why tasks wait ----
  async function loadWhy() {
    if (!job || job.state !== 'running' || !job.tasks.pending) {
      whyPanel.hidden = true;
      return;
    }
    whyAt = Date.now();
    const why = await ctx.api.get(`${base}/why`, { signal: ctx.signal });
    const reasons = why.reasons || [];
    whyPanel.hidden = !why.pending;
    fill(whyPanel,
      h('h2', null, `${fmt.int(why.pending)} task${why.pending === 1 ? '' : 's'} waiting`),
      reasons.length
        ? h('ul', { class: 'reasons' }, reasons.map((r) => h('li', null, r)))
        : h('p', { class: 'muted' }, 'They wait for a free slot.'));
  }

  // ---- tasks ----
  function taskKey(t) {
    return JSON.stringify([t.state, t.attempt_id, t.outcome, t.stdout, t.stderr, t.outputs, t.node_id, t.ran_on, t.attempts, t.usage]);
  }

  async function loadTasks() {
    const page = await ctx.api.get(`${base}/tasks?offset=${offset}&limit=${PAGE}`, { signal: ctx.signal });
    pageTasks = page.tasks || [];
    nextOffset = page.next_offset === undefined ? null : page.next_offset;
    pageDirty = false;
    drawTasks();
  }

  function drawTasks() {
    const rows = pageTasks.map((t) => {
      const row = h('tr', {
        class: ['task-row', t.index === selected && 'selected'],
        data: { taskIndex: t.index, state: t.state },
        tabindex: 0,
      },
      numCell('Task', h('span', { class: 'task-index' }, `#${t.index}`)),
      cell('State', h('span', { class: `st ${stateClass(t)}` }, fmt.taskState(t))),
      cell('Node', t.ran_on || t.node_id
        ? h('span', { class: 'node-name' }, t.ran_on || nodeName(t.node_id))
        : h('span', { class: 'muted' }, '—')),
      numCell('Fuel', t.usage ? fmt.int(t.usage.fuel_used) : ''),
      numCell('Wall time', t.usage ? fmt.duration(t.usage.wall_ms) : ''),
      numCell('Attempts', fmt.int(t.attempts)),
      cell('Arguments', h('code', { class: 'args' }, (t.args || []).join(' '))));
      row.addEventListener('click', () => select(t.index));
      row.addEventListener('keydown', (event) => {
        if (event.key === 'Enter' || event.key === ' ') {
          event.preventDefault();
          select(t.index);
        }
      });
      return row;
    });
    if (rows.length) tasksBody.replaceChildren(...rows);
    else fill(tasksBody, h('tr', null, h('td', { colspan: 7, class: 'muted' }, 'No tasks on this page.')));
    const total = job ? job.tasks.total : 0;
    const last = pageTasks.length ? pageTasks[pageTasks.length - 1].index + 1 : offset;
    setText(pageLabel, total ? `${fmt.int(offset + 1)}–${fmt.int(Math.max(offset + 1, last))} of ${fmt.int(total)}` : '');
    prevButton.disabled = offset === 0;
    nextButton.disabled = nextOffset === null;
  }

  function stateClass(t) {
    if (t.state === 'pending') return 'wait';
    if (t.state === 'running') return 'run';
    return fmt.outcomeClass(t.outcome || { kind: t.state === 'succeeded' ? 'succeeded' : t.state });
  }

  prevButton.addEventListener('click', () => {
    offset = Math.max(0, offset - PAGE);
    pageDirty = true;
    poller.now();
  });
  nextButton.addEventListener('click', () => {
    if (nextOffset === null) return;
    offset = nextOffset;
    pageDirty = true;
    poller.now();
  });

  async function select(index) {
    selected = index;
    selectedKey = '';
    for (const row of tasksBody.querySelectorAll('tr.task-row')) {
      row.classList.toggle('selected', Number(row.dataset.taskIndex) === index);
    }
    try {
      await refreshSelected(true);
      resultsPanel.scrollIntoView({ block: 'start', behavior: 'smooth' });
    } catch (error) {
      ctx.fail(error, 'job');
    }
  }

  async function refreshSelected(force) {
    if (selected === null) return;
    let task = pageTasks.find((t) => t.index === selected);
    if (!task) {
      const page = await ctx.api.get(`${base}/tasks?offset=${selected}&limit=1`, { signal: ctx.signal });
      task = (page.tasks || []).find((t) => t.index === selected);
    }
    if (!task) return;
    const key = taskKey(task);
    if (!force && key === selectedKey) return;
    selectedKey = key;
    if (stopResults) stopResults();
    resultsPanel.hidden = false;
    stopResults = drawResults(resultsPanel, ctx, jobId, task, nodeName, Boolean(job && job.private));
  }

  // ---- attempts ----
  async function loadAttempts(version) {
    if (timelineMissing) return;
    attemptsAt = Date.now();
    const all = [];
    let from = 0;
    let more = false;
    for (;;) {
      let page;
      try {
        page = await ctx.api.get(`${base}/attempts?offset=${from}&limit=${ATTEMPT_PAGE}`, { signal: ctx.signal });
      } catch (error) {
        if (error.status === 404 && job) {
          // a coordinator without the attempts route: no timeline
          timelineMissing = true;
          timelinePanel.hidden = true;
          return;
        }
        throw error;
      }
      all.push(...(page.attempts || []));
      if (page.next_offset === null || page.next_offset === undefined || !(page.attempts || []).length) break;
      if (all.length >= ATTEMPTS_MAX) {
        more = true;
        break;
      }
      from = page.next_offset;
    }
    attempts = all;
    attemptsMore = more;
    attemptsVersion = version;
    drawAttempts();
  }

  function drawAttempts() {
    if (timelineMissing) return;
    timelinePanel.hidden = false;
    drawTimeline(timelineBox, attempts, nodeName);
    if (attemptsMore) {
      timelineBox.append(h('p', { class: 'muted small' }, `The first ${fmt.int(attempts.length)} attempts are shown.`));
    }
  }

  // ---- nodes' names ----
  async function loadNodes() {
    nodesAt = Date.now();
    try {
      const { nodes } = await ctx.api.get('/v1/nodes', { signal: ctx.signal });
      for (const n of nodes || []) nodeNames.set(n.node_id, n.name);
    } catch {
      // names stay ids
    }
  }

  // ---- the picture of a render job ----
  async function updatePicture(changed) {
    if (!pictureChecked && pageTasks.length) {
      pictureChecked = true;
      const layout = pictureLayout(pageTasks);
      if (layout) {
        picture = createPicture(ctx, jobId, layout);
        fill(pictureSlot, picture.el);
      }
    }
    if (!picture) return;
    picture.setJob(job);
    if (job.tasks.total <= PAGE && offset === 0) {
      if (changed) picture.offer(pageTasks);
    } else if (changed || picture.owed()) {
      await picture.scan(job);
    }
  }

  // ---- one poll ----
  async function step() {
    let j;
    try {
      j = await ctx.api.get(base, { signal: ctx.signal });
    } catch (error) {
      if (error.status === 404 || error.status === 400) {
        setText(name, 'No such job');
        root.dataset.state = 'missing';
        controller.abort();
        parent.fail(error, 'job');
        return;
      }
      throw error;
    }
    showJob(j);
    ctx.clearError('job');
    const now = Date.now();
    const first = nodesAt === 0;
    if (first || now - nodesAt > 15_000) {
      if (first) await loadNodes(); else loadNodes();
    }
    const changed = j.version !== seenVersion;
    const work = [];
    if (changed || pageDirty) work.push(loadTasks().then(() => refreshSelected(false)));
    const manyAttempts = attempts.length > 2000;
    if (j.version !== attemptsVersion && (!manyAttempts || now - attemptsAt > 3000)) work.push(loadAttempts(j.version));
    else if (attempts.some((a) => !a.finished_at_ms)) drawAttempts(); // running bars grow
    if (changed || now - whyAt > 5000) work.push(loadWhy());
    const results = await Promise.allSettled(work);
    const failed = results.find((r) => r.status === 'rejected');
    if (failed) throw failed.reason;
    await updatePicture(changed);
    seenVersion = j.version;
  }

  const poller = poll(step, () => (job && job.state !== 'running' ? 5000 : 1000), ctx.signal,
    (error) => ctx.fail(error, 'job'));

  return () => {
    if (stopResults) stopResults();
    if (picture) picture.stop();
  };
}
