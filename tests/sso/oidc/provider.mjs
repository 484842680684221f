// A real OpenID provider for the tests: panva's certified `oidc-provider`, configured from a JSON
// file (argv[2]) that tests/sso/oidc/fixture.py writes: the issuer and port, one client (Pushbutton),
// the accounts and their groups, the signing key. Its dev interactions serve the login and consent
// pages (any password is accepted). Prints "ready" once it listens.
//
// For the tests only, two extra routes under /test/ (not part of any real provider):
//   POST /test/tamper?mode=M  the next token answer's id_token is altered (see TAMPER), once;
//   GET  /test/stats          how often the JWKS, token and userinfo endpoints were asked.
import { readFileSync } from 'node:fs';
import Provider from 'oidc-provider';
import { CompactSign, generateKeyPair, importJWK } from 'jose';

const config = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const signingKey = config.keys[0];
const stats = { jwks: 0, token: 0, userinfo: 0, end_session: 0 };
let tamper = null;

const provider = new Provider(config.issuer, {
  clients: [config.client],
  jwks: { keys: config.keys },
  cookies: { keys: ['pushbutton-test-cookie-key'] },
  claims: {
    openid: ['sub'],
    profile: ['name', 'preferred_username'],
    email: ['email', 'email_verified'],
    groups: ['groups'],
  },
  scopes: ['openid', 'profile', 'email', 'groups'],
  conformIdTokenClaims: !config.id_token_claims,  // false: the scopes' claims go into the ID token too
  pkce: { required: () => true },  // a client that skips PKCE is refused
  features: { devInteractions: { enabled: true }, rpInitiatedLogout: { enabled: true } },
  ttl: { IdToken: 600, AccessToken: 600, AuthorizationCode: 60, Interaction: 600, Session: 3600, Grant: 3600 },
  async findAccount(ctx, id) {
    const account = config.accounts[id];
    if (!account) return undefined;
    return {
      accountId: id,
      async claims() {
        const claims = { sub: id, name: account.name || id, email: account.email || `${id}@acme.test`, email_verified: account.email_verified ?? true };
        if (account.preferred_username !== null) claims.preferred_username = account.preferred_username || id;
        if (account.groups) claims.groups = account.groups;
        return claims;
      },
    };
  },
});

const b64 = (value) => Buffer.from(JSON.stringify(value)).toString('base64url');
const parse = (part) => JSON.parse(Buffer.from(part, 'base64url').toString());

// How a token answer's id_token is altered: re-signed with the provider's own key (so only the
// claim is wrong), or broken in its signature.
const TAMPER = {
  expired: (claims) => ({ ...claims, iat: claims.iat - 7200, exp: claims.iat - 3600 }),
  audience: (claims) => ({ ...claims, aud: 'another-client' }),
  nonce: (claims) => ({ ...claims, nonce: 'not-the-nonce-sent' }),
  issuer: (claims) => ({ ...claims, iss: 'http://127.0.0.1:1/elsewhere' }),
};

async function alter(idToken, mode) {
  const [header, payload, signature] = idToken.split('.');
  const claims = parse(payload);
  if (mode === 'payload') {  // a claim changed after signing: the signature no longer matches
    return `${header}.${b64({ ...claims, groups: ['ops'], preferred_username: 'olga' })}.${signature}`;
  }
  if (mode === 'none') return `${b64({ alg: 'none' })}.${b64(claims)}.`;
  let key = await importJWK(signingKey, 'RS256');
  if (mode === 'foreign-key') {  // the provider's kid, someone else's key
    key = (await generateKeyPair('RS256')).privateKey;
  } else if (!TAMPER[mode]) {
    throw new Error(`unknown tamper mode ${mode}`);
  }
  const altered = TAMPER[mode] ? TAMPER[mode](claims) : claims;
  return new CompactSign(new TextEncoder().encode(JSON.stringify(altered)))
    .setProtectedHeader(parse(header)).sign(key);
}

provider.use(async (ctx, next) => {
  if (ctx.path === '/test/tamper' && ctx.method === 'POST') {
    tamper = ctx.query.mode;
    ctx.status = 204;
    return;
  }
  if (ctx.path === '/test/stats') {
    ctx.body = stats;
    return;
  }
  const counted = { '/jwks': 'jwks', '/token': 'token', '/me': 'userinfo', '/session/end': 'end_session' }[ctx.path];
  if (counted) stats[counted] += 1;
  await next();
  if (ctx.path === '/token' && ctx.status === 200 && tamper && ctx.body?.id_token) {
    const mode = tamper;
    tamper = null;
    ctx.body = { ...ctx.body, id_token: await alter(ctx.body.id_token, mode) };
  }
});

provider.listen(config.port, '127.0.0.1', () => console.log('ready'));
