// Who the page acts for: api/me; the sign-in form when the server signs people in itself
// (`auth = local`); the user's name and Sign out in the header. With `auth = token` the page is only
// served to the token's holder; with `auth = header` the reverse proxy signs people in and out; with
// `auth = oidc` the identity provider's pages do (the page sends the browser there and back).
import { $, app } from './util.js';
import { api } from './api.js';

const PASSWORD_METHODS = ['local', 'ldap'];  // the page's form signs in (and out) with these
const NOTE = 'pushbutton.signin-note';  // a line for the sign-in form after a reload (signed out)
const ELSEWHERE = {
  token: 'Open the address Pushbutton printed when it started (it ends in ?token=…).',
  header: 'Sign in through your organisation’s sign-in page, then reload this page.',
};

// The signed-in user ({user, teams, admin, method, auth}), after the sign-in form if the server
// wants one; null from a server that does not know users (it has no api/me): the page acts as before.
export async function whoAmI() {
  const {status, data} = await api('GET', '/me');
  if (status === 200) return data;
  if (status === 401) return signIn(data.auth || 'local');
  return null;
}

function show(which) {
  $('body').addClass('signed-out');
  $('#signin').prop('hidden', false);
  $('#signin-form').prop('hidden', which !== 'form');
  $('#signin-elsewhere').prop('hidden', which === 'form');
  document.title = `Sign in — ${app.title}`;
}

function signIn(method) {
  if (method === 'oidc') return providerSignIn();
  if (!PASSWORD_METHODS.includes(method)) {
    show('elsewhere');
    $('#signin-hint').text(ELSEWHERE[method] || 'You are not signed in.');
    return new Promise(() => {});  // nothing to do here until the user has signed in elsewhere
  }
  show('form');
  const note = sessionStorage.getItem(NOTE);
  sessionStorage.removeItem(NOTE);
  $('#signin-note').text(note || '').prop('hidden', !note);
  $('#signin-user').trigger('focus');
  return new Promise(resolve => {
    $('#signin-form').on('submit', async e => {
      e.preventDefault();
      const me = await submit();
      if (!me) return;
      $('#signin-form').off('submit');
      $('#signin-password').val('');
      $('#signin').prop('hidden', true);
      $('body').removeClass('signed-out');
      resolve(me);
    });
  });
}

// `auth = oidc`: straight to the identity provider (auth/oidc/login, which comes back to the view
// asked for), unless it just sent the browser back with an error or the user just signed out: then
// say so, with a Sign in button.
const PROVIDER_ERRORS = {
  state: 'That sign-in expired or was started in another browser. Sign in again.',
  token: 'The identity provider’s answer could not be verified, so no one was signed in.',
  provider: 'The identity provider did not sign you in.',
  user: 'The identity provider did not say who you are in a form Pushbutton accepts. Ask your administrator.',
  unavailable: 'The identity provider cannot be reached. Try again in a moment.',
};

function providerSignIn() {
  const [path, search] = location.hash.replace(/^#/, '').split('?');
  const error = path === '/signin' ? new URLSearchParams(search).get('error') : null;
  const next = path === '/signin' ? '' : location.hash;
  const url = 'auth/oidc/login' + (next.startsWith('#/') ? `?next=${encodeURIComponent(next)}` : '');
  const note = sessionStorage.getItem(NOTE);
  sessionStorage.removeItem(NOTE);
  if (error === null && !note) {
    location.assign(url);
  } else {
    show('elsewhere');
    $('#signin-hint').text(error !== null ? PROVIDER_ERRORS[error] || 'Signing in failed.' : note)
      .attr('role', error !== null ? 'alert' : 'status');
    $('#signin-provider').prop('hidden', false).on('click', () => location.assign(url)).trigger('focus');
  }
  return new Promise(() => {});  // the provider sends the browser back to a fresh page
}

let wait = 0;  // the countdown after too many attempts

function problem(text) {
  $('#signin-error').text(text).prop('hidden', !text);
}

async function submit() {
  const user = $('#signin-user').val().trim();
  const password = $('#signin-password').val();
  if (!user || !password) {
    problem('Enter your user name and password.');
    $(user ? '#signin-password' : '#signin-user').trigger('focus');
    return null;
  }
  const $button = $('#signin-button');
  if ($button.prop('disabled')) return null;
  $button.prop('disabled', true);
  const {status, data, headers} = await api('POST', '/session', {user, password});
  if (status === 200) {
    const me = await api('GET', '/me');
    $button.prop('disabled', false);
    problem(me.status === 200 ? '' : me.data.error || 'Signed in, but the server did not say who you are.');
    return me.status === 200 ? me.data : null;
  }
  $('#signin-note').prop('hidden', true);
  if (status === 429) {
    countdown(Number(headers?.get('Retry-After')) || Number(data.retry_after) || 30);
  } else {
    $button.prop('disabled', false);
    problem(status === 401 ? 'Wrong user name or password.' : data.error || 'Could not sign in.');
    $('#signin-password').val('').trigger('focus');
  }
  return null;
}

// Too many failed attempts: say for how long, and offer the button again when it is over.
function countdown(seconds) {
  clearInterval(wait);
  let left = Math.ceil(seconds);
  const tick = () => {
    if (left <= 0) {
      clearInterval(wait);
      $('#signin-button').prop('disabled', false);
      return problem('');
    }
    problem(`Too many attempts: try again in ${left} s.`);
    left -= 1;
  };
  tick();
  wait = setInterval(tick, 1000);
}

// The header: who is signed in; Sign out where the page signed them in; Audit for admins.
export function showMe(me) {
  app.me = me;
  if (!me) return;
  $('#me-name').text(me.user).attr('title', me.teams?.length ? `Teams: ${me.teams.join(', ')}` : null);
  $('#sign-out').prop('hidden', !PASSWORD_METHODS.includes(me.method) && me.method !== 'oidc');
  $('#me').prop('hidden', false);
  $('#nav-audit').prop('hidden', !me.admin);
  $('#nav-tokens').prop('hidden', !me.auth || me.auth === 'token');
}

// Sign out, then start again from a fresh page: nothing the previous user saw stays in memory.
// Signed in through an identity provider: then to its sign-out too, if it has one (it comes back here).
export async function signOut() {
  $('#sign-out').prop('disabled', true);
  if (app.me?.method === 'oidc') return providerSignOut();
  const {status} = await api('DELETE', '/session');
  sessionStorage.setItem(NOTE, status === 204 || status === 401 ? 'You have signed out.' : 'Signing out failed.');
  history.replaceState(null, '', location.pathname);
  location.reload();
}

async function providerSignOut() {
  const res = await fetch('auth/oidc/logout', {method: 'POST'}).catch(() => null);
  const data = res ? await res.json().catch(() => ({})) : {};
  const done = res?.status === 200 || res?.status === 401;
  sessionStorage.setItem(NOTE, done ? 'You have signed out.' : 'Signing out failed.');
  if (done && data.end_session) return location.assign(data.end_session);
  history.replaceState(null, '', location.pathname);
  location.reload();
}
