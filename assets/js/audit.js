// The audit log, for admins: who signed in, ran, stopped, was refused what; newest first, filtered
// by user, action and day, paged with `before`. Entries go into the DOM as text.
import { $, app, pageError, when } from './util.js';
import { api } from './api.js';

const PAGE = 100;
export const ACTIONS = {
  'signin': 'Signed in', 'signin.failed': 'Sign-in failed', 'signout': 'Signed out',
  'run.start': 'Started a run', 'run.rerun': 'Ran again', 'run.stop': 'Stopped a run',
  'run.approve': 'Approved a run', 'run.reject': 'Rejected a run', 'run.expire': 'Approval expired', 'refused': 'Refused',
  'token.create': 'Created a token', 'token.revoke': 'Revoked a token',
  'user.add': 'Added a user', 'user.remove': 'Removed a user', 'user.passwd': 'Changed a password',
  'config.reload': 'Reloaded jobs.ini', 'config.error': 'jobs.ini not reloaded',
  'notify.failed': 'Notification failed', 'schedule.skip': 'Schedule skipped',
};

// The detail as `key: value` pairs, a run's values as `name=value, ...`: readable, and always text.
const value = v => Array.isArray(v) ? v.map(value).join(', ')
  : v !== null && typeof v === 'object' ? Object.entries(v).map(([k, x]) => `${k}=${value(x)}`).join(', ') : String(v);
const details = detail => Object.entries(detail || {}).map(([k, v]) => `${k}: ${value(v)}`).join(' · ');

export const auditView = {
  filter: {user: '', action: '', since: ''},
  last: null,

  async open(query) {
    this.filter = {user: query.get('user') || '', action: query.get('action') || '', since: query.get('since') || ''};
    $('#a-user').val(this.filter.user);
    $('#a-action').val(this.filter.action);
    $('#a-since').val(this.filter.since);
    $('#audit-rows').empty();
    $('#audit-empty, #audit-more').prop('hidden', true);
    this.last = null;
    document.title = `Audit — ${app.title}`;
    await this.more();
  },

  async more() {
    const q = new URLSearchParams({limit: PAGE});
    if (this.filter.user) q.set('user', this.filter.user);
    if (this.filter.action) q.set('action', this.filter.action);
    if (this.filter.since) q.set('since', Math.floor(new Date(`${this.filter.since}T00:00`).getTime() / 1000));  // local midnight
    if (this.last) q.set('before', this.last);
    const wanted = JSON.stringify(this.filter);
    const {status, data} = await api('GET', `/audit?${q}`);
    if (wanted !== JSON.stringify(this.filter)) return;
    if (status !== 200) return pageError(status === 403 ? 'Only admins can read the audit log.' : data.error);
    $('#audit-rows').append(data.entries.map(e => this.row(e)));
    if (data.entries.length) this.last = data.entries.at(-1).id;
    $('#audit-more').prop('hidden', data.entries.length < PAGE);
    $('#audit-empty').prop('hidden', $('#audit-rows').children().length > 0);
  },

  row(e) {
    return $('<tr>', {'data-entry': e.id}).append(
      $('<td>', {text: when(e.time), 'data-label': 'Time'}),
      $('<td>', {text: e.user || '–', 'data-label': 'User'}),
      $('<td>', {text: ACTIONS[e.action] || e.action, title: e.action, class: 'nowrap', 'data-label': 'Action'}),
      $('<td>', {text: e.target || '–', 'data-label': 'Target'}),
      $('<td>', {text: e.ok ? 'ok' : 'failed', class: e.ok ? null : 'failed', 'data-label': 'Result'}),
      $('<td>', {text: e.address || '–', 'data-label': 'Address'}),
      $('<td>', {class: 'detail', text: details(e.detail), 'data-label': 'Details'}));
  },

  // The filters live in the address, as history's do.
  apply() {
    const q = new URLSearchParams();
    for (const [key, id] of [['user', '#a-user'], ['action', '#a-action'], ['since', '#a-since']]) {
      const value = String($(id).val()).trim();
      if (value) q.set(key, value);
    }
    location.hash = `#/audit${q.size ? `?${q}` : ''}`;
  },
};
