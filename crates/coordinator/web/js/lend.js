// #/lend: this browser tab as a node of the pool. main.js loads this module only when the page
// is opened and calls render(container, api); the function returned is called when the user
// leaves the page, and lending stops with it (what runs is given back).
//
// The node itself (identity, registration, the lease, heartbeat and presence loops, attempts
// in workers) is ./lend/lender.js; this module is its controls and what it shows. One lender
// lives as long as the tab, so its history survives a visit to another page.
//
// For tests the root carries data-lend, data-state (idle, registering, waiting, running,
// paused, error), data-node-id once registered and data-done (attempts reported and taken).

import { h, fill, setText } from './dom.js';
import * as fmt from './format.js';
import { Lender } from './lend/lender.js';
import { checkName, parseLabels } from './lend/register.js';
import { watchBattery, watchVisibility } from './lend/device.js';

const JOIN_KEY = 'crowdcloud-join';
// Set while this tab lends, so that a reload lends again (its slot and node come back too).
const LENDING_KEY = 'crowdcloud-lending';
// The owner's choices, for every tab of this browser; but the node's name, which is this
// tab's alone (two tabs are two nodes).
const SETTINGS_KEY = 'crowdcloud-lend-settings';
const NAME_KEY = 'crowdcloud-lend-name';
const SLOTS_MAX = 1024;

let lender = null;

function storage(kind) {
  try {
    return kind === 'local' ? localStorage : sessionStorage;
  } catch {
    return null;
  }
}

function read(kind, key) {
  const store = storage(kind);
  return store ? store.getItem(key) || '' : '';
}

function write(kind, key, value) {
  const store = storage(kind);
  if (!store) return;
  if (value) store.setItem(key, value);
  else store.removeItem(key);
}

function savedSettings() {
  try {
    return JSON.parse(read('local', SETTINGS_KEY) || '{}');
  } catch {
    return {};
  }
}

const STATE_WORDS = {
  idle: 'Not lending',
  registering: 'Joining the pool…',
  waiting: 'Waiting for work',
  running: 'Running',
  paused: 'Paused',
  error: 'Stopped',
};

// ---- the page's parts ----

function field(label, input, hint) {
  return h('label', { class: 'field' }, h('span', null, label), input, hint ? h('small', { class: 'hint' }, hint) : null);
}

function controls(saved) {
  const cores = navigator.hardwareConcurrency || 1;
  const inputs = {
    join: h('input', {
      id: 'lend-join', type: 'password', placeholder: 'ccj_…', autocomplete: 'off',
      autocapitalize: 'off', spellcheck: 'false',
    }),
    cores: h('input', {
      id: 'lend-cores', type: 'number', min: 1, max: Math.min(cores, SLOTS_MAX), step: 1,
      value: String(Math.min(Math.max(Number(saved.slots) || 1, 1), cores)), inputmode: 'numeric',
    }),
    battery: h('input', {
      id: 'lend-battery', type: 'number', min: 0, max: 100, step: 5,
      value: String(saved.battery ?? 30), inputmode: 'numeric',
    }),
    name: h('input', { id: 'lend-name', type: 'text', value: read('session', NAME_KEY), maxlength: 64, autocomplete: 'off' }),
    labels: h('input', {
      id: 'lend-labels', type: 'text', value: saved.labels || '', placeholder: 'region=eu',
      autocapitalize: 'off', spellcheck: 'false', autocomplete: 'off',
    }),
  };
  const joinField = field('Join token', inputs.join,
    'The pool\'s sign-in link carries one; else ask its owner (crowdcloud join-code --web, or ' +
    'crowdcloud tokens create NAME --kind join).');
  const start = h('button', { id: 'lend-start', type: 'submit' }, 'Start lending');
  const stop = h('button', { id: 'lend-stop', type: 'button', class: 'secondary' }, 'Stop');
  const form = h('form', { class: 'panel lend-form', autocomplete: 'off' },
    joinField,
    h('div', { class: 'grid2' },
      field('Cores to lend', inputs.cores, `of ${cores}`),
      field('Pause below battery %', inputs.battery,
        typeof navigator.getBattery === 'function' ? 'when not charging' : 'this browser does not tell')),
    h('details', { class: 'lend-more' },
      h('summary', null, 'Name and labels'),
      field('Node name', inputs.name, 'browser-… by default'),
      field('Labels', inputs.labels, 'key=value, separated by spaces; jobs may require them')),
    h('div', { class: 'actions' }, start, stop));
  return { form, inputs, joinField, start, stop };
}

function status() {
  const badge = h('span', { class: 'badge' });
  const words = h('span', { class: 'lend-state' });
  const detail = h('p', { class: 'muted small lend-detail' });
  const problem = h('p', { class: 'reason lend-problem' });
  const renew = h('button', { type: 'button', class: 'secondary small-button', hidden: true }, 'Join as a new node');
  const facts = h('dl', { class: 'facts' });
  const running = h('ul', { class: 'lend-running' });
  const panel = h('section', { class: 'panel lend-status', 'aria-live': 'polite' },
    h('div', { class: 'card-title' }, words, badge), detail, problem, renew, facts, running);
  return { panel, badge, words, detail, problem, renew, facts, running };
}

function factsOf(node) {
  const { session, totals, settings } = node;
  const rows = [
    ['Node', session ? node.registeredName() : ''],
    ['Node id', session ? h('span', { class: 'mono' }, session.nodeId) : ''],
    ['Pool', session ? session.poolName : ''],
    ['Slots', settings ? `${node.running.size} of ${settings.slots} busy` : ''],
    ['Reported', fmt.int(totals.accepted)],
    ['Succeeded', fmt.int(totals.succeeded)],
    ['Failed', totals.failed ? fmt.int(totals.failed) : ''],
    ['Given back', totals.givenBack ? fmt.int(totals.givenBack) : ''],
    ['Refused', totals.refused ? fmt.int(totals.refused) : ''],
    ['Time lent', totals.wallMs ? fmt.duration(totals.wallMs) : ''],
  ].filter(([, value]) => value !== '' && value !== null);
  return rows.map(([label, value]) => h('div', null, h('dt', null, label), h('dd', null, value)));
}

function historyItem(entry) {
  const outcome = entry.outcome ? fmt.outcome(entry.outcome) : '';
  return h('li', { class: 'lend-attempt', data: { attempt: entry.attemptId } },
    h('div', { class: 'lend-attempt-head' },
      h('span', { class: 'lend-job' }, entry.job, h('span', { class: 'muted' }, ` · task ${entry.task}`)),
      entry.wallMs !== null ? h('span', { class: 'muted num' }, fmt.duration(entry.wallMs)) : null),
    h('div', { class: 'small' },
      outcome ? h('span', { class: `st ${fmt.outcomeClass(entry.outcome)}` }, outcome) : null,
      outcome && entry.status ? ' · ' : null,
      h('span', { class: 'muted' }, entry.status)));
}

// ---- showing the lender ----

function detailOf(node, state) {
  const count = node.running.size;
  if (state === 'paused') {
    return `Paused because ${node.pauseReason()}: what ran here went back to the pool, and nothing runs until that changes.`;
  }
  if (state === 'running') return `Running ${count} task${count === 1 ? '' : 's'}. Keep this page open and in view.`;
  if (state === 'waiting') return 'Registered; waiting for a task. Keep this page open and in view.';
  if (state === 'registering') return 'Registering this tab as a node of the pool…';
  if (state === 'error') return '';
  return 'This tab runs tasks only while lending is on and the page is open and in view.';
}

function show(view, ui, node) {
  const state = node.state;
  view.dataset.state = state;
  view.dataset.nodeId = node.session && node.run ? node.session.nodeId : '';
  view.dataset.done = String(node.totals.accepted);
  setText(ui.status.words, STATE_WORDS[state]);
  setText(ui.status.badge, state);
  ui.status.badge.className = `badge lend-badge lend-badge-${state}`;
  setText(ui.status.detail, detailOf(node, state));
  setText(ui.status.problem, node.fatal ? node.fatal.message : node.message);
  ui.status.renew.hidden = !(node.fatal && node.fatal.removed);
  ui.status.facts.replaceChildren(...factsOf(node));
  ui.status.running.replaceChildren(...[...node.running.values()].map((a) =>
    h('li', null, h('span', { class: 'lend-job' }, a.job || a.grant.job_id), ` · task ${a.grant.task_index} · ${a.phase}`)));
  const lending = Boolean(node.run);
  ui.controls.start.disabled = lending;
  ui.controls.stop.disabled = !lending;
  for (const input of Object.values(ui.controls.inputs)) input.disabled = lending && input.id !== 'lend-battery';
  ui.controls.joinField.hidden = Boolean(read('session', JOIN_KEY)) && !(node.fatal && node.fatal.join);
  fill(ui.history, ...node.history.map(historyItem));
  ui.empty.hidden = node.history.length > 0;
}

// The owner's settings from the form, checked; throws with what to fix.
function settingsOf(ui) {
  const { inputs } = ui.controls;
  const typed = inputs.join.value.trim();
  if (typed) {
    if (!typed.startsWith('ccj_')) throw new Error('a join token starts with ccj_; paste the one the pool owner gave');
    write('session', JOIN_KEY, typed);
    inputs.join.value = '';
  }
  const joinToken = read('session', JOIN_KEY);
  if (!joinToken) throw new Error('paste the pool\'s join token first');
  const max = Number(inputs.cores.max) || 1;
  const slots = Math.round(Number(inputs.cores.value));
  if (!Number.isFinite(slots) || slots < 1 || slots > max) throw new Error(`lend 1 to ${max} cores`);
  const settings = { joinToken, slots, name: checkName(inputs.name.value), labels: parseLabels(inputs.labels.value) };
  write('local', SETTINGS_KEY, JSON.stringify({ slots, battery: batteryThreshold(ui), labels: inputs.labels.value.trim() }));
  write('session', NAME_KEY, inputs.name.value.trim());
  return settings;
}

function batteryThreshold(ui) {
  const value = Number(ui.controls.inputs.battery.value);
  return Number.isFinite(value) ? Math.min(Math.max(value, 0), 100) : 30;
}

// ---- the page ----

function build(node) {
  const ui = {
    controls: controls(savedSettings()),
    status: status(),
    history: h('ul', { class: 'lend-history' }),
    empty: h('p', { class: 'muted small' }, 'No task has run here yet.'),
    problem: h('p', { class: 'error lend-error', role: 'alert' }),
  };
  const view = h('div', { class: 'lend-page', data: { lend: '', state: node.state, done: '0' } },
    h('h1', null, 'Lend this device'),
    h('p', null, 'While this page is open, this device runs tasks of the pool in the browser\u2019s ' +
      'own WebAssembly engine, each in a worker that sees only its task\u2019s files, and stops the ' +
      'moment you leave or hide the page. A browser cannot count fuel, so this work earns no credits.'),
    ui.problem,
    ui.controls.form,
    ui.status.panel,
    h('section', { class: 'panel' }, h('h2', null, 'Last attempts'), ui.empty, ui.history));
  return { view, ui };
}

// Starts lending with the form's settings, or says what to fix.
function begin(ui, node, update) {
  setText(ui.problem, '');
  let settings;
  try {
    settings = settingsOf(ui);
  } catch (error) {
    setText(ui.problem, error.message);
    update();
    return;
  }
  write('session', LENDING_KEY, '1');
  node.start(settings);
}

function wireControls(ui, node, start, update) {
  ui.controls.form.addEventListener('submit', (event) => {
    event.preventDefault();
    start();
  });
  ui.controls.stop.addEventListener('click', () => {
    write('session', LENDING_KEY, '');
    node.stop();
  });
  ui.status.renew.addEventListener('click', () => {
    node.renewIdentity().then(update, (error) => setText(ui.problem, error.message));
  });
}

// The page's visibility and the battery pause the node; leaving the page (or going into the
// back-forward cache) ends it without a word, so the pool sees the presence request close;
// coming back from the cache lends again. Returns a function that stops all this.
function watchDevice(ui, node, start) {
  const unwatchVisibility = watchVisibility((reason) => node.setPause('visibility', reason));
  const battery = watchBattery(() => batteryThreshold(ui), (reason) => node.setPause('battery', reason));
  const recheck = () => battery.check && battery.check();
  ui.controls.inputs.battery.addEventListener('change', recheck);
  const onPageHide = () => node.leave();
  const onPageShow = (event) => {
    if (event.persisted && read('session', LENDING_KEY) && !node.run) start();
  };
  window.addEventListener('pagehide', onPageHide);
  window.addEventListener('pageshow', onPageShow);
  return () => {
    unwatchVisibility();
    battery.stop();
    ui.controls.inputs.battery.removeEventListener('change', recheck);
    window.removeEventListener('pagehide', onPageHide);
    window.removeEventListener('pageshow', onPageShow);
    node.pauses.clear();
  };
}

export function render(container, api) {
  void api; // the node speaks with its own token, never the person's
  if (!lender) lender = new Lender();
  const node = lender;
  const { view, ui } = build(node);
  fill(container, view);
  // Many changes come at once (an attempt ends, its report goes): show them once.
  let queued = false;
  const update = () => {
    if (queued) return;
    queued = true;
    queueMicrotask(() => {
      queued = false;
      show(view, ui, node);
    });
  };
  node.addEventListener('change', update);
  const start = () => begin(ui, node, update);
  wireControls(ui, node, start, update);
  const unwatch = watchDevice(ui, node, start);
  show(view, ui, node);
  // A reload while lending lends again.
  if (read('session', LENDING_KEY) && !node.run && !(node.fatal && node.fatal.join)) start();
  return () => {
    write('session', LENDING_KEY, '');
    node.removeEventListener('change', update);
    unwatch();
    node.stop('the owner left the lending page');
  };
}
