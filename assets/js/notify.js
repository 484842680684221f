// Browser notifications: a run this user started ended while the tab was hidden. The permission is
// asked on a click (Run, Run again), the only time browsers allow the question; a refusal is final.
import { app, FINAL, STATES } from './util.js';

// Not in the desktop window (pywebview's bridge is there): it notifies natively (desktop/notify.py).
const usable = () => 'Notification' in window && window.isSecureContext && !('pywebview' in window);
const told = new Set();  // run ids already notified by this tab (a state can arrive twice after a reconnect)

export const notify = {
  // From a click handler: ask once, while the browser still counts the click as the user's.
  ask() {
    if (usable() && Notification.permission === 'default') {
      Promise.resolve(Notification.requestPermission()).catch(() => {});
    }
  },

  // Every change of a run's state (the page's /api/events stream).
  changed(run) {
    if (!FINAL.has(run.state) || told.has(run.id) || document.visibilityState !== 'hidden') return;
    if (!usable() || Notification.permission !== 'granted' || !app.me || run.user !== app.me.user) return;
    told.add(run.id);
    const job = app.byId[run.job];
    // One per run across tabs: the same tag replaces rather than adds.
    const note = new Notification(`${job ? job.title : run.job}: ${STATES[run.state] || run.state}`,
      {body: `Run ${run.id}${run.exit_code !== null && run.exit_code !== undefined ? ` · exit code ${run.exit_code}` : ''}`,
        tag: `pushbutton-run-${run.id}`});
    note.onclick = () => {
      window.focus();
      location.hash = `#/runs/${run.id}`;
      note.close();
    };
  },
};
