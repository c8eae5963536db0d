#!/usr/bin/env node
// Loopback OpenID Providers for authzd tests: a real one and a hostile one.
//
//   node op.mjs [--exit-on-stdin-close]
//
// Starts two HTTP servers on 127.0.0.1 ephemeral ports and prints ONE first stdout line:
//   {"issuer":"http://127.0.0.1:P","port":P,"hostile_issuer":"http://127.0.0.1:Q","hostile_port":Q}
// Nothing else is ever written to stdout (console.log/info/debug go to stderr, so a harness may
// close its end of the pipe after that line). With --exit-on-stdin-close (as tests/idp/saml/idp.js)
// the process exits when its stdin closes, so a test binary holding the pipe never leaks it.
//
// 1. The real provider at `issuer`: panva's oidc-provider 8.x (OpenID Certified), in memory.
//    - Dynamic Client Registration at POST /reg (no initial access token). http://127.0.0.1
//      redirect_uris are valid for web clients with the code flow as it is (oidc-provider only
//      refuses http for implicit). Token endpoint auth: client_secret_basic or client_secret_post.
//    - PKCE required for every authorization request, S256 only. ID tokens RS256, one RSA key
//      made at start (kid "op-rsa-<random>"). Access tokens opaque.
//    - Scopes openid profile email groups; the claims each releases:
//        openid: sub   profile: preferred_username name account roles
//        email: email  groups: groups
//      conformIdTokenClaims is false, so the claims of the granted scopes are IN the ID token.
//    - sid: in the ID token (and the logout token) only for clients registered with
//      backchannel_logout_uri and backchannel_logout_session_required: true. The sid is per
//      client and session (oidc-provider's session.sidFor(client_id)).
//    - Consent is never shown: loadExistingGrant grants every requested OIDC scope and claim,
//      and an explicit consent prompt (prompt=consent) is completed by GET /interaction/:uid.
//    - Our own interaction pages (devInteractions off):
//        GET  /interaction/:uid        login prompt: a form (#login, #password, #submit), any
//                                      password; consent prompt: granted, 303 onwards
//        POST /interaction/:uid/login  (urlencoded login, password) -> 303 to resume, or the form
//                                      again with <p id="error"> for an unknown login
//        GET  /interaction/:uid/abort  ends the request with access_denied
//      Cookies (all SameSite=Lax, signed, not Secure over http): _session, _interaction,
//      _interaction_resume (each with a .sig companion).
//    - A live OP session signs the browser in again with no page (SSO) unless prompt=login.
//      Signing in as another account over a live session passes through oidc-provider's
//      auto-submitted form to /session/end/confirm, which first sends back-channel logouts for
//      the old session. The authorization response carries iss (RFC 9207) besides code, state.
//    - Test control (JSON in and out):
//        POST /test/accounts {"login","sub","claims":{...}} creates or replaces the account known
//             by login (the claims are read at token time: a change shows in the next token; an
//             old sub of that login no longer resolves, so its sessions must sign in again)
//        DELETE /test/accounts?login=alice  forgets an account
//        POST /test/backchannel-logout {"client_id","sub","sid"?} -> oidc-provider's own
//             client.backchannelLogout(sub, sid): 200 {"ok":true} when the RP answered 200/204,
//             502 {"ok":false,"error"} otherwise, 404 for an unknown client. Without "sid" the
//             logout token carries none.
//        GET  /test/last-sid?login=alice[&client_id=..] -> {"sid","client_id","sub"} of the newest
//             authorization of that login's current sub (404 when none)
//
// 2. The hostile provider at `hostile_issuer`: plain node:http and jose, for forged ID tokens.
//        GET  /.well-known/openid-configuration (issuer: the hostile issuer or the override)
//        GET  /jwks            RSA "rsa-1" (RS256), P-256 "ec-1" (ES256), Ed25519 "ed-1" (EdDSA),
//                              RSA "ps-1" (PS256)
//        GET  /authorize       records nonce/state/PKCE/redirect_uri/client_id under a new code,
//                              302 to redirect_uri?code=..&state=..
//        POST /token           client auth by Basic or body; a code is good once; mints an ID
//                              token per the current spec: defaults iss, aud=client_id,
//                              sub "hostile-sub", preferred_username "mallory", iat, exp=iat+300,
//                              nonce (when the request had one), at_hash; header kid of the key
//        GET  /userinfo        the JSON of POST /test/userinfo (default {"sub":"hostile-sub"});
//                              401 without a Bearer token (still counted)
//        POST /test/next       {"claims":{..}, "key":"rsa|ec|ed|rogue|hmac|none", "alg", "kid",
//                              "omit_kid", "at_hash":"bad|omit", "hmac_secret", "typ"}, sticky,
//                              {} resets. A claim set to null is deleted. "rogue" is an RSA key
//                              outside the JWKS carrying the current RSA kid ("rsa-1" until a
//                              rotate). hmac (HS256, secret default "hostile-hmac-secret") and
//                              none carry no kid unless "kid" is given. "alg" replaces the header
//                              alg (PS256 with rsa, HS384 with hmac; with none any text, e.g.
//                              "None", still unsigned); one the key cannot sign with is a 400.
//                              at_hash: left half of SHA-256 (SHA-512 for EdDSA, -384/-512 algs).
//                              Each token request is recorded: body, auth_method, client_id,
//                              client_secret, code_known, code_verifier_present, pkce_ok,
//                              redirect_uri_ok, authorize (what /authorize recorded).
//        POST /test/mint       same options, {"claims"} taken as they are (no defaults) -> {"jwt"}
//        POST /test/rotate     new RSA key "rsa-2", "rsa-3", ... replaces the old one -> {"kid"}
//        POST /test/discovery  {"issuer": "..."|null}
//        POST /test/userinfo   any JSON object
//        GET  /test/stats      {"jwks_fetches","userinfo_fetches","token_requests":[..]}
//        POST /test/reset-stats
// Anything else is a 404 {"error":"not found"}; a body that is not a JSON object is a 400.

import http from 'node:http';
import crypto from 'node:crypto';
import * as jose from 'jose';
import Provider, { interactionPolicy as interactionPolicies } from 'oidc-provider';

// Nothing but the first line on stdout: libraries' console output goes to stderr.
for (const m of ['log', 'info', 'debug']) console[m] = console.error.bind(console);
process.stdout.on('error', () => {});

const HOST = '127.0.0.1';
const exitOnStdinClose = process.argv.includes('--exit-on-stdin-close');

// ---------- helpers ----------
function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    let size = 0;
    req.on('data', (c) => {
      size += c.length;
      if (size > 1 << 20) { reject(new Error('body too large')); req.destroy(); } else chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}
const badRequest = (msg) => Object.assign(new Error(msg), { badRequest: true });
async function readJson(req) {
  const text = await readBody(req).catch((err) => { throw badRequest(err.message); });
  if (!text.trim()) return {};
  let v;
  try { v = JSON.parse(text); } catch (err) { throw badRequest(`invalid JSON: ${err.message}`); }
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw badRequest('expected a JSON object');
  return v;
}
async function readForm(req) {
  return Object.fromEntries(new URLSearchParams(await readBody(req)));
}
function sendJson(res, status, obj, headers = {}) {
  const body = JSON.stringify(obj);
  res.writeHead(status, {
    'content-type': 'application/json', 'cache-control': 'no-store', 'content-length': Buffer.byteLength(body), ...headers,
  });
  res.end(body);
}
function sendHtml(res, status, html) {
  res.writeHead(status, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store', 'content-length': Buffer.byteLength(html) });
  res.end(html);
}
const esc = (s) => String(s).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;').replace(/'/g, '&#39;');
const b64u = (buf) => Buffer.from(buf).toString('base64url');
const now = () => Math.floor(Date.now() / 1000);
const rand = (n = 16) => crypto.randomBytes(n).toString('base64url');

function listen(server) {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, HOST, () => resolve(server.address().port));
  });
}
function guard(handler) {
  return (req, res) => {
    handler(req, res).catch((err) => {
      if (err && err.badRequest && !res.headersSent) return sendJson(res, 400, { error: err.message });
      console.error(`op.mjs: ${req.method} ${req.url}: ${err && err.stack || err}`);
      if (!res.headersSent) sendJson(res, 500, { error: 'server_error', error_description: String(err && err.message || err) });
      else res.destroy();
    });
  };
}

// ---------- in-memory storage for oidc-provider (no eviction, unlike its LRU quick-start adapter) ----------
const store = new Map(); // key -> { payload, exp (ms) }
const sessionUids = new Map(); // uid -> id
const grantIndex = new Map(); // grantId -> [keys]
const userCodes = new Map();
function storeGet(key) {
  const e = store.get(key);
  if (!e) return undefined;
  if (e.exp && e.exp < Date.now()) { store.delete(key); return undefined; }
  return e.payload;
}
// Only these die with their grant (an Interaction names a grantId too, and must outlive a logout).
const GRANTABLE = new Set(['AccessToken', 'AuthorizationCode', 'RefreshToken', 'DeviceCode', 'BackchannelAuthenticationRequest']);
class MapAdapter {
  constructor(name) { this.name = name; }
  key(id) { return `${this.name}:${id}`; }
  async upsert(id, payload, expiresIn) {
    const key = this.key(id);
    if (this.name === 'Session') sessionUids.set(payload.uid, id);
    if (GRANTABLE.has(this.name) && payload.grantId) {
      const keys = grantIndex.get(payload.grantId) || [];
      keys.push(key);
      grantIndex.set(payload.grantId, keys);
    }
    if (payload.userCode) userCodes.set(payload.userCode, id);
    store.set(key, { payload, exp: expiresIn ? Date.now() + expiresIn * 1000 : 0 });
  }
  async find(id) { return storeGet(this.key(id)); }
  async findByUid(uid) { const id = sessionUids.get(uid); return id && this.find(id); }
  async findByUserCode(code) { const id = userCodes.get(code); return id && this.find(id); }
  async consume(id) { const p = storeGet(this.key(id)); if (p) p.consumed = now(); }
  async destroy(id) { store.delete(this.key(id)); }
  async revokeByGrantId(grantId) {
    for (const key of grantIndex.get(grantId) || []) store.delete(key);
    grantIndex.delete(grantId);
  }
}

// ======================================================================================
// 1. The real provider
// ======================================================================================
const accounts = new Map(); // login -> { login, sub, claims }
const loginBySub = new Map(); // sub -> login
const lastSid = new Map(); // sub -> {sid, client_id}, and `${sub}\n${client_id}` -> same
const accountBySub = (sub) => { const l = loginBySub.get(sub); const a = l && accounts.get(l); return a && a.sub === sub ? a : undefined; };

async function findAccount(ctx, sub) {
  if (!accountBySub(sub)) return undefined;
  return {
    accountId: sub,
    // Current values when a token is made.
    async claims() {
      const a = accountBySub(sub);
      return { ...(a ? a.claims : {}), sub };
    },
  };
}

// Every requested OIDC scope and claim granted: no consent interaction.
async function loadExistingGrant(ctx) {
  const { oidc } = ctx;
  const { Grant } = oidc.provider;
  const accountId = oidc.account.accountId;
  const clientId = oidc.client.clientId;
  const grantId = oidc.result?.consent?.grantId || oidc.session.grantIdFor(clientId);
  let grant = grantId ? await Grant.find(grantId) : undefined;
  if (!grant || grant.accountId !== accountId || grant.clientId !== clientId) {
    grant = new Grant({ accountId, clientId });
  }
  const scopes = oidc.requestParamOIDCScopes;
  if (scopes.size) grant.addOIDCScope(scopes);
  const claims = oidc.requestParamClaims;
  if (claims.size) grant.addOIDCClaims(claims);
  await grant.save();
  return grant;
}

// The default policy, plus: a session whose account is gone (forgotten, or its login given a new
// sub) signs in again instead of failing.
function interactionPolicy() {
  const policy = interactionPolicies.base();
  policy.get('login').checks.push(new interactionPolicies.Check(
    'account_gone',
    "the session's account no longer exists",
    'login_required',
    (ctx) => !!(ctx.oidc.session.accountId && !ctx.oidc.account),
  ));
  return policy;
}

const loginPage = (uid, error, login = '') => `<!doctype html>
<html><head><meta charset="utf-8"><title>Test OP sign-in</title></head>
<body>
<h1>Test OpenID Provider</h1>
${error ? `<p id="error" style="color:#b00">${esc(error)}</p>` : ''}
<form method="post" action="/interaction/${esc(uid)}/login" autocomplete="off">
  <label for="login">Login</label> <input name="login" id="login" value="${esc(login)}" autofocus>
  <label for="password">Password</label> <input name="password" id="password" type="password">
  <button type="submit" id="submit">Sign in</button>
</form>
<p><a href="/interaction/${esc(uid)}/abort" id="abort">Cancel</a></p>
</body></html>
`;

async function autoConsent(provider, req, res, details) {
  const { Grant } = provider;
  const { missingOIDCScope, missingOIDCClaims, missingResourceScopes } = details.prompt.details || {};
  let grant = details.grantId ? await Grant.find(details.grantId) : undefined;
  if (!grant) grant = new Grant({ accountId: details.session.accountId, clientId: details.params.client_id });
  if (missingOIDCScope) grant.addOIDCScope(missingOIDCScope.join(' '));
  if (missingOIDCClaims) grant.addOIDCClaims(missingOIDCClaims);
  for (const [indicator, scopes] of Object.entries(missingResourceScopes || {})) grant.addResourceScope(indicator, scopes.join(' '));
  const grantId = await grant.save();
  await provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
}

async function startRealOp(server, port) {
  const issuer = `http://${HOST}:${port}`;
  const { privateKey } = await jose.generateKeyPair('RS256', { modulusLength: 2048, extractable: true });
  const signingJwk = { ...(await jose.exportJWK(privateKey)), kid: `op-rsa-${rand(6)}`, use: 'sig', alg: 'RS256' };

  const provider = new Provider(issuer, {
    adapter: MapAdapter,
    clients: [],
    jwks: { keys: [signingJwk] },
    findAccount,
    loadExistingGrant,
    scopes: ['openid', 'profile', 'email', 'groups'],
    claims: {
      openid: ['sub'],
      profile: ['preferred_username', 'name', 'account', 'roles'],
      email: ['email'],
      groups: ['groups'],
    },
    conformIdTokenClaims: false,
    features: {
      devInteractions: { enabled: false },
      registration: { enabled: true, initialAccessToken: false },
      backchannelLogout: { enabled: true },
      rpInitiatedLogout: { enabled: true },
    },
    pkce: { methods: ['S256'], required: () => true },
    responseTypes: ['code'],
    clientAuthMethods: ['client_secret_basic', 'client_secret_post'],
    enabledJWA: { idTokenSigningAlgValues: ['RS256'] },
    cookies: {
      keys: ['authzd-test-op-cookie-key-1'],
      long: { signed: true, sameSite: 'lax' },
      short: { signed: true, sameSite: 'lax' },
    },
    interactions: { policy: interactionPolicy(), url: (ctx, interaction) => `/interaction/${interaction.uid}` },
    ttl: {
      AccessToken: 600,
      AuthorizationCode: 60,
      BackchannelAuthenticationRequest: 600,
      ClientCredentials: 600,
      DeviceCode: 600,
      Grant: 3600,
      IdToken: 600,
      Interaction: 600,
      RefreshToken: 3600,
      Session: 3600,
    },
    clientBasedCORS: () => true,
    httpOptions: () => ({ signal: AbortSignal.timeout(5000) }),
    async renderError(ctx, out) {
      ctx.type = 'html';
      ctx.body = `<!doctype html><html><head><meta charset="utf-8"><title>OP error</title></head><body><pre id="error">${esc(JSON.stringify(out))}</pre></body></html>\n`;
    },
  });

  provider.on('server_error', (ctx, err) => console.error(`op.mjs: oidc-provider server_error: ${err && err.stack || err}`));
  provider.on('authorization.success', (ctx) => {
    const session = ctx.oidc?.session;
    const client = ctx.oidc?.client;
    if (!session?.accountId || !client) return;
    const entry = { sid: session.sidFor(client.clientId), client_id: client.clientId, sub: session.accountId };
    if (!entry.sid) return;
    lastSid.set(entry.sub, entry);
    lastSid.set(`${entry.sub}\n${entry.client_id}`, entry);
  });

  const oidcCallback = provider.callback();

  async function handle(req, res) {
    const url = new URL(req.url, issuer);
    const p = url.pathname;
    let m;

    // ---- interactions ----
    if ((m = p.match(/^\/interaction\/([^/]+)$/)) && req.method === 'GET') {
      let details;
      try { details = await provider.interactionDetails(req, res); } catch (err) {
        return sendHtml(res, 400, `<!doctype html><title>OP error</title><pre id="error">${esc(err.message)}</pre>\n`);
      }
      if (details.uid !== m[1]) return sendHtml(res, 400, '<!doctype html><title>OP error</title><pre id="error">interaction mismatch</pre>\n');
      if (details.prompt.name === 'login') return sendHtml(res, 200, loginPage(details.uid, null, details.params.login_hint || ''));
      if (details.prompt.name === 'consent') return autoConsent(provider, req, res, details);
      return sendHtml(res, 400, `<!doctype html><title>OP error</title><pre id="error">unknown prompt ${esc(details.prompt.name)}</pre>\n`);
    }
    if ((m = p.match(/^\/interaction\/([^/]+)\/login$/)) && req.method === 'POST') {
      let details;
      try { details = await provider.interactionDetails(req, res); } catch (err) {
        return sendHtml(res, 400, `<!doctype html><title>OP error</title><pre id="error">${esc(err.message)}</pre>\n`);
      }
      if (details.uid !== m[1] || details.prompt.name !== 'login') {
        return sendHtml(res, 400, '<!doctype html><title>OP error</title><pre id="error">not a login interaction</pre>\n');
      }
      const form = await readForm(req);
      const account = accounts.get(form.login || '');
      if (!account) return sendHtml(res, 200, loginPage(details.uid, 'Unknown login', form.login || ''));
      return provider.interactionFinished(req, res, { login: { accountId: account.sub } }, { mergeWithLastSubmission: false });
    }
    if ((m = p.match(/^\/interaction\/([^/]+)\/abort$/)) && req.method === 'GET') {
      return provider.interactionFinished(req, res, { error: 'access_denied', error_description: 'End-User aborted interaction' }, { mergeWithLastSubmission: false });
    }

    // ---- test control ----
    if (p === '/test/accounts' && req.method === 'POST') {
      const body = await readJson(req);
      const { login, sub } = body;
      const claims = body.claims ?? {};
      if (typeof login !== 'string' || !login || typeof sub !== 'string' || !sub || typeof claims !== 'object' || Array.isArray(claims)) {
        return sendJson(res, 400, { error: 'expected {"login": string, "sub": string, "claims": object}' });
      }
      const old = accounts.get(login);
      if (old && old.sub !== sub && loginBySub.get(old.sub) === login) loginBySub.delete(old.sub);
      accounts.set(login, { login, sub, claims });
      loginBySub.set(sub, login);
      return sendJson(res, 200, { ok: true, login, sub });
    }
    if (p === '/test/accounts' && req.method === 'DELETE') {
      const login = url.searchParams.get('login') || '';
      const old = accounts.get(login);
      if (!old) return sendJson(res, 404, { ok: false, error: 'unknown login' });
      accounts.delete(login);
      if (loginBySub.get(old.sub) === login) loginBySub.delete(old.sub);
      return sendJson(res, 200, { ok: true });
    }
    if (p === '/test/backchannel-logout' && req.method === 'POST') {
      const { client_id: clientId, sub, sid } = await readJson(req);
      if (typeof clientId !== 'string' || typeof sub !== 'string' || (sid !== undefined && sid !== null && typeof sid !== 'string')) {
        return sendJson(res, 400, { ok: false, error: 'expected {"client_id": string, "sub": string, "sid"?: string}' });
      }
      const client = await provider.Client.find(clientId);
      if (!client) return sendJson(res, 404, { ok: false, error: 'unknown client' });
      if (!client.backchannelLogoutUri) return sendJson(res, 400, { ok: false, error: 'client has no backchannel_logout_uri' });
      try {
        await client.backchannelLogout(sub, sid ?? undefined);
      } catch (err) {
        return sendJson(res, 502, { ok: false, error: String(err && err.message || err) });
      }
      return sendJson(res, 200, { ok: true });
    }
    if (p === '/test/last-sid' && req.method === 'GET') {
      const account = accounts.get(url.searchParams.get('login') || '');
      if (!account) return sendJson(res, 404, { error: 'unknown login' });
      const clientId = url.searchParams.get('client_id');
      const entry = lastSid.get(clientId ? `${account.sub}\n${clientId}` : account.sub);
      if (!entry) return sendJson(res, 404, { error: 'no session' });
      return sendJson(res, 200, entry);
    }
    if (p.startsWith('/test/')) return sendJson(res, 404, { error: 'not found' });

    return oidcCallback(req, res);
  }

  server.on('request', guard(handle));
  return issuer;
}

// ======================================================================================
// 2. The hostile provider
// ======================================================================================
async function newKey(alg, kid, opts = {}) {
  const { privateKey, publicKey } = await jose.generateKeyPair(alg, { extractable: true, ...opts });
  const jwk = { ...(await jose.exportJWK(publicKey)), kid, use: 'sig', alg };
  return { kid, alg, privateKey, jwk };
}

async function startHostileOp(server, port) {
  const base = `http://${HOST}:${port}`;
  let rsaN = 1;
  const keys = {
    rsa: await newKey('RS256', 'rsa-1', { modulusLength: 2048 }),
    ec: await newKey('ES256', 'ec-1'),
    ed: await newKey('EdDSA', 'ed-1', { crv: 'Ed25519' }),
    ps: await newKey('PS256', 'ps-1', { modulusLength: 2048 }),
    rogue: await newKey('RS256', 'rogue', { modulusLength: 2048 }),
  };
  const st = {
    issuerOverride: null,
    next: {},
    userinfo: { sub: 'hostile-sub' },
    codes: new Map(),
    stats: { jwks_fetches: 0, userinfo_fetches: 0, token_requests: [] },
  };

  const KEYS = new Set(['rsa', 'ec', 'ed', 'ps', 'rogue', 'hmac', 'none']);
  function checkSpec(spec) {
    if (spec.key !== undefined && !KEYS.has(spec.key)) throw new Error(`key must be one of ${[...KEYS].join(', ')}`);
    if (spec.claims !== undefined && (spec.claims === null || typeof spec.claims !== 'object' || Array.isArray(spec.claims))) throw new Error('claims must be an object');
    if (spec.at_hash !== undefined && !['bad', 'omit'].includes(spec.at_hash)) throw new Error('at_hash must be "bad" or "omit"');
    if (spec.kid !== undefined && typeof spec.kid !== 'string') throw new Error('kid must be a string');
    if (spec.alg !== undefined && typeof spec.alg !== 'string') throw new Error('alg must be a string');
    if (spec.typ !== undefined && typeof spec.typ !== 'string') throw new Error('typ must be a string');
    if (spec.hmac_secret !== undefined && typeof spec.hmac_secret !== 'string') throw new Error('hmac_secret must be a string');
  }

  // The alg a spec signs with.
  function algOf(spec) {
    if (spec.alg !== undefined) return spec.alg;
    switch (spec.key || 'rsa') {
      case 'rsa': case 'rogue': return 'RS256';
      case 'ec': return 'ES256';
      case 'ed': return 'EdDSA';
      case 'ps': return 'PS256';
      case 'hmac': return 'HS256';
      default: return 'none';
    }
  }
  function atHash(accessToken, alg) {
    const hash = alg === 'EdDSA' || /512$/.test(alg) ? 'sha512' : /384$/.test(alg) ? 'sha384' : 'sha256';
    const d = crypto.createHash(hash).update(accessToken, 'ascii').digest();
    return b64u(d.subarray(0, d.length / 2));
  }
  async function sign(claims, spec) {
    const kind = spec.key || 'rsa';
    const alg = algOf(spec);
    let key;
    let kid;
    switch (kind) {
      case 'rsa': key = keys.rsa.privateKey; kid = keys.rsa.kid; break;
      case 'rogue': key = keys.rogue.privateKey; kid = keys.rsa.kid; break;
      case 'ec': key = keys.ec.privateKey; kid = keys.ec.kid; break;
      case 'ed': key = keys.ed.privateKey; kid = keys.ed.kid; break;
      case 'ps': key = keys.ps.privateKey; kid = keys.ps.kid; break;
      case 'hmac': key = Buffer.from(spec.hmac_secret ?? 'hostile-hmac-secret', 'utf8'); break;
      default: break;
    }
    const header = { alg };
    if (spec.kid !== undefined) kid = spec.kid;
    if (kid !== undefined && !spec.omit_kid) header.kid = kid;
    if (spec.typ !== undefined) header.typ = spec.typ;
    const payload = Buffer.from(JSON.stringify(claims), 'utf8');
    if (kind === 'none') return `${b64u(JSON.stringify(header))}.${b64u(payload)}.`;
    return new jose.CompactSign(payload).setProtectedHeader(header).sign(key);
  }
  const merge = (defaults, overrides) => {
    const out = { ...defaults };
    for (const [k, v] of Object.entries(overrides || {})) {
      if (v === null) delete out[k]; else out[k] = v;
    }
    return out;
  };
  const advertised = () => (st.issuerOverride === null ? base : st.issuerOverride);

  async function handle(req, res) {
    const url = new URL(req.url, base);
    const p = url.pathname;

    if (p === '/.well-known/openid-configuration' && req.method === 'GET') {
      return sendJson(res, 200, {
        issuer: advertised(),
        authorization_endpoint: `${base}/authorize`,
        token_endpoint: `${base}/token`,
        jwks_uri: `${base}/jwks`,
        userinfo_endpoint: `${base}/userinfo`,
        response_types_supported: ['code'],
        subject_types_supported: ['public'],
        id_token_signing_alg_values_supported: ['RS256', 'PS256', 'ES256', 'EdDSA'],
        code_challenge_methods_supported: ['S256'],
        token_endpoint_auth_methods_supported: ['client_secret_basic', 'client_secret_post'],
      });
    }
    if (p === '/jwks' && req.method === 'GET') {
      st.stats.jwks_fetches += 1;
      return sendJson(res, 200, { keys: [keys.rsa.jwk, keys.ec.jwk, keys.ed.jwk, keys.ps.jwk] });
    }
    if (p === '/authorize' && req.method === 'GET') {
      const q = url.searchParams;
      const redirectUri = q.get('redirect_uri');
      let target;
      try { target = new URL(redirectUri); } catch { return sendJson(res, 400, { error: 'invalid_request', error_description: 'redirect_uri' }); }
      const code = rand(24);
      const rec = {};
      for (const k of ['nonce', 'state', 'code_challenge', 'code_challenge_method', 'redirect_uri', 'client_id']) {
        if (q.has(k)) rec[k] = q.get(k);
      }
      st.codes.set(code, rec);
      target.searchParams.set('code', code);
      if (q.has('state')) target.searchParams.set('state', q.get('state'));
      res.writeHead(302, { location: target.href, 'cache-control': 'no-store', 'content-length': 0 });
      return res.end();
    }
    if (p === '/token' && req.method === 'POST') {
      const body = await readForm(req);
      let clientId = body.client_id;
      let clientSecret = body.client_secret;
      let authMethod = body.client_secret !== undefined ? 'client_secret_post' : 'none';
      const authz = req.headers.authorization || '';
      if (/^basic /i.test(authz)) {
        const decoded = Buffer.from(authz.slice(6).trim(), 'base64').toString('utf8');
        const i = decoded.indexOf(':');
        const dec = (s) => { try { return decodeURIComponent(s.replace(/\+/g, ' ')); } catch { return s; } };
        clientId = dec(i < 0 ? decoded : decoded.slice(0, i));
        clientSecret = i < 0 ? undefined : dec(decoded.slice(i + 1));
        authMethod = 'client_secret_basic';
      }
      const rec = st.codes.get(body.code || '');
      const verifier = body.code_verifier;
      const record = {
        body,
        auth_method: authMethod,
        client_id: clientId ?? null,
        client_secret: clientSecret ?? null,
        code_known: !!rec,
        code_verifier_present: verifier !== undefined,
        pkce_ok: !!(rec && verifier !== undefined && rec.code_challenge !== undefined
          && b64u(crypto.createHash('sha256').update(verifier, 'ascii').digest()) === rec.code_challenge),
        redirect_uri_ok: !!(rec && body.redirect_uri === rec.redirect_uri),
        authorize: rec || null,
      };
      st.stats.token_requests.push(record);
      if (!rec || body.grant_type !== 'authorization_code') return sendJson(res, 400, { error: 'invalid_grant' });
      st.codes.delete(body.code);
      const spec = st.next;
      const accessToken = `at-${rand(24)}`;
      const iat = now();
      const defaults = {
        iss: base,
        aud: clientId ?? rec.client_id,
        sub: 'hostile-sub',
        preferred_username: 'mallory',
        iat,
        exp: iat + 300,
      };
      if (rec.nonce !== undefined) defaults.nonce = rec.nonce;
      if (spec.at_hash !== 'omit') {
        defaults.at_hash = spec.at_hash === 'bad' ? atHash(`not-${accessToken}`, algOf(spec)) : atHash(accessToken, algOf(spec));
      }
      const idToken = await sign(merge(defaults, spec.claims), spec);
      return sendJson(res, 200, { access_token: accessToken, token_type: 'Bearer', expires_in: 300, id_token: idToken });
    }
    if (p === '/userinfo' && req.method === 'GET') {
      st.stats.userinfo_fetches += 1;
      if (!/^bearer \S/i.test(req.headers.authorization || '')) {
        return sendJson(res, 401, { error: 'invalid_token' }, { 'www-authenticate': 'Bearer error="invalid_token"' });
      }
      return sendJson(res, 200, st.userinfo);
    }

    // ---- test control ----
    if (p === '/test/next' && req.method === 'POST') {
      const spec = await readJson(req);
      try {
        checkSpec(spec);
        await sign({}, spec); // an alg the key cannot sign with is refused now, not at /token
      } catch (err) { return sendJson(res, 400, { error: err.message }); }
      st.next = spec;
      return sendJson(res, 200, { ok: true });
    }
    if (p === '/test/mint' && req.method === 'POST') {
      const spec = await readJson(req);
      try { checkSpec(spec); } catch (err) { return sendJson(res, 400, { error: err.message }); }
      try {
        return sendJson(res, 200, { jwt: await sign(spec.claims || {}, spec) });
      } catch (err) {
        return sendJson(res, 400, { error: err.message });
      }
    }
    if (p === '/test/rotate' && req.method === 'POST') {
      rsaN += 1;
      keys.rsa = await newKey('RS256', `rsa-${rsaN}`, { modulusLength: 2048 });
      return sendJson(res, 200, { ok: true, kid: keys.rsa.kid });
    }
    if (p === '/test/discovery' && req.method === 'POST') {
      const { issuer } = await readJson(req);
      if (issuer !== null && issuer !== undefined && typeof issuer !== 'string') return sendJson(res, 400, { error: 'issuer must be a string or null' });
      st.issuerOverride = issuer ?? null;
      return sendJson(res, 200, { ok: true, issuer: advertised() });
    }
    if (p === '/test/userinfo' && req.method === 'POST') {
      st.userinfo = await readJson(req);
      return sendJson(res, 200, { ok: true });
    }
    if (p === '/test/stats' && req.method === 'GET') return sendJson(res, 200, st.stats);
    if (p === '/test/reset-stats' && req.method === 'POST') {
      st.stats = { jwks_fetches: 0, userinfo_fetches: 0, token_requests: [] };
      return sendJson(res, 200, { ok: true });
    }
    return sendJson(res, 404, { error: 'not found' });
  }

  server.on('request', guard(handle));
  return base;
}

// ---------- main ----------
const opServer = http.createServer();
const hostileServer = http.createServer();
const [port, hostilePort] = await Promise.all([listen(opServer), listen(hostileServer)]);
const issuer = await startRealOp(opServer, port);
const hostileIssuer = await startHostileOp(hostileServer, hostilePort);
process.stdout.write(`${JSON.stringify({ issuer, port, hostile_issuer: hostileIssuer, hostile_port: hostilePort })}\n`);

// Exit when the parent closes our stdin (so test harnesses don't leak OP processes).
if (exitOnStdinClose) {
  process.stdin.resume();
  process.stdin.on('end', () => process.exit(0));
  process.stdin.on('error', () => process.exit(0));
}
