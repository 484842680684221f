// A run's artifacts (the files its job left in $PB_ARTIFACTS): listed with download links once the
// run has ended, under its output controls. Names go into the DOM as text; each path segment is
// URL-encoded into the link (a name may hold spaces, `%`, `?`, `#`). The server serves only listed
// names, always as attachments.
import { $, FINAL, n } from './util.js';
import { api } from './api.js';

function size(bytes) {
  const units = ['bytes', 'KB', 'MB', 'GB', 'TB'];
  let i = 0;
  for (; bytes >= 1024 && i < units.length - 1; i++) bytes /= 1024;
  return i ? `${bytes.toFixed(bytes < 10 ? 1 : 0)} ${units[i]}` : `${n(bytes)} ${bytes === 1 ? 'byte' : 'bytes'}`;
}

function section() {
  let el = $('#run-artifacts');
  if (!el.length) {  // made once, after the hosts (or the actions) of the run view
    el = $('<section id="run-artifacts" class="artifacts" aria-label="Artifacts" hidden>')
      .append($('<h3>').text('Artifacts'), $('<ul id="artifact-list" class="artifact-list">'));
    el.insertAfter($('#run-hosts').length ? '#run-hosts' : '#log-notice');
  }
  return el;
}

export const artifactsView = {
  id: null,      // the run shown
  loaded: null,  // the run whose list is drawn (or being fetched)

  // Called with every state of the run shown: a new run hides the list; an ended one fetches it once.
  async update(run) {
    if (run.id !== this.id) {
      Object.assign(this, {id: run.id, loaded: null});
      section().prop('hidden', true);
      $('#artifact-list').empty();
    }
    if (!FINAL.has(run.state) || this.loaded === run.id) return;
    this.loaded = run.id;
    const {status, data} = await api('GET', `/runs/${run.id}/artifacts`);
    if (status !== 200 || this.id !== run.id) return;
    this.draw(run.id, data.artifacts);
  },

  draw(id, artifacts) {
    const list = $('#artifact-list').empty();
    for (const a of artifacts) {
      const href = `api/runs/${id}/artifacts/${a.name.split('/').map(encodeURIComponent).join('/')}`;
      list.append($('<li>').append(
        $('<a>').attr({href, download: ''}).text(a.name),
        $('<span class="muted small">').text(` ${size(a.size)}`)));
    }
    section().prop('hidden', !artifacts.length);
  },
};
