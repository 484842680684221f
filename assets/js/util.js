// What every view shares: the page's state, the run states, formatting, and the page-wide error line.
// Everything here that reaches the DOM goes in as text: no string from jobs.ini or the server is
// ever parsed as HTML (jQuery's `$(string)`, `.html()`, `.append(string)` are not used on data).
export const $ = window.jQuery;
export const FINAL = new Set(['succeeded', 'failed', 'cancelled', 'timed_out', 'interrupted', 'rejected', 'expired']);
export const STATES = {awaiting_approval: 'Awaiting approval', queued: 'Queued', running: 'Running',
  succeeded: 'Succeeded', failed: 'Failed', cancelled: 'Cancelled', timed_out: 'Timed out', interrupted: 'Interrupted',
  rejected: 'Rejected', expired: 'Expired'};
export const MASK = '********';

// `me`: the signed-in user from api/me ({user, teams, admin, method, auth}); null from a server without users.
export const app = {title: 'Pushbutton', jobs: [], byId: {}, active: new Map(), prefill: null, view: undefined, me: null};

// What the user may do, to show only the buttons the server would accept (it decides; this only
// hides what it would refuse). A job carries `can_run`; a run `can_stop`, or it follows the rule:
// admins stop any run, runners the runs they started.
export const mayRun = job => Boolean(job) && job.can_run !== false;
export function mayStop(run) {
  if (typeof run.can_stop === 'boolean') return run.can_stop;
  const me = app.me;
  return !me || me.admin || (mayRun(app.byId[run.job]) && run.user === me.user);
}

export function pageError(message) {
  $('#page-error').text(message || '').prop('hidden', !message);
}

export const n = x => Number(x).toLocaleString('en-US');
export const time = iso => iso ? new Date(iso).toLocaleString() : '–';
// A time from the auth API: seconds since the epoch, or an ISO string.
export const when = t => t === null || t === undefined || t === '' ? '–'
  : new Date(typeof t === 'number' ? t * 1000 : t).toLocaleString();

export function ago(iso) {
  const s = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
  if (s < 60) return 'just now';
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return new Date(iso).toLocaleDateString();
}

export function duration(run) {
  if (!run.started) return ['queued', 'awaiting_approval'].includes(run.state) ? 'waiting' : '–';
  const ms = Math.max(0, (run.finished ? Date.parse(run.finished) : Date.now()) - Date.parse(run.started));
  const s = Math.floor(ms / 1000);
  if (s < 60) return run.finished ? `${(ms / 1000).toFixed(1)} s` : `${s} s`;
  const pad = v => String(v).padStart(2, '0');
  if (s < 3600) return `${Math.floor(s / 60)} min ${pad(s % 60)} s`;
  return `${Math.floor(s / 3600)} h ${pad(Math.floor(s / 60) % 60)} min`;
}

export function shown(value) {
  if (value === null || value === undefined || value === '') return '–';
  if (value === true) return 'yes';
  if (value === false) return 'no';
  if (typeof value === 'object' && 'size' in value) return `${value.name} (${sizeText(value.size)})`;  // a file
  return Array.isArray(value) ? value.join(', ') : String(value);
}

export function sizeText(bytes) {
  for (const [unit, factor] of [['GB', 1e9], ['MB', 1e6], ['KB', 1e3]]) {
    if (bytes >= factor) return `${Number((bytes / factor).toPrecision(3))}${unit}`;
  }
  return `${bytes} bytes`;
}

// A run's values as `Label: value · ...`: the job's labels where it still declares the parameter
// (an analyst knows "Environment", not `env`), the stored name otherwise.
export function paramsText(params, job) {
  const labels = Object.fromEntries((job?.params || []).map(p => [p.name, p.label || p.name]));
  return Object.entries(params || {}).map(([k, v]) => `${labels[k] || k}: ${shown(v)}`).join(' · ');
}
export const badge = state => $('<span>', {class: `badge s-${state}`, text: STATES[state] || state});
export const textNode = text => document.createTextNode(text);

// One argument as a POSIX shell would need it written (for showing argv; nothing is executed here).
const quote = arg => /^[\w@%+=:,./-]+$/.test(arg) ? arg : `'${arg.replace(/'/g, `'\\''`)}'`;

// A command preview ({argv, shell, targets, env, workdir, remote}, from api/jobs/<id>/preview or a
// run's stored `preview`) as lines of text: what will run, where, with what.
export function previewLines(preview) {
  if (!preview) return [];
  const argv = preview.argv || [];
  const lines = [`This will run: ${preview.shell && argv.length === 1 ? argv[0] : argv.map(quote).join(' ')}`];
  if (preview.workdir) lines.push(`In: ${preview.workdir}`);
  if (preview.env?.length) lines.push(`Environment: ${preview.env.join(', ')}`);
  if (preview.targets?.length) lines.push(`On: ${preview.targets.join(', ')}`);
  for (const [host, command] of Object.entries(preview.remote || {})) lines.push(`${host}: ${command}`);
  return lines;
}

// Fill a `.preview` element with a preview, one line each (the first, what runs: `.preview-argv`); hidden without one.
export function showPreview($el, preview) {
  return $el.empty().append(previewLines(preview).map((line, i) => $('<div>', {class: i ? 'preview-more' : 'preview-argv', text: line})))
    .prop('hidden', !preview);
}

// Text to the clipboard; without the clipboard API (not a secure context) the old way.
export async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
  } catch {
    const area = $('<textarea>', {'aria-hidden': 'true', class: 'offscreen'}).val(text).appendTo('body');
    area[0].select();
    document.execCommand('copy');
    area.remove();
  }
}
