// The two-person rule in the page: the header's count of runs waiting for my decision (live: the
// page's /api/events stream says when a run enters or leaves `awaiting_approval`), the list of them
// (#/approvals), and on a run's view who must decide, the stored preview of what will run, and, for
// an approver, Approve / Reject with a comment. The server decides who may approve; the page only
// offers the buttons to the runs api/approvals lists for this user.
import { $, app, badge, pageError, paramsText, showPreview, time } from './util.js';
import { api } from './api.js';

const WORDS = {approved: 'Approved', rejected: 'Rejected', expired: 'Expired'};

export const approvals = {
  runs: [],       // the runs waiting for my decision, newest first
  ids: new Set(),
  shown: false,   // the #/approvals view is open
  onRun: null,    // the run whose view shows the approval panel
  loading: null,

  // Refetch the list (coalesced: one request in flight, one more after it if asked meanwhile).
  refresh() {
    if (this.loading) return void (this.again = true);
    this.loading = (async () => {
      const {status, data} = await api('GET', '/approvals');
      this.loading = null;
      if (status === 200) {
        this.runs = data.runs || [];
        this.ids = new Set(this.runs.map(r => r.id));
        this.render();
      } else if (status === 404) {
        $('#nav-approvals').prop('hidden', true);  // a server without approvals
      }
      if (this.again) {
        this.again = false;
        this.refresh();
      }
    })();
  },

  // A state change from /api/events: into or out of awaiting_approval changes the list.
  changed(run) {
    if (run.state === 'awaiting_approval' || this.ids.has(run.id)) this.refresh();
  },

  render() {
    const count = this.runs.length;
    $('#nav-approvals').prop('hidden', false);
    $('#approvals-count').text(count ? String(count) : '').prop('hidden', !count)
      .attr('aria-label', `${count} waiting for you`);
    if (this.shown) this.list();
    if (this.onRun) this.panel(this.onRun);
  },

  open() {
    this.shown = true;
    document.title = `Approvals — ${app.title}`;
    this.list();
    this.refresh();
  },

  close() {
    this.shown = false;
  },

  list() {
    $('#approvals-empty').prop('hidden', this.runs.length > 0);
    $('#approval-list').empty().append(this.runs.map(r => {
      const job = app.byId[r.job];
      return $('<li>', {class: 'approval-item'}).append(
        $('<a>', {href: `#/runs/${r.id}`, text: `${job ? job.title : r.job} — run ${r.id}`}), ' ', badge(r.state),
        $('<p>', {class: 'muted', text: `Requested by ${r.user || '–'} ${time(r.created)}`}),
        $('<p>', {text: paramsText(r.params, job) || 'No parameters.'}),
        showPreview($('<div>', {class: 'preview'}), r.preview));
    }));
  },

  // The run view's approval part: who must decide (or who did, and what they said), what will
  // run, and the decision form for an approver of this run.
  panel(run) {
    this.onRun = run;
    const a = run.approval;
    $('#run-approval').prop('hidden', !a);
    if (!a) return;
    let text;
    if (a.state === 'waiting') text = `Waiting for approval by ${a.approvers.join(', ')}`;
    else if (a.state === 'expired' && !a.by) text = 'Expired: nobody approved it in time.';
    else if (a.state === 'cancelled') text = 'Cancelled before anyone decided.';
    else if (a.state === 'interrupted') text = 'Not decided: the server stopped while it waited.';
    else text = `${WORDS[a.state] || a.state} by ${a.by || '–'}${a.at ? ` ${time(a.at)}` : ''}`;
    $('#approval-status').text(text);
    $('#approval-comment-text').text(a.comment ? `“${a.comment}”` : '').prop('hidden', !a.comment);
    showPreview($('#approval-preview'), run.preview);
    const mine = a.state === 'waiting' && run.state === 'awaiting_approval' && this.ids.has(run.id);
    $('#approval-form').prop('hidden', !mine);
  },

  leaveRun() {
    this.onRun = null;
  },

  async decide(verdict) {
    const run = this.onRun;
    if (!run) return;
    const comment = $('#approval-comment').val().trim();
    const $buttons = $('#approve, #reject').prop('disabled', true);
    const {status, data} = await api('POST', `/runs/${run.id}/${verdict}`, comment ? {comment} : {});
    $buttons.prop('disabled', false);
    if (status === 202) {
      $('#approval-comment').val('');
      $('#approval-note').text(verdict === 'approve' ? 'Approved.' : 'Rejected.');
      this.refresh();
      if (this.onRun?.id === data.run.id) this.panel(data.run);
      return;
    }
    if (status === 409) this.refresh();
    $('#approval-note').text('');
    pageError(data.error || 'The decision could not be recorded.');
  },
};
