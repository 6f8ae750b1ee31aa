// This tab as a node of the pool, with the agent's loops (crates/agent/src/lib.rs):
// - lease: asks for up to its free slots with a long poll and starts each grant in a worker;
// - heartbeat: extends the leases of what it holds and stops what the pool cancels;
// - presence: keeps one request open, so the pool learns within a second that the tab is gone
//   and runs its tasks elsewhere;
// - reports and releases, sent as attempts end.
//
// Rules it keeps as the agent does:
// - A 401 on any node route means the pool forgot this session: the attempts of the old one are
//   dropped (their reports would be refused) and the node registers again with a fresh
//   challenge. A 403 means the pool refuses this node: lending stops with the pool's words.
// - While paused (the page hidden, the battery low) nothing runs: running attempts are stopped
//   and released, so they run elsewhere without counting as failed attempts, no work is asked
//   for, and heartbeats say why. Stopping does the same, then tells the pool it is draining.
// - An attempt whose guest has ended goes on uploading and reporting whatever happens next,
//   unless the pool cancels it: a result that arrived is worth more than giving it back.

import { NodeApiError, Gate, getBytes, getJson, isAbort, postJson, send, sleep } from './client.js';
import { identityOf, renewIdentity, takeSlot } from './identity.js';
import { register } from './register.js';
import { BlobCache, ModuleCache } from './cache.js';
import { WorkerPool, bareReport, retrying, runAttempt } from './attempt.js';
import { blake3Hex, cutMessage } from './sandbox.js';

const LEASE_WAIT_MS = 20_000;
const PRESENCE_HOLD_MS = 25_000;
// How long a registration is retried while the pool says this node is online elsewhere: a
// reloaded tab gets in once its previous self has been silent a little while.
const IDENTITY_WAIT_MS = 60_000;
const HISTORY_MAX = 20;
// A report is retried this long while the coordinator cannot take it.
const REPORT_RETRY_MS = 120_000;
// The deleted jobs one heartbeat confirms at most (wire::deletion::FORGETS_PER_HEARTBEAT_MAX).
const FORGOTTEN_PER_HEARTBEAT_MAX = 16;

export const RELEASE_STOPPED = 'the owner stopped lending from this page';
export const RELEASE_UNWANTED = 'the node is not taking work now';

// Why lending cannot go on: the pool refused the join token (`join`) or this node (`removed`).
export class LendError extends Error {
  constructor(message, { join = false, removed = false } = {}) {
    super(message);
    this.join = join;
    this.removed = removed;
  }
}

export class Lender extends EventTarget {
  constructor() {
    super();
    this.run = null; // the lending run: {controller, lease, stopped}
    this.session = null; // {nodeId, token, heartbeatMs, leaseMs, poolName, generation}
    this.generation = 0;
    this.identity = null;
    this.settings = null;
    this.fatal = null;
    this.message = '';
    this.running = new Map(); // attempt id -> attempt
    this.runtimes = new Map(); // job id -> JobRuntime
    this.modules = new ModuleCache(8);
    this.blobs = new BlobCache(64 * 1024 * 1024, 16 * 1024 * 1024);
    // Deleted jobs whose copies this tab dropped, to confirm in the next heartbeat.
    this.forgotten = [];
    this.transfers = new Gate(2);
    this.workers = new WorkerPool(4);
    this.pauses = new Map(); // source -> reason
    this.waiters = [];
    this.history = [];
    this.totals = { accepted: 0, succeeded: 0, failed: 0, refused: 0, givenBack: 0, cancelled: 0, wallMs: 0 };
    this.registering = null;
    this.presence = null; // the presence request in flight, closed on a new registration
  }

  // ---- what the page shows ----

  get state() {
    if (this.fatal) return 'error';
    if (!this.run) return 'idle';
    if (!this.session) return 'registering';
    if (this.pauseReason()) return 'paused';
    return this.running.size ? 'running' : 'waiting';
  }

  // The name the node registered with: the owner's, or one from its key.
  registeredName() {
    if (!this.settings || !this.identity) return '';
    return this.settings.name || `browser-${this.identity.publicKey.slice(0, 6)}`;
  }

  pauseReason() {
    return [...this.pauses.values()][0] || null;
  }

  changed() {
    this.dispatchEvent(new Event('change'));
    const waiters = this.waiters;
    this.waiters = [];
    for (const wake of waiters) wake();
  }

  // Resolves at the next change, after `ms`, or when `run` stops.
  nextChange(run, ms = 60_000) {
    return new Promise((resolve) => {
      const signal = run.controller.signal;
      const wake = () => {
        clearTimeout(timer);
        signal.removeEventListener('abort', wake);
        resolve();
      };
      const timer = setTimeout(wake, ms);
      this.waiters.push(wake);
      signal.addEventListener('abort', wake, { once: true });
    });
  }

  // ---- starting and stopping ----

  // settings: {joinToken, name, labels, slots}.
  async start(settings) {
    if (this.run) return;
    const run = { controller: new AbortController(), lease: new AbortController(), stopped: false };
    this.run = run;
    this.settings = settings;
    this.session = null;
    this.fatal = null;
    this.message = '';
    this.changed();
    try {
      this.identity = this.identity || await identityOf(await takeSlot());
      await this.registerRetrying(run);
    } catch (error) {
      if (!run.stopped) this.fail(error);
      return;
    }
    this.leaseLoop(run);
    this.heartbeatLoop(run);
    this.presenceLoop(run);
  }

  // Stops lending: what runs is given back, the pool hears the node is draining, and the
  // presence request closes. `reason` is the release's.
  async stop(reason = RELEASE_STOPPED) {
    const run = this.run;
    if (!run) return;
    run.stopped = true;
    this.run = null;
    this.changed();
    const session = this.session;
    const released = this.giveBackRunning(reason);
    if (session) {
      await Promise.allSettled([
        released,
        // Draining ends the parked lease request at once; what it brings is given back.
        postJson('/v1/nodes/heartbeat', this.heartbeatBody('draining'),
          { token: session.token, timeoutMs: 5000, keepalive: true }),
      ]);
    }
    // The lease loop gives back what a parked lease brought before it ended.
    setTimeout(() => run.lease.abort(), 3000);
    run.controller.abort();
    this.workers.clear();
  }

  // The page is going away (or into the back-forward cache): stop here without a word to the
  // pool. The presence request closes with the page, and the pool runs the tasks elsewhere at
  // once, which is what a closed tab means.
  leave() {
    const run = this.run;
    if (!run) return;
    run.stopped = true;
    this.run = null;
    for (const attempt of this.running.values()) {
      attempt.disposition = 'left';
      attempt.controller.abort();
      attempt.uploads.abort();
    }
    run.lease.abort();
    run.controller.abort();
    this.workers.clear();
    this.changed();
  }

  fail(error) {
    this.fatal = error instanceof LendError ? error : new LendError(error.message || String(error));
    const run = this.run;
    this.run = null;
    this.dropAll('dropped: lending stopped');
    if (run) {
      run.stopped = true;
      run.controller.abort();
      run.lease.abort();
    }
    this.workers.clear();
    this.changed();
  }

  // A new identity, for a node its pool removed: it joins as a new node.
  async renewIdentity() {
    this.identity = await renewIdentity(await takeSlot());
    this.fatal = null;
    this.session = null;
    this.changed();
  }

  // ---- pausing ----

  // `reason` from `source` ('visibility', 'battery'), or null when that source no longer
  // wants a pause.
  setPause(source, reason) {
    const before = this.pauseReason();
    if (reason) this.pauses.set(source, reason);
    else this.pauses.delete(source);
    const after = this.pauseReason();
    if (before === after) return;
    const run = this.run;
    if (run && this.session) {
      if (after) this.giveBackRunning(after);
      // A paused heartbeat ends the parked lease request; an active one lets work come again.
      this.heartbeat(run);
    }
    this.changed();
  }

  // ---- registration ----

  registrationSettings() {
    return { ...this.settings };
  }

  // Registers, retrying while the pool cannot be reached or says this node id is still online.
  async registerRetrying(run) {
    const started = Date.now();
    let delay = 500;
    let nonceRefusals = 0;
    for (;;) {
      try {
        const answer = await register(this.identity, this.registrationSettings(), run.controller.signal);
        this.generation += 1;
        this.session = {
          nodeId: answer.node_id,
          token: answer.node_token,
          heartbeatMs: answer.heartbeat_ms,
          leaseMs: answer.lease_ms,
          poolName: answer.pool_name,
          generation: this.generation,
        };
        this.message = '';
        this.changed();
        return;
      } catch (error) {
        if (run.stopped || isAbort(error)) throw error;
        if (!(error instanceof NodeApiError)) throw error;
        this.message = registrationTrouble(error, started, nonceRefusals);
        if (error.status === 401 && error.stage === 'register') nonceRefusals += 1;
        this.changed();
        await sleep(delay, run.controller.signal);
        delay = Math.min(delay * 2, 5000);
      }
    }
  }

  // Registers again once per lost session (seen as `generation`), dropping its attempts.
  reregister(run, generation) {
    if (this.registering) return this.registering;
    if (!this.session || this.session.generation !== generation) return Promise.resolve();
    this.registering = (async () => {
      this.session = null;
      this.dropAll('dropped: the pool forgot this session');
      // Closing the old session's presence tells the pool its process is gone, so the new
      // registration is not taken for a second process with the same identity.
      if (this.presence) this.presence.abort();
      this.message = 'the pool no longer knows this session; registering again';
      this.changed();
      try {
        await this.registerRetrying(run);
      } catch (error) {
        if (!run.stopped) this.fail(error);
      }
    })().finally(() => {
      this.registering = null;
    });
    return this.registering;
  }

  // What a failed node request means: true when it was handled (a new session, or the end).
  async handleRefusal(run, error, generation) {
    if (run.stopped || isAbort(error)) return true;
    if (error instanceof NodeApiError && error.status === 401) {
      await this.reregister(run, generation);
      return true;
    }
    if (error instanceof NodeApiError && error.status === 403) {
      this.fail(new LendError(`the pool refused this node: ${error.message}`, { removed: true }));
      return true;
    }
    return false;
  }

  // ---- the loops ----

  allowance() {
    if (!this.run || this.pauseReason()) return 0;
    return Math.max(0, this.settings.slots - this.running.size);
  }

  activity() {
    const reason = this.pauseReason();
    return reason ? { state: 'paused', reason } : { state: 'active' };
  }

  // The attempts this node still holds: those given back or cancelled are the pool's again.
  held() {
    return [...this.running.values()].filter((a) => a.disposition === 'report').map((a) => a.grant.attempt_id);
  }

  heartbeatBody(state) {
    return {
      running: this.held(),
      slots_free: state === 'draining' ? 0 : this.allowance(),
      activity: state === 'draining' ? { state: 'draining' } : this.activity(),
      forgotten: this.forgotten.slice(0, FORGOTTEN_PER_HEARTBEAT_MAX),
    };
  }

  // Drops what the pool asks of deleted jobs, and notes them to confirm.
  forget(forgets, confirmed) {
    this.forgotten = this.forgotten.filter((job) => !confirmed.includes(job));
    for (const forget of forgets || []) {
      this.blobs.forget(forget.blobs, forget.everything);
      this.modules.forget(forget.blobs, forget.everything);
      if (!this.forgotten.includes(forget.job_id)) this.forgotten.push(forget.job_id);
    }
  }

  async leaseLoop(run) {
    let delay = 100;
    while (!run.stopped) {
      const wanted = this.allowance();
      if (!this.session || wanted === 0) {
        await this.nextChange(run);
        continue;
      }
      const { token, generation } = this.session;
      try {
        const answer = await postJson('/v1/nodes/lease', { slots_free: wanted, wait_ms: LEASE_WAIT_MS },
          { token, signal: run.lease.signal, timeoutMs: LEASE_WAIT_MS + 30_000 });
        delay = 100;
        if (this.message.startsWith('cannot ask for work')) {
          this.message = '';
          this.changed();
        }
        this.take(run, answer, generation);
      } catch (error) {
        if (await this.handleRefusal(run, error, generation)) continue;
        this.message = `cannot ask for work: ${error.message}; retrying`;
        this.changed();
        await sleep(delay, run.controller.signal).catch(() => {});
        delay = Math.min(delay * 2, 5000);
      }
    }
  }

  // Starts what a lease granted, within the slots; gives back the rest (granted while paused
  // or stopping, or past what was asked).
  take(run, answer, generation) {
    for (const runtime of answer.jobs || []) this.runtimes.set(runtime.job_id, runtime);
    const current = this.session && this.session.generation === generation;
    let room = this.allowance();
    const back = [];
    for (const grant of answer.attempts || []) {
      if (!current) continue; // granted to a session the pool forgot: nothing of it counts
      if (!run.stopped && room > 0) {
        room -= 1;
        this.startAttempt(grant);
      } else {
        back.push(grant.attempt_id);
      }
    }
    if (back.length) {
      this.release(this.session, back, run.stopped ? RELEASE_STOPPED : this.pauseReason() || RELEASE_UNWANTED);
    }
  }

  async heartbeatLoop(run) {
    while (!run.stopped) {
      const interval = Math.max(50, this.session ? this.session.heartbeatMs : 1000);
      await sleep(interval, run.controller.signal).catch(() => {});
      if (!run.stopped && this.session) await this.heartbeat(run);
    }
  }

  async heartbeat(run) {
    const { token, generation } = this.session;
    try {
      const body = this.heartbeatBody();
      const answer = await postJson('/v1/nodes/heartbeat', body,
        { token, signal: run.controller.signal, timeoutMs: 30_000 });
      if (this.session && this.session.generation === generation && answer.heartbeat_ms) {
        this.session.heartbeatMs = answer.heartbeat_ms;
      }
      this.forget(answer.forget, body.forgotten);
      for (const id of answer.cancel || []) this.cancel(id);
      if (this.message.startsWith('heartbeat')) {
        this.message = '';
        this.changed();
      }
    } catch (error) {
      if (await this.handleRefusal(run, error, generation)) return;
      this.message = `heartbeat failed: ${error.message}`;
      this.changed();
    }
  }

  async presenceLoop(run) {
    while (!run.stopped) {
      if (!this.session) {
        await this.nextChange(run);
        continue;
      }
      const held = new AbortController();
      const follow = () => held.abort();
      run.controller.signal.addEventListener('abort', follow, { once: true });
      this.presence = held;
      try {
        await send('POST', '/v1/nodes/presence',
          { token: this.session.token, signal: held.signal, timeoutMs: PRESENCE_HOLD_MS + 30_000 });
      } catch {
        // The other loops handle a lost session; this one only keeps a request open.
        await sleep(1000, run.controller.signal).catch(() => {});
      } finally {
        run.controller.signal.removeEventListener('abort', follow);
      }
    }
  }

  // ---- attempts ----

  // What runAttempt needs of this node: the module cache, and fetches and uploads that share
  // the page's transfer slots.
  io(session) {
    return {
      modules: this.modules,
      workers: this.workers,
      blob: (hash, signal, keep = true) => this.blob(session, hash, signal, keep),
      put: (hash, data, attemptId, signal) => this.transfers.run(() => retrying('upload an output',
        () => send('PUT', `/v1/blobs/${hash}?attempt=${encodeURIComponent(attemptId)}`,
          { token: session.token, body: data, signal, timeoutMs: 600_000 }), signal)),
    };
  }

  async blob(session, hash, signal, keep) {
    const kept = this.blobs.get(hash);
    if (kept) return kept;
    // Checked against its name, as an agent checks what it fetches: a task never runs on bytes
    // other than the ones its job named (other bytes end the attempt as this node's error, and
    // the task runs elsewhere). Once per blob: the caches keep what passed.
    const data = await this.transfers.run(() => retrying(`fetch blob ${hash.slice(0, 12)}…`,
      async () => {
        const bytes = await getBytes(`/v1/blobs/${hash}`, { token: session.token, signal, timeoutMs: 600_000 });
        if (blake3Hex(new Uint8Array(bytes)) !== hash) throw new Error(`blob ${hash.slice(0, 12)}… arrived with other bytes`);
        return bytes;
      }, signal));
    if (keep) this.blobs.put(hash, data);
    return data;
  }

  async runtimeOf(session, jobId, signal) {
    const known = this.runtimes.get(jobId);
    if (known) return known;
    const runtime = await retrying("get the job's runtime",
      () => getJson(`/v1/nodes/jobs/${encodeURIComponent(jobId)}/runtime`,
        { token: session.token, signal, timeoutMs: 30_000 }), signal);
    this.runtimes.set(jobId, runtime);
    return runtime;
  }

  startAttempt(grant) {
    const attempt = {
      grant,
      session: this.session,
      job: '',
      phase: 'fetching',
      // 'report' until the pool cancels it ('drop'), the page gives it back ('gone') or the
      // page goes away ('left').
      disposition: 'report',
      controller: new AbortController(),
      uploads: new AbortController(),
    };
    this.running.set(grant.attempt_id, attempt);
    this.changed();
    this.attemptEnd(attempt).then((ended) => this.finish(attempt, ended), (error) => this.finish(attempt, {
      report: bareReport(grant, { kind: 'node_error', message: cutMessage(`the page failed: ${error.message}`) }),
    }));
  }

  async attemptEnd(attempt) {
    const { grant, session, controller } = attempt;
    let runtime;
    try {
      runtime = await this.runtimeOf(session, grant.job_id, controller.signal);
    } catch (error) {
      if (controller.signal.aborted) return { stopped: true };
      return { report: bareReport(grant, { kind: 'node_error', message: cutMessage(error.message) }) };
    }
    attempt.job = runtime.name;
    return runAttempt(this.io(session), runtime, grant, controller.signal, attempt.uploads.signal, (phase) => {
      attempt.phase = phase;
      this.changed();
    });
  }

  finish(attempt, ended) {
    this.running.delete(attempt.grant.attempt_id);
    const entry = this.remember(attempt);
    if (attempt.disposition === 'drop' || attempt.disposition === 'left') {
      entry.status = attempt.disposition === 'drop' ? attempt.dropped : 'left with the page';
      this.totals.cancelled += 1;
    } else if (ended.report && attempt.disposition === 'report') {
      entry.outcome = ended.report.outcome;
      entry.wallMs = ended.report.usage.wall_ms;
      entry.status = 'reporting';
      this.sendReport(attempt, ended.report, entry);
    } else {
      // Stopped before its end and not yet given back (giveBackRunning sends those at once).
      if (attempt.disposition !== 'gone') this.release(attempt.session, [attempt.grant.attempt_id], RELEASE_UNWANTED);
      entry.status = 'given back';
      this.totals.givenBack += 1;
    }
    this.changed();
  }

  remember(attempt) {
    const entry = {
      attemptId: attempt.grant.attempt_id,
      job: attempt.job || attempt.grant.job_id,
      task: attempt.grant.task_index,
      outcome: null,
      wallMs: null,
      status: '',
    };
    this.history.unshift(entry);
    this.history.length = Math.min(this.history.length, HISTORY_MAX);
    return entry;
  }

  // The pool cancelled it (or forgot the session it was granted in): stop it and send nothing
  // more. `why` is what the history says.
  cancel(id, why = 'cancelled by the pool') {
    const attempt = this.running.get(id);
    if (!attempt) return;
    attempt.disposition = 'drop';
    attempt.dropped = why;
    attempt.controller.abort();
    attempt.uploads.abort();
  }

  dropAll(why) {
    for (const id of [...this.running.keys()]) this.cancel(id, why);
  }

  // Stops every attempt whose guest has not ended yet; their ids.
  stopRunning() {
    const ids = [];
    for (const attempt of this.running.values()) {
      if (attempt.phase === 'uploading' || attempt.disposition !== 'report') continue;
      attempt.disposition = 'gone';
      attempt.controller.abort();
      ids.push(attempt.grant.attempt_id);
    }
    return ids;
  }

  giveBackRunning(reason) {
    const ids = this.stopRunning();
    return ids.length && this.session ? this.release(this.session, ids, reason) : Promise.resolve();
  }

  // Gives attempts back unfinished: they run again elsewhere without counting against the
  // task's attempts. A failure only leaves their leases to run out.
  async release(session, ids, reason) {
    try {
      await postJson('/v1/nodes/release', { attempts: ids, reason: cutMessage(reason) },
        { token: session.token, timeoutMs: 30_000, keepalive: true });
    } catch (error) {
      this.message = `could not give attempts back (${error.message}); their leases will run out instead`;
      this.changed();
    }
  }

  async sendReport(attempt, report, entry) {
    const session = attempt.session;
    const giveUpAt = Date.now() + REPORT_RETRY_MS;
    let delay = 100;
    for (;;) {
      try {
        const answer = await postJson('/v1/nodes/report', { reports: [report] }, { token: session.token, timeoutMs: 60_000 });
        this.acknowledged(answer.acks || [], report, entry);
        return;
      } catch (error) {
        const retry = error instanceof NodeApiError && error.transient && Date.now() + delay < giveUpAt;
        if (!retry) {
          entry.status = `not reported: ${error.message}`;
          if (error instanceof NodeApiError && (error.status === 401 || error.status === 403) && this.run) {
            this.handleRefusal(this.run, error, session.generation);
          }
          this.changed();
          return;
        }
        await sleep(delay);
        delay = Math.min(delay * 2, 5000);
      }
    }
  }

  acknowledged(acks, report, entry) {
    const ack = acks.find((a) => a.attempt_id === report.attempt_id);
    if (ack && ack.accepted) {
      entry.status = 'accepted';
      this.totals.accepted += 1;
      this.totals.wallMs += report.usage.wall_ms;
      if (report.outcome.kind === 'succeeded') this.totals.succeeded += 1;
      else this.totals.failed += 1;
    } else {
      entry.status = `refused: ${(ack && ack.message) || 'the pool did not take it'}`;
      this.totals.refused += 1;
    }
    this.changed();
  }
}

// What to say while registration is retried, or the LendError that ends it.
function registrationTrouble(error, started, nonceRefusals) {
  if (error.status === 409 && Date.now() - started < IDENTITY_WAIT_MS) {
    return `this device's node was online a moment ago; waiting for the pool to see it gone (${error.message})`;
  }
  if (error.transient) return `cannot register yet: ${error.message}; retrying`;
  if (error.status === 401 && error.stage === 'register' && nonceRefusals < 2) {
    return 'the registration came too late for its challenge; trying with a new one';
  }
  if (error.status === 401) throw new LendError(`the pool refused the join token: ${error.message}`, { join: true });
  if (error.status === 403) throw new LendError(`the pool refused this node: ${error.message}`, { removed: true });
  throw new LendError(`the pool refused to register this node: ${error.message}`);
}
