// The CTProto compatibility suite: drives a Sockyard `dialect = "ctproto"` endpoint with a client
// that behaves like the original CTProto client (./client.js) and with raw `ws` frames, and
// checks every reply byte for byte against the original protocol (Table A and §1 of
// shared/reference/ctproto-sockful.md) plus Sockyard's documented fixes (see the top comment of
// sockyard/src/protocol/ctproto.rs). Pub/sub is checked across dialects with the official
// socketcluster-client 20 on the same server.
//
// Usage: node ctproto/suite.js --url ws://HOST:PORT/ctproto --sc-url ws://HOST:PORT/socketcluster/
//                              [--auth-key KEY] [--authorize-timeout-ms MS] [--jobs N] [--filter TEXT]
// Environment fallbacks: CT_URL, CT_SC_URL, CT_AUTH_KEY, CT_AUTHORIZE_TIMEOUT_MS, CT_JOBS,
// CT_FILTER.
//
// The server must serve the procedures of Sockyard's test router (sockyard/tests/support):
// echo, nothing, fail, panic, pushToMe, closeMe, whoami; the CTProto endpoint must use the
// `token_or_username` authorizer, verify tokens (HS256) with --auth-key, and close unauthorized
// sockets after --authorize-timeout-ms (default 3000, the original's deadline; pass a short one
// to keep the run fast). Exit status: 0 when no test failed.

'use strict';

const assert = require('node:assert/strict');
const jwt = require('jsonwebtoken');
const WebSocket = require('ws');
const { Suite } = require('../lib/harness');
const { CLIENTS, waitFor, sleep } = require('../lib/clients');
const { CTProtoClient, createMessageId } = require('./client');
const { option } = require('../lib/options');

const url = option('url', 'CT_URL', null);
const scUrl = option('sc-url', 'CT_SC_URL', null);
const authKey = option('auth-key', 'CT_AUTH_KEY', 'compat-test-key');
const authorizeTimeoutMs = Number(option('authorize-timeout-ms', 'CT_AUTHORIZE_TIMEOUT_MS', '3000'));
const jobs = Number(option('jobs', 'CT_JOBS', '4'));
const filter = option('filter', 'CT_FILTER', null);

if (!url || !(authorizeTimeoutMs > 0)) {
  console.error('usage: node ctproto/suite.js --url ws://HOST:PORT/ctproto [--sc-url ws://HOST:PORT/socketcluster/] [--auth-key KEY] [--authorize-timeout-ms MS]');
  process.exit(2);
}

const suite = new Suite({ jobs, filter, defaultTimeout: 8000 });
const NO_SC = 'no --sc-url given for the SocketCluster endpoint';

// ---------------------------------------------------------------------------------------------
// Helpers

const ID_PATTERN = /^[A-Za-z0-9_-]{10}$/;

function assertId(id, what) {
  assert.ok(typeof id === 'string' && ID_PATTERN.test(id), `${what}: a 10-character [A-Za-z0-9_-] id, got ${JSON.stringify(id)}`);
}

// The exact text Sockyard must send, built with JSON.stringify (insertion order = wire order).
const response = (messageId, payload) => JSON.stringify(payload === undefined ? { messageId } : { messageId, payload });
const newMessage = (type, payload, messageId) => JSON.stringify({ type, payload, messageId });
const errorMessage = (messageId, error, name, extra = {}) => newMessage('error', { error, name, ...extra }, messageId);
const formatError = (messageId, text) => errorMessage(messageId, `Message Format Error: ${text}`, 'MessageFormatError');

// Asserts `frame` is `build(id)` for the fresh id it carries, which must be well-formed and not
// one of `notIds`; returns the id.
function assertFresh(frame, build, notIds = [], what = 'frame') {
  assert.equal(typeof frame, 'string', `${what}: a text frame`);
  let parsed;
  try {
    parsed = JSON.parse(frame);
  } catch {
    assert.fail(`${what}: not JSON: ${frame}`);
  }
  const id = parsed && parsed.messageId;
  assertId(id, `${what} (${frame})`);
  assert.equal(frame, build(id), `${what}: exact text`);
  for (const other of notIds) {
    assert.notEqual(id, other, `${what}: a fresh id, not ${other}`);
  }
  return id;
}

// A raw WebSocket on the CTProto endpoint that records every frame and the close.
class RawCt {
  constructor(t, endpoint = url) {
    this.frames = [];
    this.read = 0;
    this.close = null;
    this.errors = [];
    this.ws = new WebSocket(endpoint);
    this.ws.on('message', (data, isBinary) => this.frames.push(isBinary ? Buffer.from(data) : data.toString()));
    this.ws.on('close', (code, reason) => {
      this.close = { code, reason: reason.toString() };
    });
    this.ws.on('error', (err) => this.errors.push(err));
    this.opened = new Promise((resolve, reject) => {
      this.ws.once('open', resolve);
      this.ws.once('error', reject);
    });
    this.openedAt = null;
    this.opened.then(() => {
      this.openedAt = Date.now();
    }, () => {});
    t.defer(() => this.ws.terminate());
  }

  send(data) {
    this.ws.send(data);
  }

  request(type, payload, messageId = createMessageId()) {
    this.send(JSON.stringify({ type, payload, messageId }));
    return messageId;
  }

  // The next frame not read yet (waits for it).
  async next(timeoutMs = 3000) {
    await waitFor(
      () => this.frames.length > this.read || this.close,
      timeoutMs,
      () => `a frame (frames so far: ${JSON.stringify(this.frames)})`,
    );
    if (this.frames.length <= this.read) {
      assert.fail(`closed ${JSON.stringify(this.close)} instead of sending a frame; frames: ${JSON.stringify(this.frames)}`);
    }
    return this.frames[this.read++];
  }

  // The next `n` frames, in arrival order.
  async nextFrames(n, timeoutMs = 3000) {
    const frames = [];
    for (let i = 0; i < n; i++) {
      frames.push(await this.next(timeoutMs));
    }
    return frames;
  }

  // Frames not read yet, without waiting.
  unread() {
    return this.frames.slice(this.read);
  }

  async closed(timeoutMs = 4000) {
    return waitFor(() => this.close, timeoutMs, () => `the close (frames: ${JSON.stringify(this.frames)})`);
  }

  // Authorizes with `payload` and checks the exact response; returns the authorize id.
  async authorize(payload = { username: 'ann' }) {
    await this.opened;
    const id = this.request('authorize', payload);
    assert.equal(await this.next(), response(id, payload), 'authorize response');
    return id;
  }

  // Sends a request and returns the next frame (the caller asserts it).
  async call(type, payload, messageId) {
    this.request(type, payload, messageId);
    return this.next();
  }
}

// An authorized raw connection.
async function authorizedRaw(t, payload) {
  const r = new RawCt(t);
  await r.authorize(payload);
  return r;
}

// A CTProto client that records its sockets' frames, closes, onAuth and onMessage calls.
function ctClient(t, authRequestPayload = { username: 'ann' }, extra = {}) {
  const record = { outbound: [], inbound: [], closes: [], auths: [], messages: [], sockets: [] };
  const c = new CTProtoClient({
    apiUrl: url,
    authRequestPayload,
    disableLogs: true,
    onAuth: (data) => record.auths.push(data),
    onMessage: (message) => record.messages.push(message),
    onSocket: (socket) => {
      const frames = { outbound: [], inbound: [] };
      record.sockets.push(frames);
      const send = socket.send.bind(socket);
      socket.send = (data, ...rest) => {
        const text = typeof data === 'string' ? data : Buffer.from(data).toString();
        record.outbound.push(text);
        frames.outbound.push(text);
        return send(data, ...rest);
      };
      // Registered before the client's own onmessage: a frame is recorded before it settles
      // anything.
      socket.addEventListener('message', (event) => {
        const text = typeof event.data === 'string' ? event.data : Buffer.from(event.data).toString();
        record.inbound.push(text);
        frames.inbound.push(text);
      });
      socket.addEventListener('close', (event) => record.closes.push({ code: event.code, reason: event.reason }));
    },
    ...extra,
  });
  c.record = record;
  t.defer(() => c.close());
  return c;
}

// Waits until the client has been authorized (onAuth called `n` times).
async function clientAuthorized(c, n = 1) {
  await waitFor(
    () => c.record.auths.length >= n || c.record.closes.length >= n,
    4000,
    () => `onAuth #${n} (frames: ${JSON.stringify(c.record.inbound)})`,
  );
  assert.equal(c.record.auths.length, n, `authorized, not closed: ${JSON.stringify(c.record.closes)}`);
}

// The outbound request of `type` (the n-th), parsed.
function sentRequest(c, type, n = 1) {
  const found = c.record.outbound.map((f) => JSON.parse(f)).filter((m) => m.type === type)[n - 1];
  assert.ok(found, `outbound ${type} #${n} among ${JSON.stringify(c.record.outbound)}`);
  return found;
}

// The inbound frame carrying `messageId` (the first), as text.
function inboundFor(c, messageId) {
  return c.record.inbound.find((f) => JSON.parse(f).messageId === messageId);
}

// Whether a promise is still pending after `ms`.
async function stillPending(promise, ms = 200) {
  const marker = Symbol('pending');
  const winner = await Promise.race([promise.then((v) => ({ v })), sleep(ms).then(() => marker)]);
  return winner === marker;
}

// HS256 (jsonwebtoken's default); an `iat` in `claims` is kept as given, in its position.
const token = (claims, key = authKey) => jwt.sign(claims, key);

let channelCounter = 0;
const channelName = (tag) => `ct-${tag}-${++channelCounter}-${Math.random().toString(36).slice(2, 8)}`;

// ---------------------------------------------------------------------------------------------
// Authorization

suite.test('client: authorize {username} on open; response {messageId, payload: authData}', async (t) => {
  const c = ctClient(t, { username: 'ann' });
  await clientAuthorized(c);
  assert.deepStrictEqual(c.record.auths, [{ username: 'ann' }], 'onAuth gets the authData');
  assert.equal(c.record.outbound.length, 1, 'only authorize sent');
  const auth = JSON.parse(c.record.outbound[0]);
  assertId(auth.messageId, 'authorize id');
  assert.equal(c.record.outbound[0], newMessage('authorize', { username: 'ann' }, auth.messageId), 'client wire format');
  assert.deepStrictEqual(c.record.inbound, [response(auth.messageId, { username: 'ann' })], 'exact authorize response');
  assert.deepStrictEqual(c.record.messages, [], 'no onMessage');
  assert.deepStrictEqual(await c.send('whoami', {}), { username: 'ann' });
});

suite.test('client: authorize {token} signed with the server key; authData is the claims', async (t) => {
  const now = Math.floor(Date.now() / 1000);
  const claims = { username: 'tok', userId: '42', iat: now, exp: now + 3600 };
  const c = ctClient(t, { token: token(claims) });
  await clientAuthorized(c);
  assert.deepStrictEqual(c.record.auths, [claims]);
  const auth = sentRequest(c, 'authorize');
  assert.deepStrictEqual(c.record.inbound, [response(auth.messageId, claims)], 'exact response, claims in token order');
  const whoami = c.send('whoami', {});
  assert.deepStrictEqual(await whoami, claims);
  const request = sentRequest(c, 'whoami');
  assert.equal(inboundFor(c, request.messageId), response(request.messageId, claims));
});

suite.test('raw: authorize refused closes 1008 "Authorization failed: <message>", no frame', async (t) => {
  const cases = [
    [{ token: token({ username: 'x' }, 'some-other-key') }, 'Authorization failed: invalid signature'],
    [{ token: 'nonsense' }, 'Authorization failed: jwt malformed'],
    [{ token: token({ username: 'x', exp: Math.floor(Date.now() / 1000) - 60 }) }, 'Authorization failed: jwt expired'],
    [{}, 'Authorization failed: payload must carry a token or a username'],
    [{ username: '   ' }, 'Authorization failed: payload must carry a token or a username'],
    [null, 'Authorization failed: payload must carry a token or a username'],
  ];
  for (const [payload, reason] of cases) {
    const r = new RawCt(t);
    await r.opened;
    r.request('authorize', payload);
    const close = await r.closed();
    assert.deepStrictEqual(close, { code: 1008, reason }, `authorize ${JSON.stringify(payload)}`);
    assert.deepStrictEqual(r.frames, [], `no frame before the close for ${JSON.stringify(payload)}`);
  }
});

suite.test('client: refused authorize → socket closed 1008, no onAuth, queued request never settles', async (t) => {
  const c = ctClient(t, { token: 'nonsense' });
  // Sent before the socket opened: queued until an authorization that never comes.
  const pending = c.send('echo', { queued: true });
  await waitFor(() => c.record.closes.length >= 1, 4000, 'the close');
  assert.deepStrictEqual(c.record.closes, [{ code: 1008, reason: 'Authorization failed: jwt malformed' }]);
  assert.deepStrictEqual(c.record.auths, [], 'no onAuth');
  assert.deepStrictEqual(c.record.inbound, [], 'no frame');
  assert.equal(c.record.outbound.length, 1, 'only authorize was sent');
  assert.ok(await stillPending(pending), 'the queued request stays pending, as with the original client');
});

suite.test(`raw: no message within the deadline closes 1013 "Authorization required" (${authorizeTimeoutMs} ms)`, async (t) => {
  const r = new RawCt(t);
  await r.opened;
  const close = await r.closed(authorizeTimeoutMs + 3000);
  const elapsed = Date.now() - r.openedAt;
  t.note(`closed after ${elapsed} ms`);
  assert.deepStrictEqual(close, { code: 1013, reason: 'Authorization required' });
  assert.ok(elapsed >= authorizeTimeoutMs - 100, `not before the deadline (${elapsed} ms)`);
  assert.ok(elapsed < authorizeTimeoutMs + 1500, `soon after the deadline (${elapsed} ms)`);
  assert.deepStrictEqual(r.frames, []);
}, { timeout: authorizeTimeoutMs + 6000 });

suite.test('raw: a format error before authorize is answered and does not stop the deadline (fix of the original loophole)', async (t) => {
  const r = new RawCt(t);
  await r.opened;
  r.send(JSON.stringify({ type: 'authorize', messageId: 'abcdeABCDE' }));
  assert.equal(await r.next(), formatError('abcdeABCDE', "'payload' field missed"));
  const close = await r.closed(authorizeTimeoutMs + 3000);
  const elapsed = Date.now() - r.openedAt;
  t.note(`closed after ${elapsed} ms`);
  assert.deepStrictEqual(close, { code: 1013, reason: 'Authorization required' });
  assert.ok(elapsed >= authorizeTimeoutMs - 100, `not before the deadline (${elapsed} ms)`);
}, { timeout: authorizeTimeoutMs + 6000 });

suite.test('raw: a format error before authorize, then authorize: authorized', async (t) => {
  const r = new RawCt(t);
  await r.opened;
  r.send(JSON.stringify({ messageId: 'abcdeABCDE', payload: {} }));
  assert.equal(await r.next(), formatError('abcdeABCDE', "'type' field missed"));
  await r.authorize({ username: 'late' });
  const id = r.request('whoami', {});
  assert.equal(await r.next(), response(id, { username: 'late' }));
});

suite.test('raw: an upgrade on another path is refused', async (t) => {
  // The original's ws server answers 400 for a wrong path; the status is noted, not asserted.
  const wrong = new URL(url);
  wrong.pathname = `${wrong.pathname.replace(/\/$/, '')}/no-such-path`;
  const ws = new WebSocket(wrong.toString());
  const status = await new Promise((resolve) => {
    ws.on('unexpected-response', (request, res) => {
      resolve(res.statusCode);
      request.destroy();
    });
    ws.on('open', () => resolve('open'));
    ws.on('error', () => resolve('error'));
  });
  ws.terminate();
  t.note(`${wrong.pathname} → ${status}`);
  assert.ok(typeof status === 'number' && status >= 400, `refused with an HTTP error status, got ${status}`);
});

suite.test('raw: a first message that is not authorize closes 1008 "Unauthorized"', async (t) => {
  for (const [type, payload] of [['echo', { a: 1 }], ['noSuchType', {}], ['#subscribe', { channel: 'x' }], ['error', {}]]) {
    const r = new RawCt(t);
    await r.opened;
    r.request(type, payload);
    assert.deepStrictEqual(await r.closed(), { code: 1008, reason: 'Unauthorized' }, `first message ${type}`);
    assert.deepStrictEqual(r.frames, [], `no frame for ${type}`);
  }
});

suite.test('raw: a binary frame closes 1003 "Unsupported data", before and after authorize', async (t) => {
  const before = new RawCt(t);
  await before.opened;
  before.send(Buffer.from(JSON.stringify({ type: 'authorize', payload: { username: 'ann' }, messageId: 'abcdeABCDE' })));
  assert.deepStrictEqual(await before.closed(), { code: 1003, reason: 'Unsupported data' });
  assert.deepStrictEqual(before.frames, []);
  const after = await authorizedRaw(t);
  after.send(Buffer.from([1, 2, 3]));
  assert.deepStrictEqual(await after.closed(), { code: 1003, reason: 'Unsupported data' });
  assert.deepStrictEqual(after.unread(), []);
});

suite.test('raw: invalid JSON closes 1003 with the parser message, before and after authorize', async (t) => {
  for (const text of ['not json', '{"type":"echo",', '']) {
    const r = new RawCt(t);
    await r.opened;
    r.send(text);
    const close = await r.closed();
    t.note(`${JSON.stringify(text)} → 1003 ${JSON.stringify(close.reason)}`);
    assert.equal(close.code, 1003, `close for ${JSON.stringify(text)}: ${JSON.stringify(close)}`);
    assert.ok(close.reason.length > 0, 'a non-empty reason');
    assert.deepStrictEqual(r.frames, []);
  }
  const after = await authorizedRaw(t);
  after.send('{oops}');
  const close = await after.closed();
  assert.equal(close.code, 1003);
  assert.ok(close.reason.length > 0, 'a non-empty reason');
  assert.deepStrictEqual(after.unread(), []);
});

// ---------------------------------------------------------------------------------------------
// Validation

// [frame, original text, echoed id or null for a fresh one]. The checks run in the original's
// order: presence of messageId, type, payload; then their types; then the id's format.
const FORMAT_CASES = [
  ['{"type":"echo","payload":{}}', "'messageId' field missed", null],
  ['{"messageId":"abcdeABCDE","payload":{}}', "'type' field missed", 'abcdeABCDE'],
  ['{"messageId":"abcdeABCDE","type":"echo"}', "'payload' field missed", 'abcdeABCDE'],
  ['{"messageId":5,"type":"echo"}', "'payload' field missed", null],
  ['{"messageId":"abcdeABCDE","type":7}', "'payload' field missed", 'abcdeABCDE'],
  ['{}', "'messageId' field missed", null],
  ['{"messageId":5,"type":"echo","payload":{}}', "'messageId' should be a string", null],
  ['{"messageId":null,"type":"echo","payload":{}}', "'messageId' should be a string", null],
  ['{"messageId":"abcdeABCDE","type":7,"payload":{}}', "'type' should be a string", 'abcdeABCDE'],
  ['{"messageId":"abcdeABCDE","type":null,"payload":{}}', "'type' should be a string", 'abcdeABCDE'],
  ['{"messageId":"abcdeABCDE","type":"echo","payload":5}', "'payload' should be an object", 'abcdeABCDE'],
  ['{"messageId":"abcdeABCDE","type":"echo","payload":"x"}', "'payload' should be an object", 'abcdeABCDE'],
  ['{"messageId":"abcdeABCDE","type":"echo","payload":true}', "'payload' should be an object", 'abcdeABCDE'],
  ['{"messageId":"short","type":7,"payload":{}}', "'type' should be a string", null],
  ['{"messageId":"short","type":"echo","payload":{}}', 'Invalid message id', null],
  ['{"messageId":"abcde ABCD","type":"echo","payload":{}}', 'Invalid message id', null],
  ['{"messageId":"abcdeABCDEF","type":"echo","payload":{}}', 'Invalid message id', null],
  ['{"messageId":"abcdeABCD+","type":"echo","payload":{}}', 'Invalid message id', null],
  ['{"messageId":"","type":"echo","payload":{}}', 'Invalid message id', null],
];

suite.test('raw: each missing or wrong field → the original error text, MessageFormatError, socket open', async (t) => {
  const r = await authorizedRaw(t);
  const seen = new Set();
  for (const [frame, text, echoed] of FORMAT_CASES) {
    r.send(frame);
    const reply = await r.next();
    if (echoed) {
      // Sockyard's fix: a request with a valid id gets its error under that id.
      assert.equal(reply, formatError(echoed, text), `reply to ${frame}`);
    } else {
      const id = assertFresh(reply, (fresh) => formatError(fresh, text), [...seen], `reply to ${frame}`);
      seen.add(id);
    }
  }
  // Still open and serving.
  const id = r.request('echo', { still: 'open' });
  assert.equal(await r.next(), response(id, { still: 'open' }));
  assert.equal(r.close, null);
});

suite.test('raw: top-level JSON that is not an object → a MessageFormatError envelope, socket open', async (t) => {
  const r = await authorizedRaw(t);
  for (const frame of ['null', '[]', '[{"type":"echo","payload":{},"messageId":"abcdeABCDE"}]', '"text"', '5', 'true']) {
    r.send(frame);
    const reply = await r.next();
    const parsed = JSON.parse(reply);
    const text = parsed.payload && parsed.payload.error;
    t.note(`${frame} → ${JSON.stringify(text)}`);
    // The original answers 'messageId' field missed for arrays, strings, numbers and booleans,
    // and a TypeError's text for null; Sockyard answers one text for all of them.
    assertFresh(reply, (id) => errorMessage(id, 'Message Format Error: message should be a JSON object', 'MessageFormatError'), [], `reply to ${frame}`);
  }
  const id = r.request('echo', { still: 'open' });
  assert.equal(await r.next(), response(id, { still: 'open' }));
});

suite.test('raw: payload null, arrays and extra top-level fields are accepted, as in the original', async (t) => {
  const r = await authorizedRaw(t);
  assert.equal(await r.call('echo', [1, 'two', null], 'arrayArray'), response('arrayArray', [1, 'two', null]));
  r.send('{"type":"echo","payload":{"a":1},"messageId":"extraField","extra":{"x":1}}');
  assert.equal(await r.next(), response('extraField', { a: 1 }));
  r.send('{"messageId":"keyOrder01","payload":{"b":2,"a":1},"type":"echo"}');
  assert.equal(await r.next(), response('keyOrder01', { b: 2, a: 1 }), 'any key order in, payload key order kept');
  const reply = await r.call('echo', null, 'nullNull00');
  t.note(`echo of a null payload → ${reply}`);
  assert.equal(reply, response('nullNull00', null));
});

// ---------------------------------------------------------------------------------------------
// Requests and responses

suite.test('raw: a request sent before the authorize response waits and is answered after it', async (t) => {
  const r = new RawCt(t);
  await r.opened;
  // All in one go, as the original client does when it sends right after open.
  const auth = r.request('authorize', { username: 'early' });
  const who = r.request('whoami', {});
  const echo1 = r.request('echo', [1]);
  const echo2 = r.request('echo', { two: 2 });
  const frames = await r.nextFrames(4);
  assert.deepStrictEqual(frames, [
    response(auth, { username: 'early' }),
    response(who, { username: 'early' }),
    response(echo1, [1]),
    response(echo2, { two: 2 }),
  ]);
});

suite.test('raw: a refused authorize closes before a waiting request is answered', async (t) => {
  const r = new RawCt(t);
  await r.opened;
  r.request('authorize', { token: 'nonsense' });
  r.request('whoami', {});
  assert.deepStrictEqual(await r.closed(), { code: 1008, reason: 'Authorization failed: jwt malformed' });
  assert.deepStrictEqual(r.frames, [], 'no reply to the waiting request');
});

suite.test('client: send right after open (before authorization completes) is answered after authorize', async (t) => {
  const c = ctClient(t, { username: 'racer' });
  let early;
  // Runs right after the client's own onopen, which has just sent authorize.
  c.socket.addEventListener('open', () => {
    early = c.send('whoami', {});
  });
  await clientAuthorized(c);
  await waitFor(() => early, 2000, 'the early send');
  assert.deepStrictEqual(await early, { username: 'racer' });
  const auth = sentRequest(c, 'authorize');
  const who = sentRequest(c, 'whoami');
  assert.deepStrictEqual(c.record.outbound.map((f) => JSON.parse(f).type), ['authorize', 'whoami'], 'both sent before any reply');
  assert.deepStrictEqual(c.record.inbound, [response(auth.messageId, { username: 'racer' }), response(who.messageId, { username: 'racer' })]);
});

suite.test('client: send before open is queued, sent after authorize, and resolved', async (t) => {
  const c = ctClient(t, { username: 'queue' });
  const first = c.send('echo', { queued: 1 });
  const second = c.send('echo', ['two']);
  assert.deepStrictEqual(await Promise.all([first, second]), [{ queued: 1 }, ['two']]);
  assert.deepStrictEqual(c.record.outbound.map((f) => JSON.parse(f).type), ['authorize', 'echo', 'echo']);
  for (const frame of c.record.outbound) {
    const m = JSON.parse(frame);
    assertId(m.messageId, `id of ${frame}`);
    assert.equal(frame, newMessage(m.type, m.payload, m.messageId), 'key order type, payload, messageId');
  }
  const ids = c.record.outbound.map((f) => JSON.parse(f).messageId);
  assert.equal(new Set(ids).size, 3, 'distinct ids');
  assert.deepStrictEqual(c.record.inbound, [
    response(ids[0], { username: 'queue' }),
    response(ids[1], { queued: 1 }),
    response(ids[2], ['two']),
  ]);
});

const ECHO_VALUES = [
  ['object', { a: 1, b: 'two', c: true }],
  ['key order kept', { z: 1, a: 2, m: { y: 1, b: 2 } }],
  ['unicode', { s: 'héllo wörld ✓ 日本語 \u{1F600}' }],
  ['escapes', { s: 'a "quoted"\nline\\ \t tab \u0001 ctl \u001f' }],
  ['numbers', { i: 42, neg: -3.25, zero: 0, big: 9007199254740991, small: 0.001 }],
  ['booleans and null', { t: true, f: false, n: null }],
  ['empty object', {}],
  ['array', [1, 'two', null, { three: 3 }]],
  ['empty array', []],
  ['nested', { l1: { l2: { l3: { list: [[1, 2], [3, [4, { deep: 'yes' }]]] } } } }],
];

suite.test('client: echo of many payloads; exact response text; concurrent sends matched by messageId', async (t) => {
  const c = ctClient(t);
  await clientAuthorized(c);
  for (const [label, value] of ECHO_VALUES) {
    const before = c.record.outbound.length;
    assert.deepStrictEqual(await c.send('echo', value), value, `echo of ${label}`);
    const request = JSON.parse(c.record.outbound[before]);
    assert.equal(inboundFor(c, request.messageId), response(request.messageId, value), `exact response for ${label}`);
  }
  const many = Array.from({ length: 20 }, (_, i) => ({ i, s: `v${i}` }));
  assert.deepStrictEqual(await Promise.all(many.map((v) => c.send('echo', v))), many);
  assert.deepStrictEqual(c.record.messages, [], 'no onMessage for responses');
});

suite.test('raw + client: a request answered without data → {"messageId":…} only', async (t) => {
  const r = await authorizedRaw(t);
  assert.equal(await r.call('nothing', { ignored: true }, 'nothing001'), '{"messageId":"nothing001"}');
  const c = ctClient(t);
  await clientAuthorized(c);
  assert.equal(await c.send('nothing', {}), undefined);
  const request = sentRequest(c, 'nothing');
  assert.equal(inboundFor(c, request.messageId), response(request.messageId));
});

suite.test('raw: unknown type → error envelope NotFound with the request\'s messageId', async (t) => {
  const r = await authorizedRaw(t);
  assert.equal(
    await r.call('noSuchType', { x: 1 }, 'unknown001'),
    errorMessage('unknown001', "Unknown procedure 'noSuchType'", 'NotFound'),
  );
  assert.equal(await r.call('echo', { ok: 1 }, 'afterUnkno'), response('afterUnkno', { ok: 1 }), 'still open');
});

suite.test('raw: handler error (fail) → error envelope with name, extra fields, the request\'s messageId', async (t) => {
  const r = await authorizedRaw(t);
  assert.equal(
    await r.call('fail', { why: 'test' }, 'failing001'),
    errorMessage('failing001', 'bad thing', 'CustomError', { extra: 42 }),
  );
  const panic = await r.call('panic', {}, 'panicking1');
  const parsed = JSON.parse(panic);
  t.note(`panic → ${panic}`);
  assert.equal(parsed.type, 'error');
  assert.equal(parsed.messageId, 'panicking1');
  assert.equal(parsed.payload.name, 'InternalError');
  assert.equal(typeof parsed.payload.error, 'string');
  assert.deepStrictEqual(Object.keys(parsed), ['type', 'payload', 'messageId']);
  assert.equal(await r.call('echo', { ok: 1 }, 'afterPanic'), response('afterPanic', { ok: 1 }), 'still open');
});

suite.test('client: a failing request resolves with the error payload {error, name} and reaches onMessage', async (t) => {
  const c = ctClient(t);
  await clientAuthorized(c);
  const failed = await c.send('fail', {});
  assert.deepStrictEqual(failed, { error: 'bad thing', name: 'CustomError', extra: 42 }, 'the promise resolves with the error payload');
  assert.ok('error' in failed && 'name' in failed);
  const request = sentRequest(c, 'fail');
  assert.deepStrictEqual(c.record.messages, [{ type: 'error', payload: failed, messageId: request.messageId }], 'onMessage gets the error frame');
  const unknown = await c.send('nope', {});
  assert.deepStrictEqual(unknown, { error: "Unknown procedure 'nope'", name: 'NotFound' });
  const malformed = await c.send('#subscribe', {});
  assert.equal(malformed.name, 'InvalidActionError');
  assert.equal(malformed.error, 'Subscribe channel name was malformatted');
  assert.deepStrictEqual(await c.send('echo', { after: true }), { after: true });
});

suite.test('raw: server push (pushToMe) → {"type":"serverEvent","payload":…,"messageId":<fresh>}', async (t) => {
  const r = await authorizedRaw(t);
  const data = { hello: 'world', n: [1, 2] };
  const id = r.request('pushToMe', data, 'pushToMe01');
  const frames = await r.nextFrames(2);
  const reply = frames.find((f) => !JSON.parse(f).type);
  const push = frames.find((f) => JSON.parse(f).type);
  assert.equal(reply, response(id), `the reply among ${JSON.stringify(frames)}`);
  assertFresh(push, (fresh) => newMessage('serverEvent', data, fresh), [id], 'the push');
  t.note(`order: ${frames.map((f) => (JSON.parse(f).type ? 'push' : 'reply')).join(', ')}`);
  // Five pushes: in order, each with its own fresh id.
  const ids = new Set([id]);
  for (let seq = 1; seq <= 5; seq++) {
    r.request('pushToMe', { seq }, `pushSeq00${seq}`);
  }
  const more = await r.nextFrames(10);
  const pushes = more.filter((f) => JSON.parse(f).type);
  assert.deepStrictEqual(more.filter((f) => !JSON.parse(f).type), [1, 2, 3, 4, 5].map((seq) => response(`pushSeq00${seq}`)));
  assert.equal(pushes.length, 5);
  pushes.forEach((frame, i) => {
    ids.add(assertFresh(frame, (fresh) => newMessage('serverEvent', { seq: i + 1 }, fresh), [...ids], `push ${i + 1}`));
  });
});

suite.test('client: a server push reaches onMessage; the request resolves without data', async (t) => {
  const c = ctClient(t);
  await clientAuthorized(c);
  assert.equal(await c.send('pushToMe', { hi: 1 }), undefined);
  await waitFor(() => c.record.messages.length >= 1, 2000, 'the push');
  const [push] = c.record.messages;
  assert.equal(push.type, 'serverEvent');
  assert.deepStrictEqual(push.payload, { hi: 1 });
  assertId(push.messageId, 'push id');
  assert.notEqual(push.messageId, sentRequest(c, 'pushToMe').messageId);
});

// The original ignores a second authorize and leaves its request pending; Sockyard answers it
// with an error envelope and keeps the connection's auth data.
suite.test('raw + client: a second authorize is answered with an error envelope (auth data kept)', async (t) => {
  const already = (messageId) => errorMessage(messageId, 'The connection is already authorized', 'InvalidActionError');
  const r = await authorizedRaw(t, { username: 'ann' });
  const second = r.request('authorize', { username: 'eve' }, 'secondAuth');
  const third = r.request('authorize', { token: 'nonsense' }, 'thirdAuth0');
  const who = r.request('whoami', {});
  assert.equal(await r.next(), already(second));
  assert.equal(await r.next(), already(third));
  assert.equal(await r.next(), response(who, { username: 'ann' }), 'still authorized as before');
  await sleep(100);
  assert.deepStrictEqual(r.unread(), []);
  assert.equal(r.close, null);

  const c = ctClient(t, { username: 'ann' });
  await clientAuthorized(c);
  assert.deepStrictEqual(
    await c.send('authorize', { username: 'eve' }),
    { error: 'The connection is already authorized', name: 'InvalidActionError' },
    'the second authorize resolves with the error payload',
  );
  assert.deepStrictEqual(await c.send('whoami', {}), { username: 'ann' });
  assert.equal(c.record.auths.length, 1);
});

suite.test('client: after a server close, send reconnects, authorizes again and is answered', async (t) => {
  const c = ctClient(t, { username: 'again' });
  await clientAuthorized(c);
  c.send('closeMe', { code: 1000, reason: 'bye' });
  await waitFor(() => c.record.closes.length >= 1, 3000, 'the close');
  assert.deepStrictEqual(c.record.closes, [{ code: 1000, reason: 'bye' }]);
  assert.deepStrictEqual(await c.send('echo', { after: 'reconnect' }), { after: 'reconnect' });
  assert.equal(c.record.sockets.length, 2, 'a second socket');
  assert.equal(c.record.auths.length, 2, 'authorized again');
  const [second] = c.record.sockets.slice(1);
  const sent = second.outbound.map((f) => JSON.parse(f));
  assert.deepStrictEqual(sent.map((m) => m.type), ['authorize', 'echo']);
  assert.deepStrictEqual(second.inbound, [response(sent[0].messageId, { username: 'again' }), response(sent[1].messageId, { after: 'reconnect' })]);
});

// ---------------------------------------------------------------------------------------------
// Channels

suite.test('raw: #subscribe / #publish / #unsubscribe: exact replies and deliveries', async (t) => {
  const ch = channelName('raw');
  const [a, b] = await Promise.all([authorizedRaw(t, { username: 'a' }), authorizedRaw(t, { username: 'b' })]);
  assert.equal(await a.call('#subscribe', { channel: ch }, 'subA000001'), response('subA000001'));
  assert.equal(await b.call('#subscribe', { channel: ch, data: { hello: 1 } }, 'subB000001'), response('subB000001'));

  const data = { n: 1, text: 'héllo ✓', list: [1, null, { deep: true }] };
  a.request('#publish', { channel: ch, data }, 'pubA000001');
  const aFrames = await a.nextFrames(2);
  assert.ok(aFrames.includes(response('pubA000001')), `the publish reply among ${JSON.stringify(aFrames)}`);
  const delivered = (id) => newMessage('#publish', { channel: ch, data }, id);
  const aDelivery = assertFresh(aFrames.find((f) => f !== response('pubA000001')), delivered, ['pubA000001'], 'delivery to the publisher');
  const bDelivery = assertFresh(await b.next(), delivered, [], 'delivery to b');
  // Ids matter only within a connection; the original gives each recipient its own.
  t.note(aDelivery === bDelivery ? `one messageId (${aDelivery}) for the deliveries to both connections` : 'each connection got its own delivery id');

  // Without data: the payload has no data field.
  b.request('#publish', { channel: ch }, 'pubB000001');
  const bFrames = await b.nextFrames(2);
  assert.ok(bFrames.includes(response('pubB000001')), `the publish reply among ${JSON.stringify(bFrames)}`);
  assertFresh(bFrames.find((f) => f !== response('pubB000001')), (id) => newMessage('#publish', { channel: ch }, id), [], 'delivery without data');
  assertFresh(await a.next(), (id) => newMessage('#publish', { channel: ch }, id), [], 'delivery without data to a');

  assert.equal(await a.call('#unsubscribe', { channel: ch }, 'unsA000001'), response('unsA000001'));
  b.request('#publish', { channel: ch, data: 'after' }, 'pubB000002');
  await b.nextFrames(2);
  assert.equal(await a.call('echo', { sync: 1 }, 'syncA00001'), response('syncA00001', { sync: 1 }), 'nothing for a after #unsubscribe');
  await sleep(100);
  assert.deepStrictEqual(a.unread(), []);
});

suite.test('raw: malformed channel requests and unsubscribing a channel not subscribed', async (t) => {
  const r = await authorizedRaw(t);
  assert.equal(
    await r.call('#subscribe', {}, 'badSub0001'),
    errorMessage('badSub0001', 'Subscribe channel name was malformatted', 'InvalidActionError'),
  );
  assert.equal(
    await r.call('#subscribe', { channel: 5 }, 'badSub0002'),
    errorMessage('badSub0002', 'Subscribe channel name was malformatted', 'InvalidActionError'),
  );
  assert.equal(
    await r.call('#publish', { data: 1 }, 'badPub0001'),
    errorMessage('badPub0001', 'Publish channel name was malformatted', 'InvalidActionError'),
  );
  assert.equal(
    await r.call('#unsubscribe', [], 'badUns0001'),
    errorMessage('badUns0001', 'Unsubscribe channel name was malformatted', 'InvalidActionError'),
  );
  const notSubscribed = JSON.parse(await r.call('#unsubscribe', { channel: channelName('never') }, 'unsNever01'));
  t.note(`unsubscribe when not subscribed → ${JSON.stringify(notSubscribed)}`);
  assert.equal(notSubscribed.type, 'error');
  assert.equal(notSubscribed.messageId, 'unsNever01');
  assert.equal(notSubscribed.payload.name, 'BrokerError');
  assert.deepStrictEqual(Object.keys(notSubscribed), ['type', 'payload', 'messageId']);
});

suite.test('cross-protocol: a CTProto publication reaches socketcluster-client 20, and back', async (t) => {
  if (!scUrl) {
    t.skip(NO_SC);
  }
  const ch = channelName('cross');
  const sc = new CLIENTS.v20(scUrl);
  t.defer(() => sc.close());
  await sc.connected();
  const scMessages = sc.subscribe(ch);
  await sc.logged('subscribe', (e) => e.channel === ch);

  const c = ctClient(t, { username: 'ct' });
  await clientAuthorized(c);
  assert.equal(await c.send('#subscribe', { channel: ch }), undefined);
  const subscribe = sentRequest(c, '#subscribe');
  assert.equal(subscribe.type, '#subscribe');
  assert.equal(inboundFor(c, subscribe.messageId), response(subscribe.messageId));

  // CTProto → SocketCluster (and the CTProto publisher itself).
  const fromCt = { from: 'ct', n: [1, 2], s: 'ü' };
  assert.equal(await c.send('#publish', { channel: ch, data: fromCt }), undefined);
  await waitFor(() => scMessages.length >= 1, 2000, 'the publication on the SocketCluster client');
  assert.deepStrictEqual(scMessages, [fromCt]);
  assert.deepStrictEqual(sc.publications(ch), [{ event: '#publish', data: { channel: ch, data: fromCt } }]);
  const scFrame = sc.inbound.find((f) => f.includes('"#publish"'));
  assert.equal(scFrame, JSON.stringify({ event: '#publish', data: { channel: ch, data: fromCt } }), 'exact SocketCluster frame');
  await waitFor(() => c.record.messages.length >= 1, 2000, 'the publication on the CTProto publisher');

  // SocketCluster → CTProto.
  const fromSc = { from: 'sc', nested: { ok: true } };
  await sc.invokePublish(ch, fromSc);
  await waitFor(() => c.record.messages.length >= 2, 2000, 'the SocketCluster publication on the CTProto client');
  const deliveries = c.record.inbound.filter((f) => JSON.parse(f).type === '#publish');
  assert.equal(deliveries.length, 2, JSON.stringify(deliveries));
  const ids = [];
  ids.push(assertFresh(deliveries[0], (id) => newMessage('#publish', { channel: ch, data: fromCt }, id), [], 'own publication'));
  ids.push(assertFresh(deliveries[1], (id) => newMessage('#publish', { channel: ch, data: fromSc }, id), ids, 'SocketCluster publication'));
  assert.deepStrictEqual(c.record.messages.map((m) => m.payload), [{ channel: ch, data: fromCt }, { channel: ch, data: fromSc }]);

  // A transmitted publish from SocketCluster arrives too; then unsubscribe stops deliveries.
  sc.transmitPublish(ch, 'transmitted');
  await waitFor(() => c.record.messages.length >= 3, 2000, 'the transmitted publication');
  assert.deepStrictEqual(c.record.messages[2].payload, { channel: ch, data: 'transmitted' });
  assert.equal(await c.send('#unsubscribe', { channel: ch }), undefined);
  await sc.invokePublish(ch, 'after unsubscribe');
  await waitFor(() => scMessages.length >= 4, 2000, 'the last publication on the SocketCluster client');
  assert.deepStrictEqual(await c.send('echo', { sync: 1 }), { sync: 1 });
  await sleep(100);
  assert.equal(c.record.messages.length, 3, 'nothing after #unsubscribe');
});

suite.run().then(
  (failures) => process.exit(failures === 0 ? 0 : 1),
  (err) => {
    console.error(err);
    process.exit(2);
  },
);
