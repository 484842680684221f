// A remote run's hosts: one row each with its live state, exit code and (for a failed host) its
// reason one click away, a count per state, and the host filter of the output. Every state event
// carries the whole list: only the newest list is drawn (frames.js), and rows are diffed by name,
// so a 100-host fan-out touches only what changed.
import { $ } from './util.js';
import { cancelDraw, drawSoon } from './frames.js';

// server/fanout.py's shown_state: a failed host never reached is `unreachable`.
const UNREACHABLE = /^(refused:|unreachable:|timed out:|auth failed:|host key)/;
const ORDER = ['succeeded', 'failed', 'unreachable', 'timed_out', 'cancelled', 'interrupted', 'running',
  'connecting', 'queued'];
const LABEL = {timed_out: 'timed out'};

export function shownState(h) {
  return h.state === 'failed' && h.exit_code === null && UNREACHABLE.test(h.error || '') ? 'unreachable' : h.state;
}

export const hostsView = {
  rows: new Map(),  // name -> {li, key}
  onFilter: null,   // (name or '') -> void: the run view refilters its output

  reset() {
    cancelDraw('hosts');
    this.rows.clear();
    $('#host-list').empty();
    $('#host-filter').empty().append($('<option>').val('').text('All hosts'));
    $('#hosts-counts').text('');
    $('#run-hosts').prop('hidden', true);
  },

  update(hosts) {
    if (hosts?.length) drawSoon('hosts', () => this.draw(hosts));
  },

  draw(hosts) {
    $('#run-hosts').prop('hidden', false);
    const fresh = document.createDocumentFragment();
    const options = document.createDocumentFragment();
    const counts = {};
    for (const h of hosts) {
      const state = shownState(h);
      counts[state] = (counts[state] || 0) + 1;
      const key = `${state}\n${h.exit_code}\n${h.error}`;
      let row = this.rows.get(h.name);
      if (!row) {
        row = {li: this.row(h.name), key: ''};
        this.rows.set(h.name, row);
        fresh.append(row.li);
        const option = document.createElement('option');
        option.value = option.textContent = h.name;
        options.append(option);
      }
      if (row.key !== key) {
        row.key = key;
        this.fill(row.li, h, state);
      }
    }
    if (fresh.childNodes.length) {
      document.getElementById('host-list').append(fresh);
      document.getElementById('host-filter').append(options);
    }
    $('#hosts-counts').text(ORDER.filter(s => counts[s]).map(s => `${counts[s]} ${LABEL[s] || s}`).join(' · '));
  },

  row(name) {
    const li = document.createElement('li');
    li.className = 'host-row';
    li.dataset.host = name;
    const button = document.createElement('button');
    button.type = 'button';
    button.className = 'host-name link';
    button.textContent = name;
    button.title = `Show only ${name}'s output`;
    button.addEventListener('click', () => this.choose(name));
    const state = document.createElement('span');
    const exit = document.createElement('span');
    exit.className = 'host-exit muted';
    const why = document.createElement('details');
    why.className = 'host-error';
    why.hidden = true;
    const summary = document.createElement('summary');
    summary.textContent = 'Why';
    why.append(summary, document.createElement('p'));
    li.append(button, state, exit, why);
    return li;
  },

  fill(li, h, state) {
    const [, badge, exit, why] = li.children;
    badge.className = `badge s-${state}`;
    badge.textContent = LABEL[state] || state;
    exit.textContent = h.exit_code === null || h.exit_code === undefined ? '' : `exit ${h.exit_code}`;
    why.hidden = !h.error;
    why.lastElementChild.textContent = h.error || '';
  },

  // Clicking a host shows only its output and opens its reason, if it has one.
  choose(name) {
    $('#host-filter').val(name);
    const row = this.rows.get(name);
    const why = row?.li.querySelector('details');
    if (why && !why.hidden) why.open = true;
    this.onFilter?.(name);
  },
};

$('#host-filter').on('change', e => hostsView.onFilter?.(e.target.value));
