// Your personal API tokens: listed without their values (the server keeps only hashes), created
// (the value shown once, with a copy button) and revoked.
import { $, app, copyText, pageError, when } from './util.js';
import { api } from './api.js';
import { ask } from './confirm.js';

export const tokensView = {
  shown: null,  // the id of the token whose value is on screen

  async open() {
    document.title = `API tokens — ${app.title}`;
    $('#token-new, #token-error').prop('hidden', true);
    $('#token-value').val('');
    // Under `auth = token` the server's one token is the only credential (the nav link is hidden).
    const none = !app.me?.auth || app.me.auth === 'token';
    $('#token-form, #token-table').prop('hidden', none);
    if (none) {
      $('#tokens-empty').prop('hidden', true);
      return $('#token-error').text('This server has no personal API tokens: everyone uses its one access token.')
        .prop('hidden', false);
    }
    await this.list();
  },

  async list() {
    const {status, data} = await api('GET', '/tokens');
    if (status !== 200) return pageError(data.error || 'Could not load your tokens.');
    $('#token-rows').empty().append(data.tokens.map(t => $('<tr>', {'data-token': t.id}).append(
      $('<td>', {text: t.name}),
      $('<td>', {text: when(t.created), 'data-label': 'Created'}),
      $('<td>', {text: t.last_used ? when(t.last_used) : 'never', 'data-label': 'Last used'}),
      $('<td>').append($('<button>', {type: 'button', class: 'small', text: 'Revoke', 'aria-label': `Revoke ${t.name}`})
        .on('click', () => this.revoke(t))))));
    $('#tokens-empty').prop('hidden', data.tokens.length > 0);
  },

  async create() {
    const name = $('#token-name').val().trim();
    const problem = text => $('#token-error').text(text).prop('hidden', !text);
    if (!name) {
      problem('Give the token a name, to know later what uses it.');
      return $('#token-name').trigger('focus');
    }
    const $button = $('#token-create');
    if ($button.prop('disabled')) return;
    $button.prop('disabled', true);
    const {status, data} = await api('POST', '/tokens', {name});
    $button.prop('disabled', false);
    if (status !== 200 && status !== 201) return void problem(data.error || 'Could not create the token.');
    problem('');
    $('#token-name').val('');
    this.shown = data.id;
    $('#token-new-name').text(data.name);
    $('#token-note').text('');
    $('#token-new').prop('hidden', false);
    $('#token-value').val(data.token).trigger('focus').trigger('select');
    await this.list();
  },

  async copy() {
    await copyText($('#token-value').val());
    $('#token-note').text('Copied.');
  },

  async revoke(token) {
    const yes = await ask(`Revoke “${token.name}”?`, 'Scripts and jobs that use this token are refused from now on. ' +
      'This cannot be undone; you can create a new token.', 'Revoke the token', 'Keep it', true);
    if (!yes) return;
    const {status, data} = await api('DELETE', `/tokens/${token.id}`);
    if (status !== 204 && status !== 200) pageError(data.error || 'Could not revoke the token.');
    if (token.id === this.shown) $('#token-new').prop('hidden', true);
    await this.list();
  },
};
