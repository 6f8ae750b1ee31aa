// Numbers, sizes, times and outcomes in words. Pure functions: nothing here touches the DOM.

const compact = new Intl.NumberFormat(undefined, { notation: 'compact', maximumFractionDigits: 1 });
const whole = new Intl.NumberFormat(undefined, { maximumFractionDigits: 0 });

export function int(n) {
  return n === null || n === undefined ? '' : whole.format(n);
}

export function short(n) {
  if (n === null || n === undefined || !Number.isFinite(n)) return '';
  return Math.abs(n) < 10_000 ? whole.format(n) : compact.format(n);
}

export function fuel(n) {
  return short(n);
}

export function bytes(n) {
  if (n === null || n === undefined) return '';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = n;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return unit === 0 ? `${value} B` : `${value.toFixed(value < 10 ? 1 : 0)} ${units[unit]}`;
}

export function duration(ms) {
  if (ms === null || ms === undefined || !Number.isFinite(ms)) return '';
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(s < 10 ? 1 : 0)} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${String(Math.floor(s % 60)).padStart(2, '0')} s`;
  const hours = Math.floor(m / 60);
  if (hours < 48) return `${hours} h ${String(m % 60).padStart(2, '0')} min`;
  return `${Math.floor(hours / 24)} d ${hours % 24} h`;
}

export function ago(ms, now = Date.now()) {
  if (!ms) return '';
  const d = Math.max(0, now - ms);
  if (d < 5000) return 'just now';
  return `${duration(Math.floor(d / 1000) * 1000)} ago`;
}

export function clock(ms) {
  if (!ms) return '';
  const date = new Date(ms);
  const today = new Date();
  const sameDay = date.toDateString() === today.toDateString();
  return sameDay
    ? date.toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit', second: '2-digit' })
    : date.toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'short' });
}

// How an attempt or task ended, as a phrase.
export function outcome(o) {
  if (!o) return '';
  switch (o.kind) {
    case 'succeeded': return 'succeeded';
    case 'exit_code': return `exited with code ${o.code}`;
    case 'trap': return `crashed (trap): ${o.message}`;
    case 'out_of_fuel': return 'ran out of fuel';
    case 'deadline_exceeded': return 'ran past its deadline';
    case 'memory_limit': return 'hit the memory limit';
    case 'output_too_large': return `wrote too much to ${o.what}`;
    case 'invalid_output': return `left invalid output: ${o.message}`;
    case 'module_rejected': return `module rejected: ${o.message}`;
    case 'node_error': return `node error: ${o.message}`;
    case 'cancelled': return 'cancelled';
    case 'lost': return `lost: the node${o.attempts === 1 ? '' : 's'} of ${o.attempts} attempt${o.attempts === 1 ? '' : 's'} vanished`;
    case 'inconclusive':
      return `inconclusive: ${o.results} results disagreed` +
        (o.validator_failed ? ` (validator: ${o.validator_failed})` : '');
    default: return String(o.kind || 'ended');
  }
}

// A colour class for an outcome: ok, fail, lost, cancel; `run` while there is none.
export function outcomeClass(o) {
  if (!o) return 'run';
  switch (o.kind) {
    case 'succeeded': return 'ok';
    case 'cancelled': return 'cancel';
    case 'lost': return 'lost';
    default: return 'fail';
  }
}

const TASK_STATES = {
  pending: 'waiting',
  running: 'running',
  succeeded: 'succeeded',
  failed: 'failed',
  cancelled: 'cancelled',
};

// A task's state in words, with its outcome once it ended.
export function taskState(task) {
  if (task.state === 'pending' || task.state === 'running') {
    const words = TASK_STATES[task.state];
    return task.attempts > 1 ? `${words} (attempt ${task.attempts})` : words;
  }
  if (task.outcome && !(task.state === 'succeeded' && task.outcome.kind === 'succeeded')) {
    const how = outcome(task.outcome);
    return task.state === 'succeeded' ? `succeeded (${how})` : how;
  }
  return TASK_STATES[task.state] || String(task.state);
}

export function jobStateWords(state) {
  return { running: 'running', completed: 'completed', failed: 'failed', cancelled: 'cancelled' }[state] ||
    String(state);
}

export function ended(counts) {
  return counts.succeeded + counts.failed + counts.cancelled;
}

export function countsLine(counts) {
  const parts = [`${int(ended(counts))} of ${int(counts.total)} done`];
  if (counts.running) parts.push(`${int(counts.running)} running`);
  if (counts.pending) parts.push(`${int(counts.pending)} waiting`);
  if (counts.failed) parts.push(`${int(counts.failed)} failed`);
  if (counts.cancelled) parts.push(`${int(counts.cancelled)} cancelled`);
  return parts.join(' · ');
}

export function credits(fuelAmount, perCredit) {
  if (!perCredit) return short(fuelAmount);
  return (fuelAmount / perCredit).toFixed(3);
}

export function trustLine(t) {
  if (!t || t.trust === 'family') {
    return 'Family pool: one attempt per task, results taken as reported.';
  }
  return 'Public pool: results verified before delivery · probation ' + t.probation_results +
    ' results · ' + (t.audit_per_million / 10000).toFixed(1) + ' % audited · replicas kept apart by owner' +
    (t.networks_apart ? ' and network (/24, /48)' : ' only (nodes may share a network)') + '.';
}

export function standing(s) {
  if (!s) return '';
  const r = s.record;
  return s.standing + ' · ' + r.verified + ' verified, ' + r.audits_passed + ' audits, ' +
    r.mismatches + ' mismatches' + (r.held ? ', ' + r.held + ' held' : '');
}
