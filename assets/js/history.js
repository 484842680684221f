// Past runs, newest first, filtered by job, result and who started them; rows follow live state changes.
import { $, app, FINAL, badge, duration, mayRun, pageError, paramsText, textNode, time } from './util.js';
import { api } from './api.js';
import { rerun } from './run.js';

export const historyView = {
  filter: {job: '', state: '', user: ''},
  last: null,
  users: new Set(),  // names seen, offered in the Started by filter

  async open(query) {
    this.filter = {job: query.get('job') || '', state: query.get('state') || '', user: query.get('user') || ''};
    $('#h-job').val(this.filter.job);
    $('#h-state').val(this.filter.state);
    $('#h-user').val(this.filter.user);
    $('#history-rows').empty();
    this.last = null;
    document.title = `History — ${app.title}`;
    this.ticker ||= setInterval(() => this.tick(), 1000);
    await this.more();
  },

  async more() {
    const q = new URLSearchParams({limit: 50});
    if (this.filter.job) q.set('job', this.filter.job);
    if (this.filter.state) q.set('state', this.filter.state);
    if (this.filter.user) q.set('user', this.filter.user);
    if (this.last) q.set('before', this.last);
    const wanted = JSON.stringify(this.filter);
    // State changes that arrive while the page is fetched wait for it: applied first, a run in both
    // would be listed twice (and a prepended row could land out of order).
    this.loading = true;
    let answer;
    try {
      answer = await api('GET', `/runs?${q}`);
    } finally {
      this.loading = false;
    }
    const {status, data} = answer;
    const waiting = (this.waiting || []).splice(0);
    if (status !== 200) return pageError(data.error);
    if (wanted !== JSON.stringify(this.filter)) return;
    const shown = new Set($('#history-rows tr').map((_, tr) => tr.dataset.run).get());
    $('#history-rows').append(data.runs.filter(r => !shown.has(String(r.id))).map(r => this.row(r)));
    for (const run of waiting) this.update(run);
    this.offer([app.me?.user, ...data.runs.map(r => r.user)]);
    if (data.runs.length) this.last = data.runs.at(-1).id;
    if (data.runs.length < 50 && document.activeElement === $('#history-more')[0]) {
      $('#history-rows a').last().trigger('focus');  // the button goes: focus stays in the list
    }
    $('#history-more').prop('hidden', data.runs.length < 50);
    const filtered = this.filter.job || this.filter.state || this.filter.user;
    $('#history-empty').text(filtered ? 'No runs match these filters.' : 'No runs yet.')
      .prop('hidden', $('#history-rows').children().length > 0);
  },

  // A running run's Duration goes on as the run view's Elapsed does.
  tick() {
    if ($('#view-history').prop('hidden')) return;
    $('#history-rows tr.running').each((_, tr) => $(tr).find('td.duration').text(duration($(tr).data('r'))));
  },

  row(r) {
    const job = app.byId[r.job];
    return $('<tr>', {'data-run': r.id, class: r.state === 'running' ? 'running' : null}).data('r', r).append(
      $('<td>').append($('<a>', {href: `#/runs/${r.id}`, text: `Run ${r.id}`})),
      $('<td>', {text: job ? job.title : r.job, 'data-label': 'Job'}),
      $('<td>', {text: time(r.created), 'data-label': 'Started'}),
      $('<td>', {text: r.user || '–', 'data-label': 'Started by'}),
      $('<td>', {class: 'params', text: paramsText(r.params, job) || '–', 'data-label': 'Parameters'}),
      $('<td>', {'data-label': 'Result'}).append(badge(r.state), r.exit_code !== null ? textNode(` exit ${r.exit_code}`) : null),
      $('<td>', {class: 'duration', text: duration(r), 'data-label': 'Duration'}),
      $('<td>').append(FINAL.has(r.state) && mayRun(job) ? $('<button>', {type: 'button', class: 'small', text: 'Run again',
        'aria-label': `Run again (run ${r.id})`}).on('click', () => rerun(r)) : null));
  },

  update(run) {
    if ($('#view-history').prop('hidden')) return;
    if (this.loading) return void (this.waiting ||= []).push(run);
    const $old = $('#history-rows tr').filter((_, tr) => tr.dataset.run === String(run.id));
    if ($old.length) return void $old.replaceWith(this.row(run));
    const newest = Number($('#history-rows tr').first().data('run') || 0);
    const fits = (!this.filter.job || this.filter.job === run.job) && (!this.filter.state || this.filter.state === run.state)
      && (!this.filter.user || this.filter.user === run.user);
    if (fits && run.id > newest) {
      $('#history-rows').prepend(this.row(run));
      $('#history-empty').prop('hidden', true);
    }
  },

  offer(names) {
    const before = this.users.size;
    for (const name of names) if (name) this.users.add(name);
    if (this.users.size !== before) $('#h-users').empty().append([...this.users].sort().map(u => $('<option>', {value: u})));
  },
};
