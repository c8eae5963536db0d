#!/usr/bin/env node
// Minimal SAML 2.0 test IdP for authzd tests (loopback only).
//
//   node idp.js [port] [--key-dir DIR]
//
// First stdout line: {"port":N,"entity_id":...,"metadata_url":...,"sso_url":...,"cert_pem":...}
//
// Uses samlify for IdP metadata generation and HTTP-Redirect AuthnRequest decoding/extraction,
// and xml-crypto (samlify's own signing dependency) for XML-DSig so each test can control exactly
// what gets signed (Response, Assertion, both, none; sha256 or sha1; one or two References).
'use strict';

const http = require('http');
const fs = require('fs');
const os = require('os');
const path = require('path');
const crypto = require('crypto');
const { execFileSync } = require('child_process');
const samlify = require('samlify');
const { SignedXml } = require('xml-crypto');

// ---------- args ----------
const args = process.argv.slice(2);
let port = 0;
let keyDir = null;
let host = '127.0.0.1';
let entityIdArg = 'urn:authzd:test-idp';
for (let i = 0; i < args.length; i++) {
  if (args[i] === '--key-dir') keyDir = args[++i];
  else if (args[i] === '--host') host = args[++i];
  else if (args[i] === '--entity-id') entityIdArg = args[++i];
  else if (/^\d+$/.test(args[i])) port = Number(args[i]);
}

// ---------- key + cert (RSA-2048, self-signed, via openssl CLI) ----------
function loadOrCreateKeyPair(dir, name, cn) {
  const own = !dir;
  dir = dir || fs.mkdtempSync(path.join(os.tmpdir(), 'saml-idp-'));
  fs.mkdirSync(dir, { recursive: true });
  const keyPath = path.join(dir, `${name}.key.pem`);
  const certPath = path.join(dir, `${name}.cert.pem`);
  if (!fs.existsSync(keyPath) || !fs.existsSync(certPath)) {
    execFileSync('openssl', [
      'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-sha256', '-days', '3650',
      '-subj', `/CN=${cn}`, '-keyout', keyPath, '-out', certPath,
    ], { stdio: ['ignore', 'ignore', 'pipe'] });
  }
  const kp = { key: fs.readFileSync(keyPath, 'utf8'), cert: fs.readFileSync(certPath, 'utf8') };
  if (own) fs.rmSync(dir, { recursive: true, force: true });
  return kp;
}
const signing = loadOrCreateKeyPair(keyDir, 'idp', 'authzd-test-idp');
// A second, unrelated key: used for negative tests (signed by a key NOT in metadata).
const rogue = loadOrCreateKeyPair(keyDir, 'rogue', 'rogue-idp');
const certB64 = (pem) => pem.replace(/-----(BEGIN|END) CERTIFICATE-----/g, '').replace(/\s+/g, '');

// ---------- state ----------
const state = {
  baseUrl: null,           // filled after listen
  entityId: entityIdArg,
  spEntityId: 'urn:authzd:test-sp',
  acsUrl: null,            // default ACS if an AuthnRequest has none / for /response
  sessionSeconds: 300,
};

// ---------- helpers ----------
const xmlEsc = (s) => String(s)
  .replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;')
  .replace(/"/g, '&quot;').replace(/'/g, '&apos;');
const newId = () => '_' + crypto.randomBytes(20).toString('hex');
const iso = (d) => new Date(d).toISOString().replace(/\.\d{3}Z$/, 'Z');

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    let size = 0;
    req.on('data', (c) => { size += c.length; if (size > 1 << 20) { reject(new Error('body too large')); req.destroy(); } else chunks.push(c); });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}
function send(res, status, type, body) {
  // A length, not chunks: the tests read the body with a plain HTTP/1.1 client.
  res.writeHead(status, {
    'content-type': type,
    'cache-control': 'no-store',
    'content-length': Buffer.byteLength(body),
  });
  res.end(body);
}
const sendJson = (res, status, obj) => send(res, status, 'application/json', JSON.stringify(obj));

// ---------- metadata (samlify) ----------
function idpEntity() {
  return samlify.IdentityProvider({
    entityID: state.entityId,
    signingCert: signing.cert,
    privateKey: signing.key,
    wantAuthnRequestsSigned: false,
    nameIDFormat: ['urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified',
      'urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress'],
    singleSignOnService: [
      { Binding: 'urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect', Location: `${state.baseUrl}/sso` },
    ],
    singleLogoutService: [
      { Binding: 'urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect', Location: `${state.baseUrl}/slo` },
    ],
  });
}

// ---------- response building ----------
/**
 * opts: {acs, audience, in_response_to?, assertion_in_response_to?, name_id, name_id_format?, attributes: {name:[v]},
 *        sign_response, sign_assertion, not_before?, not_on_or_after?, issue_instant?,
 *        issuer?, destination?, recipient?, signature_algorithm?: 'rsa-sha256'|'rsa-sha1',
 *        signing_key?: 'idp'|'rogue', status?}
 */
function buildResponse(opts) {
  const now = Date.now();
  const acs = opts.acs || state.acsUrl;
  if (!acs) throw new Error('acs required (in request or via POST /config)');
  const audience = opts.audience || state.spEntityId;
  const issuer = opts.issuer || state.entityId;
  const notBefore = opts.not_before || iso(now - 60_000);
  const notOnOrAfter = opts.not_on_or_after || iso(now + state.sessionSeconds * 1000);
  const issueInstant = opts.issue_instant || iso(now);
  const respId = newId();
  const assertionId = newId();
  const irt = opts.in_response_to ? ` InResponseTo="${xmlEsc(opts.in_response_to)}"` : '';
  // Test-only: the assertion's SubjectConfirmationData answering another request than the Response.
  const assertionIrt = opts.assertion_in_response_to
    ? ` InResponseTo="${xmlEsc(opts.assertion_in_response_to)}"` : irt;
  const nameIdFormat = opts.name_id_format || 'urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified';
  const status = opts.status || 'urn:oasis:names:tc:SAML:2.0:status:Success';
  const attrs = Object.entries(opts.attributes || {}).map(([name, values]) => {
    const vals = (Array.isArray(values) ? values : [values])
      .map((v) => `<saml:AttributeValue xsi:type="xs:string">${xmlEsc(v)}</saml:AttributeValue>`).join('');
    return `<saml:Attribute Name="${xmlEsc(name)}" NameFormat="urn:oasis:names:tc:SAML:2.0:attrname-format:basic">${vals}</saml:Attribute>`;
  }).join('');

  const assertion =
    `<saml:Assertion xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" xmlns:xs="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" ID="${assertionId}" Version="2.0" IssueInstant="${issueInstant}">` +
    `<saml:Issuer>${xmlEsc(issuer)}</saml:Issuer>` +
    `<saml:Subject><saml:NameID Format="${xmlEsc(nameIdFormat)}">${xmlEsc(opts.name_id)}</saml:NameID>` +
    `<saml:SubjectConfirmation Method="urn:oasis:names:tc:SAML:2.0:cm:bearer">` +
    `<saml:SubjectConfirmationData${assertionIrt} NotOnOrAfter="${notOnOrAfter}" Recipient="${xmlEsc(opts.recipient || acs)}"/>` +
    `</saml:SubjectConfirmation></saml:Subject>` +
    `<saml:Conditions NotBefore="${notBefore}" NotOnOrAfter="${notOnOrAfter}">` +
    `<saml:AudienceRestriction><saml:Audience>${xmlEsc(audience)}</saml:Audience></saml:AudienceRestriction>` +
    `</saml:Conditions>` +
    `<saml:AuthnStatement AuthnInstant="${issueInstant}" SessionIndex="${assertionId}" SessionNotOnOrAfter="${notOnOrAfter}">` +
    `<saml:AuthnContext><saml:AuthnContextClassRef>urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport</saml:AuthnContextClassRef></saml:AuthnContext>` +
    `</saml:AuthnStatement>` +
    (attrs ? `<saml:AttributeStatement>${attrs}</saml:AttributeStatement>` : '') +
    `</saml:Assertion>`;

  let xml =
    `<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="${respId}" Version="2.0" IssueInstant="${issueInstant}" Destination="${xmlEsc(opts.destination || acs)}"${irt}>` +
    `<saml:Issuer>${xmlEsc(issuer)}</saml:Issuer>` +
    `<samlp:Status><samlp:StatusCode Value="${xmlEsc(status)}"/></samlp:Status>` +
    assertion +
    `</samlp:Response>`;

  const kp = opts.signing_key === 'rogue' ? rogue : signing;
  const algo = opts.signature_algorithm || 'rsa-sha256';
  // Assertion first (enveloped inside the assertion), then the Response (covers the signed assertion).
  if (opts.sign_assertion) {
    xml = sign(xml, `//*[local-name(.)='Assertion']`, `//*[local-name(.)='Assertion']/*[local-name(.)='Issuer']`, kp, algo, opts.extra_reference);
  }
  if (opts.sign_response) {
    xml = sign(xml, `/*[local-name(.)='Response']`, `/*[local-name(.)='Response']/*[local-name(.)='Issuer']`, kp, algo, opts.extra_reference);
  }
  return { xml, response_id: respId, assertion_id: assertionId };
}

const ALGOS = {
  'rsa-sha256': { sig: 'http://www.w3.org/2001/04/xmldsig-more#rsa-sha256', digest: 'http://www.w3.org/2001/04/xmlenc#sha256' },
  'rsa-sha1': { sig: 'http://www.w3.org/2000/09/xmldsig#rsa-sha1', digest: 'http://www.w3.org/2000/09/xmldsig#sha1' },
};

// Enveloped signature, exclusive c14n, placed right after the element's <Issuer> (SAML schema order).
// extraReference (test-only): adds a 2nd <Reference> to the same element => "two References".
function sign(xml, xpath, issuerXpath, kp, algo, extraReference) {
  const a = ALGOS[algo];
  if (!a) throw new Error(`unknown signature_algorithm ${algo}`);
  const sig = new SignedXml({
    privateKey: kp.key,
    publicCert: kp.cert, // emitted in <KeyInfo><X509Data><X509Certificate>
    signatureAlgorithm: a.sig,
    canonicalizationAlgorithm: 'http://www.w3.org/2001/10/xml-exc-c14n#',
    idAttribute: 'ID',
  });
  sig.addReference({
    xpath,
    transforms: ['http://www.w3.org/2000/09/xmldsig#enveloped-signature', 'http://www.w3.org/2001/10/xml-exc-c14n#'],
    digestAlgorithm: a.digest,
  });
  if (extraReference) {
    sig.addReference({
      xpath: extraReference,
      transforms: ['http://www.w3.org/2001/10/xml-exc-c14n#'],
      digestAlgorithm: a.digest,
    });
  }
  sig.computeSignature(xml, { prefix: 'ds', location: { reference: issuerXpath, action: 'after' } });
  return sig.getSignedXml();
}

// ---------- AuthnRequest decoding (samlify) ----------
function parseRedirectAuthnRequest(samlRequest) {
  const xml = samlify.Utility.inflateString(decodeURIComponent(samlRequest));
  if (/<!DOCTYPE/i.test(xml)) throw new Error('DOCTYPE not allowed');
  const ex = samlify.Extractor.extract(xml, samlify.Extractor.loginRequestFields);
  return {
    xml,
    id: ex.request && ex.request.id,
    acs: ex.request && ex.request.assertionConsumerServiceUrl,
    issuer: ex.issuer,
  };
}

// ---------- HTML ----------
function loginPage(reqInfo, relayState, samlRequest) {
  return `<!doctype html><html><head><title>Test IdP login</title></head><body>
<h1>authzd test IdP</h1>
<p>SP: ${xmlEsc(reqInfo.issuer || '')} &rarr; ${xmlEsc(reqInfo.acs || state.acsUrl || '')} (request ${xmlEsc(reqInfo.id || '')})</p>
<form method="post" action="/login">
<input type="hidden" name="SAMLRequest" value="${xmlEsc(samlRequest)}">
<input type="hidden" name="RelayState" value="${xmlEsc(relayState || '')}">
<label>username <input name="username" value="alice"></label><br>
<label>email <input name="email" value="alice@corp.example"></label><br>
<label>display name <input name="display_name" value="Alice"></label><br>
<label>groups (comma separated) <input name="groups" value="engineering,admins"></label><br>
<button type="submit" id="login">Sign in</button>
</form></body></html>`;
}
function autoPostPage(acs, samlResponseB64, relayState) {
  return `<!doctype html><html><head><title>Redirecting…</title></head>
<body onload="document.forms[0].submit()">
<form method="post" action="${xmlEsc(acs)}">
<input type="hidden" name="SAMLResponse" value="${xmlEsc(samlResponseB64)}">
${relayState ? `<input type="hidden" name="RelayState" value="${xmlEsc(relayState)}">` : ''}
<noscript><button type="submit">Continue</button></noscript>
</form></body></html>`;
}

// ---------- server ----------
const server = http.createServer(async (req, res) => {
  try {
    const url = new URL(req.url, state.baseUrl);
    if (req.method === 'GET' && url.pathname === '/metadata') {
      return send(res, 200, 'application/samlmetadata+xml', idpEntity().getMetadata());
    }
    if (req.method === 'GET' && url.pathname === '/health') return sendJson(res, 200, { ok: true });
    if (req.method === 'GET' && url.pathname === '/config') return sendJson(res, 200, publicInfo());
    if (req.method === 'POST' && url.pathname === '/config') {
      const c = JSON.parse((await readBody(req)) || '{}');
      if (c.sp_entity_id) state.spEntityId = c.sp_entity_id;
      if (c.acs) state.acsUrl = c.acs;
      if (c.entity_id) state.entityId = c.entity_id;
      if (c.session_seconds) state.sessionSeconds = Number(c.session_seconds);
      return sendJson(res, 200, publicInfo());
    }
    if (req.method === 'GET' && url.pathname === '/sso') {
      const samlRequest = url.searchParams.get('SAMLRequest');
      if (!samlRequest) return send(res, 400, 'text/plain', 'missing SAMLRequest');
      // URLSearchParams already percent-decoded; inflateString expects base64.
      const info = parseRedirectAuthnRequest(encodeURIComponent(samlRequest));
      return send(res, 200, 'text/html; charset=utf-8', loginPage(info, url.searchParams.get('RelayState'), samlRequest));
    }
    if (req.method === 'POST' && url.pathname === '/login') {
      const form = new URLSearchParams(await readBody(req));
      const samlRequest = form.get('SAMLRequest');
      const info = samlRequest ? parseRedirectAuthnRequest(encodeURIComponent(samlRequest)) : {};
      const acs = info.acs || state.acsUrl;
      const username = form.get('username') || 'alice';
      const attributes = {};
      if (form.get('email')) attributes.email = [form.get('email')];
      if (form.get('display_name')) attributes.displayName = [form.get('display_name')];
      const groups = (form.get('groups') || '').split(',').map((s) => s.trim()).filter(Boolean);
      if (groups.length) attributes.groups = groups;
      const { xml } = buildResponse({
        acs,
        audience: info.issuer || state.spEntityId,
        in_response_to: info.id,
        name_id: username,
        attributes,
        sign_response: form.get('sign_response') !== 'false',
        sign_assertion: form.get('sign_assertion') !== 'false',
      });
      return send(res, 200, 'text/html; charset=utf-8',
        autoPostPage(acs, Buffer.from(xml, 'utf8').toString('base64'), form.get('RelayState')));
    }
    if (req.method === 'POST' && url.pathname === '/response') {
      const o = JSON.parse((await readBody(req)) || '{}');
      if (!o.name_id) return sendJson(res, 400, { error: 'name_id required' });
      const out = buildResponse(o);
      return sendJson(res, 200, {
        saml_response: Buffer.from(out.xml, 'utf8').toString('base64'),
        response_id: out.response_id,
        assertion_id: out.assertion_id,
        ...(o.include_xml ? { xml: out.xml } : {}),
      });
    }
    send(res, 404, 'text/plain', 'not found');
  } catch (e) {
    sendJson(res, 400, { error: String(e && e.message || e) });
  }
});

function publicInfo() {
  return {
    port: server.address().port,
    base_url: state.baseUrl,
    entity_id: state.entityId,
    metadata_url: `${state.baseUrl}/metadata`,
    sso_url: `${state.baseUrl}/sso`,
    sp_entity_id: state.spEntityId,
    acs: state.acsUrl,
    cert_pem: signing.cert,
    cert_b64: certB64(signing.cert),
    rogue_cert_b64: certB64(rogue.cert),
  };
}

server.listen(port, host, () => {
  const p = server.address().port;
  state.baseUrl = `http://${host}:${p}`;
  process.stdout.write(JSON.stringify(publicInfo()) + '\n');
});

for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => server.close(() => process.exit(0)));
// Exit when the parent closes our stdin (so test harnesses don't leak IdP processes).
if (process.argv.includes('--exit-on-stdin-close')) {
  process.stdin.resume();
  process.stdin.on('end', () => process.exit(0));
}
