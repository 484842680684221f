// The job list in the side bar: loaded from /api/jobs, live state from /api/events (main.js).
import { $, app, STATES, ago, pageError } from './util.js';
import { api } from './api.js';
import { showConfigError } from './config.js';
import { drawSoon } from './frames.js';

export async function loadJobs() {
  const {status, data} = await api('GET', '/jobs');
  if (status !== 200) return pageError(data.error || 'Could not load the jobs.');
  app.title = data.title || 'Pushbutton';
  app.jobs = data.jobs;
  app.byId = Object.fromEntries(data.jobs.map(j => [j.id, j]));
  showConfigError(data.config_error);  // jobs.ini failed to reload: the banner says why
  $('#app-title').text(app.title);
  const chosen = $('#h-job').val();
  $('#h-job').empty().append($('<option>', {value: '', text: 'All jobs'}),
    app.jobs.map(j => $('<option>', {value: j.id, text: j.title}))).val(chosen);
  renderJobs();
}

function jobStatus(job) {
  const mine = [...app.active.values()].filter(r => r.job === job.id);
  const running = mine.filter(r => r.state === 'running').length;
  const queued = mine.filter(r => r.state === 'queued').length;
  const waiting = mine.filter(r => r.state === 'awaiting_approval').length;
  const parts = [];
  if (waiting) parts.push(`${waiting} awaiting approval`);
  if (running) parts.push(`${running} running`);
  if (queued) parts.push(`${queued} queued`);
  const last = job.last_run;
  parts.push(last ? `last run ${(STATES[last.state] || last.state).toLowerCase()} ${ago(last.finished || last.created)}`
    : 'never run');
  return {text: parts.join(' · '), state: running ? 'running' : queued ? 'queued' : waiting ? 'awaiting_approval' : last ? last.state : 'none'};
}

// Schedules (server/schedules.py): the soonest next fire time, shown in its schedule's zone.
const ZONED = {weekday: 'short', month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit', timeZoneName: 'short'};
function inZone(iso, zone) {
  try { return new Date(iso).toLocaleString(undefined, {...ZONED, timeZone: zone}); }
  catch { return new Date(iso).toLocaleString(undefined, ZONED); }  // a zone this browser does not know
}

// The fire times still ahead (the list is fetched once; past ones drop out, then it is fetched again).
let refetched = 0;
function ahead(s) {
  const left = (s.upcoming || []).filter(t => Date.parse(t) > Date.now());
  if (s.next && !left.length && Date.now() - refetched > 60000) { refetched = Date.now(); loadJobs(); }
  return left;
}

function nextRun(job) {
  const schedules = (job.schedules || []).map(s => ({...s, ahead: ahead(s)}));
  if (!schedules.length) return null;
  const title = schedules.map(s => `${s.name}: ${s.cron} (${s.timezone})` + (s.ahead.length
    ? `, next ${s.ahead.map(t => inZone(t, s.timezone)).join(', ')}` : s.enabled ? ', not run here' : ', disabled'))
    .join('\n');
  const soonest = schedules.filter(s => s.ahead.length).sort((a, b) => (a.ahead[0] < b.ahead[0] ? -1 : 1))[0];
  if (soonest) return {text: `Next run ${inZone(soonest.ahead[0], soonest.timezone)} (${soonest.name})`, title};
  if (schedules.some(s => s.next)) return null;  // being fetched again
  const off = schedules.some(s => s.enabled) ? 'Schedules do not run in this window' : 'Schedule disabled';
  return {text: off, title};
}

export function renderJobs() {
  const query = $('#search').val().trim().toLowerCase();
  const current = location.hash.match(/^#\/jobs\/([^/?]+)/)?.[1];
  // A redraw (a run's state, the schedules, the half-minute refresh) must not take the keyboard's
  // place away: the link that had focus gets it back in the new list.
  const focused = $('#job-list a.job:focus').attr('href');
  const $list = $('#job-list').empty();
  for (const job of app.jobs) {
    if (query && !`${job.title} ${job.description} ${job.id}`.toLowerCase().includes(query)) continue;
    const status = jobStatus(job);
    const next = nextRun(job);
    $list.append($('<li>').append($('<a>', {href: `#/jobs/${encodeURIComponent(job.id)}`, class: 'job'})
      .attr('aria-current', current && decodeURIComponent(current) === job.id ? 'page' : null)
      .append($('<span>', {class: 'job-title', text: job.title}),
        $('<span>', {class: 'job-desc', text: job.description}),
        $('<span>', {class: `job-status s-${status.state}`, text: status.text}),
        next ? $('<span>', {class: 'job-next', text: next.text, title: next.title}) : null)));
  }
  if (focused) $list.find('a.job').filter((_, a) => a.getAttribute('href') === focused).trigger('focus');
  const none = query && !$list.children().length;
  $('#no-match').text(none ? `No job matches “${query}”.` : '').prop('hidden', !none);
}

export const renderJobsSoon = () => drawSoon('jobs', renderJobs);
