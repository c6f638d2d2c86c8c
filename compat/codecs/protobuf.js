// sc-codec-protobuf scenarios of the codec suite: socketcluster-client 20 with the official
// protobuf codec (socketcluster-api's types and `#api` event, then the events of protos.js)
// against a protobuf endpoint: the handshake, socketcluster-api calls (typed reply, error, 404)
// through lib/scapi.js, registered events (echo with every kind of field, a server transmit),
// and pings. Each frame is `01 <type id>` and a protobuf message; the ids are checked too.
//
// sc-codec-protobuf cannot carry what has no registered type (error replies, #publish, …), so
// plain `echo` of arbitrary JSON, SocketCluster errors and pub/sub are not tested here.

'use strict';

const assert = require('node:assert/strict');
const jwt = require('jsonwebtoken');
const { protobufApi } = require('./protos');
const { ApiCallError } = require('../lib/scapi');
const { hex, codecClient, binaryFrames, textFrames, waitFor, sleep } = require('./common');

// Type ids: the built-ins, then #api, then protos.js's events.
const ID = {
  handshakeRequest: 0,
  handshakeResponse: 1,
  ping: 3,
  subscribeRequest: 5,
  subscribeResponse: 6,
  apiCall: 8,
  apiResponse: 9,
  echoRequest: 10,
  echoResponse: 11,
  pushRequest: 12,
  pushResponse: 13,
  serverEvent: 14,
};

// The demo route's answer for {a, b}.
const RESOURCE_CASES = [
  [{ a: 'this string', b: 'this too' }, { c: 'this string this too' }],
  [{ a: 'ünï', b: '✓' }, { c: 'ünï ✓' }],
  [{ a: 'x'.repeat(300), b: 'y' }, { c: `${'x'.repeat(300)} y` }],
];

// Echo values (no field at its proto3 default: see the defaults test).
const ECHO_VALUES = [
  ['text only', { text: 'hello' }],
  ['every field kind', {
    text: 'héllo ✓ \u{1F600}',
    number: -123456,
    real: -3.25,
    flag: true,
    words: ['a', 'b c', ''],
    nested: { label: 'inner', values: [1, -2, 2147483647, -2147483648] },
    blob: new Uint8Array([0, 1, 2, 253, 254, 255]),
    count: 4000000000,
  }],
  ['long string and bytes', { text: 'z'.repeat(5000), blob: new Uint8Array(3000).fill(7) }],
];

// The type id of a protobuf frame (`01 <id> …`).
const typeId = (frame) => (frame.bytes[0] === 1 && frame.bytes.length >= 2 ? frame.bytes[1] : null);

function register(suite, env) {
  const { url, isSockyard, authKey } = env;

  // A v20 client with its own codec; `c.api` is its socketcluster-api helper.
  function client(t, options) {
    const api = protobufApi();
    const c = codecClient(t, url, api.codec, options);
    c.api = api;
    api.defineEndpoints(c.socket);
    return c;
  }

  async function connected(t, options) {
    const c = client(t, options);
    await c.connected();
    return c;
  }

  // Decodes a frame's message with the client's codec types.
  function message(c, frame, typeName) {
    return c.api.decodeMessage(typeName, frame.bytes.subarray(2));
  }

  // The inbound frames of one type id.
  const inbound = (c, id) => binaryFrames(c, 'in').filter((f) => typeId(f) === id);
  const outbound = (c, id) => binaryFrames(c, 'out').filter((f) => typeId(f) === id);

  // Byte-wise comparison of Uint8Arrays and Buffers inside plain objects.
  function normalize(value) {
    if (value instanceof Uint8Array) {
      return { bytes: hex(value) };
    }
    if (Array.isArray(value)) {
      return value.map(normalize);
    }
    if (value && typeof value === 'object') {
      return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, normalize(v)]));
    }
    return value;
  }

  suite.test('protobuf handshake: 01 00 request, 01 01 HandshakeResponse', async (t) => {
    const c = client(t);
    const status = await c.connected();
    assert.equal(typeof status.id, 'string');
    assert.ok(status.id.length > 0);
    assert.ok(!status.isAuthenticated, 'not authenticated');
    assert.equal(typeof status.pingTimeout, 'number');
    const [request] = binaryFrames(c, 'out');
    assert.equal(typeId(request), ID.handshakeRequest, `request frame ${hex(request.bytes)}`);
    const replies = inbound(c, ID.handshakeResponse);
    assert.equal(replies.length, 1, `one HandshakeResponse among ${binaryFrames(c, 'in').map((f) => hex(f.bytes)).join(' | ')}`);
    const reply = message(c, replies[0], '.socketcluster.builtins.HandshakeResponse');
    assert.equal(reply.rid, 1);
    assert.equal(reply.data.id, status.id);
    assert.equal(reply.data.pingTimeout, status.pingTimeout);
    // proto3 leaves a false bool out or writes it: both decode to false.
    t.note(`HandshakeResponse ${'isAuthenticated' in reply.data ? 'carries' : 'omits'} isAuthenticated=false: ${hex(replies[0].bytes)}`);
    assert.deepStrictEqual(c.errors, [], 'no client errors');
  });

  suite.test('protobuf handshake with a valid token: isAuthenticated true', async (t) => {
    const token = jwt.sign({ username: 'pb-user' }, authKey, { expiresIn: 3600 });
    const c = client(t);
    c.socket.auth.token = token;
    const status = await c.connected();
    assert.equal(status.isAuthenticated, true, `status ${JSON.stringify(status)}`);
    assert.equal(c.authState, 'authenticated');
    const request = message(c, binaryFrames(c, 'out')[0], '.socketcluster.builtins.HandshakeRequest');
    assert.equal(request.data.authToken, token, 'the token travels in HandshakeRequest.data.authToken');
    const reply = message(c, inbound(c, ID.handshakeResponse)[0], '.socketcluster.builtins.HandshakeResponse');
    assert.equal(reply.data.isAuthenticated, true);
  });

  suite.test('protobuf #api GET /resource: typed request (01 08), typed reply (01 09)', async (t) => {
    const c = await connected(t);
    for (const [request, expected] of RESOURCE_CASES) {
      assert.deepStrictEqual(await c.socket.get('/resource', '.app.RequestMessage', request), expected, `GET /resource ${JSON.stringify(request).slice(0, 40)}`);
    }
    // Concurrent calls are matched by rid.
    const many = Array.from({ length: 10 }, (_, i) => ({ a: `a${i}`, b: `b${i}` }));
    const answers = await Promise.all(many.map((r) => c.socket.get('/resource', '.app.RequestMessage', r)));
    assert.deepStrictEqual(answers, many.map(({ a, b }) => ({ c: `${a} ${b}` })));
    // No body: the handler gets {} and answers c = '' (proto3 may leave the field out).
    const noBody = await c.socket.get('/resource');
    assert.deepStrictEqual({ c: '', ...noBody }, { c: '' }, 'GET /resource without a body');
    t.note(`GET /resource without a body: ${JSON.stringify(noBody)}`);

    const calls = outbound(c, ID.apiCall);
    assert.equal(calls.length, RESOURCE_CASES.length + many.length + 1, 'every call is an ApiCall frame');
    const call = message(c, calls[0], '.socketclusterapi.ApiCall');
    assert.equal(call.event, '#api');
    assert.deepStrictEqual([call.data.resource, call.data.method, call.data.dataType], ['/resource', 'get', '.app.RequestMessage']);
    const responses = inbound(c, ID.apiResponse);
    assert.equal(responses.length, calls.length, 'every reply is an ApiResponse frame');
    const first = message(c, responses[0], '.socketclusterapi.ApiResponse');
    assert.equal(first.rid, call.cid);
    assert.equal(first.data.dataType, '.app.ResponseMessage');
    assert.ok(!first.data.isError, 'not an error');
    assert.deepStrictEqual(c.api.decodeMessage('.app.ResponseMessage', first.data.buffer), RESOURCE_CASES[0][1]);
  });

  suite.test('protobuf #api GET /fail: an error reply (isError)', async (t) => {
    const c = await connected(t);
    let err;
    try {
      await c.socket.get('/fail', '.app.RequestMessage', { a: 'x' });
    } catch (e) {
      err = e;
    }
    assert.ok(err instanceof ApiCallError, `an isError reply, got ${err}`);
    if (isSockyard) {
      // Sockyard sends the route's declared error type with the handler's fields: a deliberate
      // fix of socketcluster-api, whose typed-error branch is dead code.
      assert.equal(err.dataType, '.app.SomeError');
      assert.deepStrictEqual(err.data, { code: 500, message: 'this route always fails' });
    } else {
      // socketcluster-api turns every handler error into a generic 500.
      assert.equal(err.dataType, '.socketclusterapi.ApiError');
      assert.deepStrictEqual(err.data, { code: 500, reason: 'Internal Server Error', description: 'The resource threw an unexpected error.' });
    }
    const [reply] = inbound(c, ID.apiResponse);
    assert.ok(reply, 'the error travels as an ApiResponse (a successful SocketCluster reply)');
    t.note(`${err.dataType} ${JSON.stringify(err.data)}`);
  });

  suite.test('protobuf #api no route: ApiError 404 Not Found', async (t) => {
    const c = await connected(t);
    const cases = [
      ['get', '/nothing'],
      ['post', '/resource'],
      ['delete', '/fail'],
      ['get', '/resource/extra'],
    ];
    for (const [method, resource] of cases) {
      let err;
      try {
        await c.socket[method](resource, '.app.RequestMessage', { a: 'x', b: 'y' });
      } catch (e) {
        err = e;
      }
      assert.ok(err instanceof ApiCallError, `${method} ${resource}: an isError reply, got ${err}`);
      assert.equal(err.dataType, '.socketclusterapi.ApiError');
      assert.equal(err.data.code, 404);
      assert.equal(err.data.reason, 'Not Found');
      // socketcluster-api writes the method as the client sent it; Sockyard upper-cases it.
      const match = /^Requested resource '(\w+) (\S+)' has no handler defined\.$/.exec(err.data.description);
      assert.ok(match, `description: ${err.data.description}`);
      assert.equal(match[1].toLowerCase(), method);
      assert.equal(match[2], resource);
    }
    t.note(`e.g. ${JSON.stringify((await c.socket.get('/nothing').catch((e) => e)).data)}`);
  });

  suite.test('protobuf registered event echo: every field kind round-trips (01 0a / 01 0b)', async (t) => {
    const c = await connected(t);
    for (const [label, value] of ECHO_VALUES) {
      const answer = await c.invoke('echo', value);
      assert.deepStrictEqual(normalize(answer), normalize(value), `echo of ${label}`);
    }
    const many = Array.from({ length: 20 }, (_, i) => ({ text: `v${i}`, number: -i - 1 }));
    assert.deepStrictEqual(await Promise.all(many.map((v) => c.invoke('echo', v))), many, 'concurrent echo');
    const total = ECHO_VALUES.length + many.length;
    assert.equal(outbound(c, ID.echoRequest).length, total, 'EchoRequest frames');
    assert.equal(inbound(c, ID.echoResponse).length, total, 'EchoResponse frames');
    assert.deepStrictEqual(c.errors, [], 'no client errors');
  });

  suite.test('protobuf echo of proto3 defaults: equal once defaults are filled in', async (t) => {
    const c = await connected(t);
    const value = { text: '', number: 0, real: 0, flag: false, words: [], nested: { label: '', values: [] }, blob: new Uint8Array(0), count: 0 };
    const answer = await c.invoke('echo', value);
    const type = c.api.type('.compat.Value');
    const full = (v) => normalize(type.toObject(type.fromObject(v || {}), { defaults: true, arrays: true }));
    assert.deepStrictEqual(full(answer), full(value));
    t.note(`answer as decoded: ${JSON.stringify(normalize(answer))}`);
  });

  suite.test('protobuf registered events: pushToMe reply (01 0d) and serverEvent transmit (01 0e)', async (t) => {
    const c = await connected(t);
    const pushed = c.events('serverEvent');
    assert.equal(await c.invoke('pushToMe', { text: 'by invoke', count: 1 }), undefined, 'pushToMe answers without data');
    c.transmit('pushToMe', { text: 'by transmit', count: 2 });
    await waitFor(() => pushed.length >= 2, 3000, () => `two serverEvent (frames: ${binaryFrames(c, 'in').map((f) => hex(f.bytes)).join(' | ')})`);
    assert.deepStrictEqual(pushed, [{ text: 'by invoke', count: 1 }, { text: 'by transmit', count: 2 }]);
    assert.equal(inbound(c, ID.pushResponse).length, 1, 'one PushResponse');
    assert.equal(inbound(c, ID.serverEvent).length, 2, 'two ServerEvent frames');
    const [reply] = inbound(c, ID.pushResponse);
    const [request] = outbound(c, ID.pushRequest);
    const cid = message(c, request, '.compat.PushRequest').cid;
    assert.equal(hex(reply.bytes), hex(Buffer.from([1, ID.pushResponse, 0x08, cid])), 'PushResponse {rid}');
    const event = message(c, inbound(c, ID.serverEvent)[0], '.compat.ServerEvent');
    assert.equal(event.event, 'serverEvent');
    assert.equal('cid' in event, false);
  });

  suite.test('protobuf #subscribe: with data (JSON text) confirmed by 01 06; without data', async (t) => {
    const c = await connected(t);
    const ch = `pb-${Math.random().toString(36).slice(2, 10)}`;
    c.subscribe(ch, { data: { hello: 'pb' } });
    await waitFor(() => c.channelState(ch) === 'subscribed', 3000, () => `subscribed (log: ${c.logSummary()})`);
    const [request] = outbound(c, ID.subscribeRequest);
    const sent = message(c, request, '.socketcluster.builtins.SubscribeRequest');
    assert.deepStrictEqual(sent.data, { channel: ch, data: '{"hello":"pb"}' }, 'data travels as JSON text');
    const [reply] = inbound(c, ID.subscribeResponse);
    assert.equal(hex(reply.bytes), hex(Buffer.from([1, ID.subscribeResponse, 0x08, sent.cid])), 'SubscribeResponse {rid}');

    // socketcluster-client 20 subscribes without data by default. sc-codec-protobuf decodes that
    // to `undefined` (JSON.parse(undefined) throws), so the official server never answers;
    // Sockyard accepts the missing field.
    const bare = `pb-bare-${Math.random().toString(36).slice(2, 10)}`;
    c.subscribe(bare);
    if (isSockyard) {
      await waitFor(() => c.channelState(bare) === 'subscribed', 3000, () => `subscribed (log: ${c.logSummary()})`);
    } else {
      await sleep(500);
      assert.equal(c.channelState(bare), 'pending', 'no answer from the official server');
    }
    t.note(`subscribe without data: ${c.channelState(bare)}`);
  });

  suite.test('protobuf pings: v2 pings keep a protobuf client connected', async (t) => {
    const c = await connected(t);
    const raws = [];
    (async () => {
      for await (const { message } of c.socket.listener('raw')) {
        raws.push(message);
      }
    })();
    const pingTimeout = c.connects[0].pingTimeout;
    assert.ok(pingTimeout <= 2000, `the server must ping often for this test (pingTimeout ${pingTimeout})`);
    await sleep(Math.max(2500, pingTimeout + 1000));
    assert.equal(c.state, 'open', `still open (closes: ${JSON.stringify(c.closes)})`);
    const pings = textFrames(c, 'in').filter((f) => f.text === '').length;
    assert.ok(pings >= 3, `at least 3 text '' pings, got ${pings}`);
    const v1Pings = inbound(c, ID.ping).length;
    t.note(`${pings} '' pings; ${v1Pings} protobuf Ping frames (01 03); ${raws.length} raw events ${[...new Set(raws.map((m) => (typeof m === 'string' ? JSON.stringify(m) : `<${hex(new Uint8Array(m))}>`)))].join(', ')}`);
    if (!isSockyard) {
      assert.equal(v1Pings, 0, 'a protocol-v2 server sends no #1');
    }
    assert.deepStrictEqual(await c.socket.get('/resource', '.app.RequestMessage', { a: 'still', b: 'here' }), { c: 'still here' });
  }, { timeout: 8000 });
}

module.exports = { register, ID };
