// Pushbutton's page: sign-in, job list, generated forms, live run view, history, audit, API tokens.
// Routes live in the hash: #/ (jobs), #/jobs/<id> (form), #/runs/<id> (one run),
// #/history?job=&state=&user= (past runs), #/audit?user=&action=&since= (admins), #/tokens,
// #/approvals (runs waiting for my decision).
import { $, app, FINAL, STATES, pageError } from './util.js';
import { api } from './api.js';
import { loadJobs, renderJobs, renderJobsSoon } from './jobs.js';
import { jobView } from './form.js';
import { rerun, runView } from './run.js';
import { historyView } from './history.js';
import { ACTIONS, auditView } from './audit.js';
import { tokensView } from './tokens.js';
import { approvals } from './approvals.js';
import { notify } from './notify.js';
import { showMe, signOut, whoAmI } from './signin.js';

// One /api/events stream for the whole page: which runs are active, and every change of state.
function listen() {
  const es = new EventSource('api/events');
  es.addEventListener('ready', e => {
    $('#live-lost').prop('hidden', true);
    app.active = new Map(JSON.parse(e.data).active.map(r => [r.id, r]));
    loadJobs();  // a fresh snapshot: last runs may have changed while we were away
    approvals.refresh();
  });
  es.addEventListener('state', e => onRunChange(JSON.parse(e.data)));
  // jobs.ini reloaded (or failed to): the server ends the stream; reconnect at once for the new
  // rights, and `ready` reloads the jobs (and the config banner).
  es.addEventListener('catalog', () => { es.close(); listen(); });
  es.onerror = () => {
    $('#live-lost').prop('hidden', false);
    // Refused rather than dropped? api/me tells (a 401 there ends the page's session: api.expired).
    if (es.readyState === EventSource.CLOSED) setTimeout(async () => (await api('GET', '/me')).status !== 401 && listen(), 3000);
  };
}

function onRunChange(run) {
  const job = app.byId[run.job];
  if (FINAL.has(run.state)) {
    app.active.delete(run.id);
    if (job && (!job.last_run || job.last_run.id <= run.id)) job.last_run = run;
  } else {
    app.active.set(run.id, run);
  }
  renderJobsSoon();
  historyView.update(run);
  approvals.changed(run);
  notify.changed(run);
  if (jobView.id === run.job) jobView.recent();
}

function route() {
  const [path, search] = location.hash.replace(/^#/, '').split('?');
  const parts = path.split('/').filter(Boolean).map(decodeURIComponent);
  const view = parts[0] === 'jobs' && parts[1] ? 'job' : parts[0] === 'runs' && /^\d+$/.test(parts[1] || '') ? 'run'
    : ['history', 'audit', 'tokens', 'approvals'].includes(parts[0]) ? parts[0] : 'home';
  pageError('');
  if (view !== 'run') runView.close();
  if (view !== 'job') {
    jobView.keepDraft();  // what was typed, for when the form is opened again
    jobView.id = null;
  }
  if (view !== 'approvals') approvals.close();
  $('.view').prop('hidden', true);
  $(`#view-${view}`).prop('hidden', false);
  $('body').toggleClass('at-home', view === 'home');
  document.title = app.title;
  if (view === 'job') jobView.open(parts[1]);
  if (view === 'run') runView.open(Number(parts[1]));
  if (view === 'history') historyView.open(new URLSearchParams(search));
  if (view === 'audit') auditView.open(new URLSearchParams(search));
  if (view === 'tokens') tokensView.open();
  if (view === 'approvals') approvals.open();
  renderJobs();
  // A new view, or another run (Run again): focus on its heading, not left on a button that went.
  if (app.view !== undefined && (view !== app.view || view === 'run')) $(`#view-${view} h2`).first().trigger('focus');
  app.view = view;
}

$(async () => {
  for (const [state, label] of Object.entries(STATES)) $('#h-state').append($('<option>', {value: state, text: label}));
  for (const [action, label] of Object.entries(ACTIONS)) $('#a-action').append($('<option>', {value: action, text: label}));
  $('#search').on('input', renderJobs);
  $('#job-form').on('submit', e => { e.preventDefault(); notify.ask(); jobView.submit(); });
  $('#fields').on('input change', 'input, select, textarea', e => {  // checked as you type
    const p = app.byId[jobView.id]?.params.find(x => x.name === e.target.name);
    if (p) jobView.check(p);
    jobView.schedulePreview();
  });
  $('#stop').on('click', () => runView.stop());
  $('#approve').on('click', () => approvals.decide('approve'));
  $('#reject').on('click', () => approvals.decide('reject'));
  $('#rerun').on('click', () => { notify.ask(); rerun(runView.run); });
  $('#copy').on('click', () => runView.copy());
  $('#download').on('click', () => runView.download());
  $('#follow').on('click', () => runView.resume());
  $('#log').on('scroll', () => runView.onScroll());
  $('#history-filters').on('change submit', e => {
    e.preventDefault();
    const q = new URLSearchParams();
    for (const [key, id] of [['job', '#h-job'], ['state', '#h-state'], ['user', '#h-user']]) {
      const value = $(id).val().trim();
      if (value) q.set(key, value);
    }
    location.hash = `#/history${q.size ? `?${q}` : ''}`;
  });
  $('#history-more').on('click', () => historyView.more());
  $('#audit-filters').on('change submit', e => { e.preventDefault(); auditView.apply(); });
  $('#audit-more').on('click', () => auditView.more());
  $('#token-form').on('submit', e => { e.preventDefault(); tokensView.create(); });
  $('#token-copy').on('click', () => tokensView.copy());
  $('#sign-out').on('click', signOut);
  setInterval(renderJobsSoon, 30000);
  showMe(await whoAmI());
  jobView.restoreDrafts(app.me?.user);  // what was typed when the session ended, for its own user
  api.expired = () => {  // the session ended (signed out elsewhere, expired): sign in again, typing kept
    jobView.saveDrafts(app.me?.user);
    location.reload();
  };
  await loadJobs();
  window.addEventListener('hashchange', route);
  route();
  listen();
});
