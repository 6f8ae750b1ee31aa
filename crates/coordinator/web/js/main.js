// The app's entry: the token, the sign-in form, the error line and routing by the URL's
// fragment (#/jobs, #/jobs/<id>, #/pipelines/<id>, #/submit, #/pool, #/nodes, #/lend). Each
// view is a module with `mount(container, ctx)`, which returns a function that stops it (its
// polling, its requests) when another view takes the page.

import { api, onUnauthorized, setToken, token } from './api.js';
import { h, fill } from './dom.js';
import * as jobsView from './views/jobs.js';
import * as jobView from './views/job.js';
import * as pipelineView from './views/pipeline.js';
import * as submitView from './views/submit.js';
import * as poolView from './views/pool.js';
import * as nodesView from './views/nodes.js';

const view = document.getElementById('view');
const errorLine = document.getElementById('error');
const signInSection = document.getElementById('sign-in-section');
const signInForm = document.getElementById('sign-in');
const poolName = document.getElementById('pool-name');

// ---- the error line: the latest message of any source, until that source clears it ----

const errors = new Map();

function showErrors() {
  const last = [...errors.values()].pop() || '';
  if (errorLine.textContent !== last) errorLine.textContent = last;
}

function setError(source, message) {
  errors.delete(source);
  if (message) errors.set(source, String(message));
  showErrors();
}

function clearError(source) {
  if (errors.delete(source)) showErrors();
}

// ---- the token: taken once from #token=…, then kept in sessionStorage ----

// The sign-in link may carry a join token too (#token=ccr_…&join=ccj_…), which the Lend page
// registers this tab with; it is kept in the same way, in this tab only.
const JOIN_KEY = 'crowdcloud-join';

// Takes the token and the join token out of the fragment, if there are any, and the fragment
// out of the address bar. True when a token was taken.
function takeTokenFromFragment() {
  const fragment = location.hash.replace(/^#/, '');
  const at = fragment.search(/(^|[&?/])(token|join)=/);
  if (at < 0) return false;
  const params = new URLSearchParams(fragment.slice(at).replace(/^[&?/]/, ''));
  const value = (params.get('token') || '').trim();
  const join = (params.get('join') || '').trim();
  // A link that only lends opens the Lend page.
  const next = join && !value ? '#/lend' : '#/jobs';
  history.replaceState(null, '', location.pathname + location.search + next);
  if (join) {
    try {
      sessionStorage.setItem(JOIN_KEY, join);
    } catch {
      // storage refused: the Lend page asks for the join token instead
    }
  }
  if (value) setToken(value);
  return Boolean(value);
}

let signedOut = false;

function showSignIn(message) {
  stopView();
  markNav('');
  signedOut = true;
  errors.clear();
  setError('auth', message || '');
  view.hidden = true;
  signInSection.hidden = false;
  document.body.classList.add('signed-out');
  const input = signInForm.elements.namedItem('token');
  input.value = '';
  input.focus();
}

onUnauthorized((message) => {
  if (!signedOut) showSignIn(message || 'The token was refused: sign in again.');
  else setError('auth', message);
});

signInForm.addEventListener('submit', (event) => {
  event.preventDefault();
  const value = signInForm.elements.namedItem('token').value.trim();
  if (!value) return;
  setToken(value);
  signedOut = false;
  clearError('auth');
  signInSection.hidden = true;
  view.hidden = false;
  document.body.classList.remove('signed-out');
  if (!/^#\/\w/.test(location.hash)) history.replaceState(null, '', location.pathname + location.search + '#/jobs');
  route();
});

// ---- routing ----

const ROUTES = [
  { pattern: /^\/?$/, nav: 'jobs', mount: (c, ctx) => jobsView.mount(c, ctx) },
  { pattern: /^\/jobs\/?$/, nav: 'jobs', mount: (c, ctx) => jobsView.mount(c, ctx) },
  { pattern: /^\/jobs\/([^/]+)\/?$/, nav: 'jobs', mount: (c, ctx, m) => jobView.mount(c, ctx, decodeURIComponent(m[1])) },
  { pattern: /^\/pipelines\/([^/]+)\/?$/, nav: 'jobs', mount: (c, ctx, m) => pipelineView.mount(c, ctx, decodeURIComponent(m[1])) },
  { pattern: /^\/submit\/?$/, nav: 'submit', mount: (c, ctx) => submitView.mount(c, ctx) },
  { pattern: /^\/pool\/?$/, nav: 'pool', mount: (c, ctx) => poolView.mount(c, ctx) },
  { pattern: /^\/nodes\/?$/, nav: 'nodes', mount: (c, ctx) => nodesView.mount(c, ctx) },
  { pattern: /^\/lend\/?$/, nav: 'lend', mount: mountLend },
];

let current = null; // { controller, stop }

function stopView() {
  if (!current) return;
  const { controller, stop } = current;
  current = null;
  controller.abort();
  if (typeof stop === 'function') {
    try {
      stop();
    } catch (error) {
      console.error(error);
    }
  }
}

function markNav(name) {
  for (const link of document.querySelectorAll('a[data-nav]')) {
    if (link.dataset.nav === name) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
}

function route() {
  if (takeTokenFromFragment()) {
    signedOut = false;
    errors.delete('auth');
    signInSection.hidden = true;
    view.hidden = false;
    document.body.classList.remove('signed-out');
  }
  if (!token()) {
    markNav('');
    showSignIn(errors.get('auth') || '');
    return;
  }
  stopView();
  for (const source of [...errors.keys()]) if (source !== 'auth') errors.delete(source);
  showErrors();
  const path = location.hash.replace(/^#/, '');
  const found = ROUTES.map((r) => ({ r, m: path.match(r.pattern) })).find((x) => x.m);
  const controller = new AbortController();
  const container = h('div', { class: 'view-inner' });
  fill(view, container);
  window.scrollTo(0, 0);
  const ctx = {
    api,
    signal: controller.signal,
    error: (message, source = 'view') => setError(source, message),
    clearError: (source = 'view') => clearError(source),
    // Reports a failed request unless it was only stopped because the view changed.
    fail: (error, source = 'view') => {
      if (controller.signal.aborted || api.isAbort(error)) return;
      if (error && error.status === 401) return; // the sign-in form says it
      setError(source, error && error.message ? error.message : String(error));
    },
    title: (words) => {
      document.title = words ? `${words} · crowdcloud` : 'crowdcloud';
    },
  };
  current = { controller, stop: null };
  if (!found) {
    markNav('');
    ctx.title('Not found');
    fill(container, h('h1', null, 'No such page'),
      h('p', null, 'Nothing lives at this address. ', h('a', { href: '#/jobs' }, 'See your jobs'), '.'));
    return;
  }
  markNav(found.r.nav);
  let stop;
  try {
    stop = found.r.mount(container, ctx, found.m);
  } catch (error) {
    ctx.fail(error);
  }
  if (current && current.controller === controller) current.stop = stop;
}

// #/lend: its module is loaded only when the page is opened.
function mountLend(container, ctx) {
  ctx.title('Lend this device');
  const host = h('div', { class: 'lend' });
  const note = h('p', { class: 'muted small' }, 'Loading…');
  fill(container, host, note);
  let stop = null;
  let stopped = false;
  import('./lend.js').then((lend) => {
    if (stopped || ctx.signal.aborted) return;
    note.remove();
    const result = lend.render(host, api, { signal: ctx.signal });
    if (typeof result === 'function') stop = result;
  }).catch((error) => {
    note.textContent = '';
    ctx.error(`Could not load /app/js/lend.js: ${error.message}`);
  });
  return () => {
    stopped = true;
    if (stop) stop();
  };
}

async function showPoolName() {
  try {
    const health = await api.health();
    poolName.textContent = health.pool_name || '';
    poolName.title = `crowdcloud ${health.version || ''}`.trim();
  } catch {
    // the views say what is wrong
  }
}

window.addEventListener('hashchange', route);
showPoolName();
route();
