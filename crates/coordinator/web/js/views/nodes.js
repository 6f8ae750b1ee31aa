// #/nodes: the machines of the pool, refreshed every 5 s: state (with the owner's reason for a
// pause), running/slots, cores, memory, tasks done, standing and labels; the owners who brought
// them (a pool that verifies) with their credits when the caller may see them.

import { h, fill, cell } from '../dom.js';
import { poll } from '../poll.js';
import * as fmt from '../format.js';
import { facts } from './parts.js';

const STATE_ORDER = { online: 0, draining: 1, paused: 2, offline: 3 };

export function mount(container, ctx) {
  ctx.title('Nodes');
  const summary = h('p', { class: 'muted' }, 'Loading nodes…');
  const trust = h('p', { class: 'muted small' });
  const list = h('ul', { class: 'cards nodes' });
  const owners = h('section', { class: 'panel', hidden: true });
  const accounts = h('section', { class: 'panel', hidden: true });
  fill(container, h('h1', null, 'Nodes'), summary, trust, list, owners, accounts);

  async function step() {
    const [nodes, account] = await Promise.all([
      ctx.api.get('/v1/nodes', { signal: ctx.signal }),
      ctx.api.get('/v1/credits', { signal: ctx.signal }).catch((error) => {
        if (error.status === 401 || ctx.api.isAbort(error)) throw error;
        return null; // credits are extra
      }),
    ]);
    ctx.clearError('nodes');
    const all = [...(nodes.nodes || [])].sort((a, b) =>
      (STATE_ORDER[a.state] ?? 9) - (STATE_ORDER[b.state] ?? 9) || a.name.localeCompare(b.name));
    const online = all.filter((n) => n.state === 'online').length;
    summary.textContent = all.length
      ? `${online} of ${all.length} node${all.length === 1 ? '' : 's'} online.`
      : 'No node has joined this pool yet: run `crowdcloud join` on a machine, then `crowdcloud agent`, or open Lend on a device.';
    trust.textContent = fmt.trustLine(nodes.trust);
    list.replaceChildren(...all.map(nodeCard));

    const balances = new Map(((account && account.accounts) || []).map((b) => [b.account, b.fuel]));
    const perCredit = account ? account.fuel_per_credit : 0;
    const ownerList = nodes.owners || [];
    owners.hidden = ownerList.length === 0;
    if (ownerList.length) {
      const withCredits = balances.size > 0;
      fill(owners, h('h2', null, 'Owners'),
        h('p', { class: 'muted small' }, 'Everyone who brought nodes, one per join token.'),
        h('div', { class: 'table-wrap' }, h('table', { class: 'stack' },
          h('thead', null, h('tr', null,
            ['Owner', 'Nodes', 'Standing', 'Verified', 'Audits passed', 'Mismatches', withCredits ? 'Credits' : null]
              .filter(Boolean).map((t) => h('th', { scope: 'col' }, t)))),
          h('tbody', null, ownerList.map((o) => {
            const fuel = balances.get(`owner:${o.owner}`);
            return h('tr', { data: { owner: o.owner } },
              cell('Owner', h('span', { class: 'mono' }, o.owner)),
              cell('Nodes', fmt.int(o.nodes)),
              cell('Standing', h('span', { class: `badge standing-${o.standing}` }, o.standing)),
              cell('Verified', fmt.int(o.record.verified)),
              cell('Audits passed', fmt.int(o.record.audits_passed)),
              cell('Mismatches', fmt.int(o.record.mismatches)),
              withCredits ? cell('Credits', fuel === undefined ? '—' : fmt.credits(fuel, perCredit)) : null);
          })))));
    }
    const accountList = (account && account.accounts) || [];
    accounts.hidden = accountList.length === 0;
    if (accountList.length) {
      fill(accounts, h('h2', null, 'Accounts'),
        h('p', { class: 'muted small' }, 'Every balance of the pool, in credits (you own this pool).'),
        h('ul', { class: 'accounts' }, accountList.map((b) => h('li', null,
          h('span', { class: 'mono' }, b.account), ' ', h('strong', null, fmt.credits(b.fuel, perCredit))))));
    }
  }

  poll(step, 5000, ctx.signal, (error) => ctx.fail(error, 'nodes'));
}

function nodeCard(n) {
  const caps = n.capabilities || {};
  const labels = Object.entries(n.labels || {});
  return h('li', { class: 'card node-card', data: { nodeId: n.node_id, state: n.state } },
    h('div', { class: 'card-title' },
      h('span', { class: 'node-name' }, n.name || n.node_id),
      h('span', { class: `badge node-${n.state}` }, n.state)),
    n.state_reason ? h('p', { class: 'reason' }, n.state === 'paused' ? `Paused by its owner: ${n.state_reason}` : n.state_reason) : null,
    facts([
      ['Running', `${fmt.int(n.running)} of ${fmt.int(n.slots)} slots`],
      ['Cores', fmt.int(caps.cores)],
      ['Memory', fmt.bytes(caps.memory_bytes)],
      ['Disk free', caps.disk_free_bytes !== undefined ? fmt.bytes(caps.disk_free_bytes) : ''],
      ['Platform', [caps.os, caps.arch].filter(Boolean).join(' / ')],
      ['Tasks done', fmt.int(n.tasks_succeeded)],
      ['Standing', n.standing ? fmt.standing(n.standing) : ''],
      ['Last seen', n.state === 'online' ? '' : fmt.ago(Date.now() - n.last_seen_ms_ago)],
      ['Agent', n.agent_version],
      ['Node id', h('span', { class: 'mono' }, n.node_id)],
    ]),
    labels.length
      ? h('ul', { class: 'labels' }, labels.map(([k, v]) => h('li', { class: 'label' }, `${k}=${v}`)))
      : null);
}
