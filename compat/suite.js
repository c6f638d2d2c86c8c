// The compatibility suite: drives the official socketcluster-client 20 and 14 (and raw `ws`
// frames) against a server that claims SocketCluster compatibility — Sockyard, or the official
// socketcluster-server 20 (reference-server.js) to prove that every test checks real behaviour.
//
// Usage: node suite.js --url ws://HOST:PORT/socketcluster/ [--v1-url URL]
//                      [--server sockyard|reference] [--auth-key KEY] [--jobs N] [--filter TEXT]
// Environment fallbacks: SC_URL, SC_V1_URL, SC_SERVER, SC_AUTH_KEY, SC_JOBS, SC_FILTER.
//
// --url is the endpoint for protocol-v2 clients (v20). --v1-url is the endpoint for protocol-v1
// clients (v14, and v20 with protocolVersion 1); it defaults to --url, which is right for
// Sockyard's dual-ping endpoints (`protocol_version = "both"`). The official server speaks one
// protocol version per instance, so against it pass a second, protocolVersion:1 instance; without
// one the v1 tests are skipped.
//
// The server must expose the procedures of Sockyard's test router (sockyard/tests/support):
// echo, nothing, fail, callClient, pushToMe (also as a transmit), closeMe, and for pub/sub and
// auth login, loginFor, whoami, kickMe, publishFromServer; channels named private/… must need an
// authenticated socket (error AuthError). It must sign and verify tokens (HS256) with --auth-key
// (default compat-test-key), the key the suite signs its own tokens with. It should ping every
// few hundred milliseconds with a pingTimeout of at most 2 s, or the ping tests fail (they would
// prove nothing otherwise). Exit status: 0 when no test failed.
//
// The pub/sub and auth scenarios live in scenarios/pubsub.js and scenarios/auth.js.

'use strict';

const assert = require('node:assert/strict');
const { Suite } = require('./lib/harness');
const { CLIENTS, RawClient, waitFor, sleep } = require('./lib/clients');
const { option } = require('./lib/options');

const url = option('url', 'SC_URL', null);
const server = option('server', 'SC_SERVER', 'sockyard');
const explicitV1Url = option('v1-url', 'SC_V1_URL', null);
const jobs = Number(option('jobs', 'SC_JOBS', '4'));
const filter = option('filter', 'SC_FILTER', null);
const authKey = option('auth-key', 'SC_AUTH_KEY', 'compat-test-key');

if (!url || !['sockyard', 'reference'].includes(server)) {
  console.error('usage: node suite.js --url ws://HOST:PORT/socketcluster/ [--v1-url URL] [--server sockyard|reference]');
  process.exit(2);
}

const isSockyard = server === 'sockyard';
// Sockyard answers both ping generations on one endpoint; the official server does not, so
// against it v1 clients need their own protocolVersion:1 instance.
const v1Url = explicitV1Url || (isSockyard ? url : null);
const NO_V1 = 'the reference server speaks one protocol version per instance and no --v1-url was given';

// Which endpoint a client generation connects to.
const ENDPOINT = { v20: url, v14: v1Url };
const KINDS = ['v20', 'v14'];

const suite = new Suite({ jobs, filter });

// A fresh client for one test, closed after it.
function client(t, kind, options = {}, endpoint = ENDPOINT[kind]) {
  const c = new CLIENTS[kind](endpoint, options);
  t.defer(() => c.close());
  return c;
}

async function connectedClient(t, kind, options) {
  const c = client(t, kind, options);
  await c.connected();
  return c;
}

function raw(t, endpoint = url) {
  const r = new RawClient(endpoint);
  t.defer(() => r.terminate());
  return r;
}

// Asserts that `promise` rejects and returns the error.
async function rejection(promise, what) {
  try {
    const value = await promise;
    throw new assert.AssertionError({ message: `${what}: expected an error, got ${JSON.stringify(value)}` });
  } catch (err) {
    if (err instanceof assert.AssertionError) {
      throw err;
    }
    return err;
  }
}

// Asks the server to close this connection. Whether the closeMe reply arrives before the close
// is not part of the contract; the returned note says which happened.
async function closeMe(c, data) {
  try {
    await c.invoke('closeMe', data);
    return 'closeMe replied before closing';
  } catch (err) {
    return `closeMe got no reply (${err.name}) before the close`;
  }
}

const ECHO_VALUES = [
  ['object', { a: 1, b: 'two', c: true }],
  ['string', 'hello'],
  ['empty string', ''],
  ['unicode string', 'héllo wörld ✓ 日本語 \u{1F600}'],
  ['string with quotes and newlines', 'a "quoted"\nline\\'],
  ['integer', 42],
  ['negative float', -3.25],
  ['zero', 0],
  ['large integer', 9007199254740991],
  ['true', true],
  ['false', false],
  ['null', null],
  ['empty object', {}],
  ['empty array', []],
  ['array', [1, 'two', null, { three: 3 }]],
  ['nested', { level1: { level2: { level3: { list: [[1, 2], [3, [4, { deep: 'yes' }]]] } } }, n: null }],
];

for (const kind of KINDS) {
  const skip = ENDPOINT[kind] ? undefined : NO_V1;

  suite.test(`${kind} handshake: socket id, isAuthenticated false, pingTimeout`, async (t) => {
    const c = client(t, kind);
    const status = await c.connected();
    assert.equal(typeof status.id, 'string', 'status.id is a string');
    assert.ok(status.id.length > 0, 'status.id is not empty');
    assert.equal(c.id, status.id, 'the client adopted the socket id');
    assert.equal(status.isAuthenticated, false);
    assert.equal(typeof status.pingTimeout, 'number');
    assert.ok(status.pingTimeout > 0, 'pingTimeout is positive');
    assert.equal(c.state, 'open');
    // The reply frame itself: {rid, data:{id, pingTimeout, isAuthenticated}}, no authError when
    // no token was sent.
    const reply = c.inboundPackets().find((p) => p.rid != null && p.data && p.data.id === status.id);
    assert.ok(reply, `handshake reply frame seen among ${JSON.stringify(c.inbound)}`);
    assert.equal(typeof reply.rid, 'number', 'rid is a number');
    assert.ok(!('error' in reply), 'no error in the handshake reply');
    assert.ok(!('authError' in reply.data), 'no authError without a token');
    const handshake = c.outboundPackets().find((p) => p.event === '#handshake');
    assert.equal(reply.rid, handshake.cid, 'the reply answers the handshake cid');
    assert.deepEqual(c.errors, [], 'no client errors');
  }, { skip });

  suite.test(`${kind} echo invoke: objects, strings, numbers, null, nested`, async (t) => {
    const c = await connectedClient(t, kind);
    for (const [label, value] of ECHO_VALUES) {
      assert.deepStrictEqual(await c.invoke('echo', value), value, `echo of ${label}`);
    }
    // Concurrent invokes are matched to their replies by rid.
    const many = Array.from({ length: 20 }, (_, i) => ({ i, s: `v${i}` }));
    assert.deepStrictEqual(await Promise.all(many.map((v) => c.invoke('echo', v))), many);
    // No data in, no data out: the frame has no `data`, and neither does the reply.
    assert.equal(await c.invoke('echo'), undefined, 'echo without data');
    assert.deepEqual(c.errors, [], 'no client errors');
  }, { skip });

  suite.test(`${kind} reply without data: {rid} only`, async (t) => {
    const c = await connectedClient(t, kind);
    assert.equal(await c.invoke('nothing', { ignored: true }), undefined);
    const request = c.outboundPackets().find((p) => p.event === 'nothing');
    const reply = c.inboundPackets().find((p) => p.rid === request.cid);
    assert.deepStrictEqual(reply, { rid: request.cid }, 'exact reply frame');
  }, { skip });

  suite.test(`${kind} transmit: server receives transmits in order`, async (t) => {
    const c = await connectedClient(t, kind);
    const pushed = c.events('serverEvent');
    // A transmit of pushToMe runs the procedure without a reply; the server's serverEvent push
    // proves it arrived. Five in a row must be handled in order.
    for (let seq = 1; seq <= 5; seq++) {
      c.transmit('pushToMe', { seq });
    }
    assert.equal(await c.invoke('echo', 'after transmits'), 'after transmits');
    await waitFor(() => pushed.length >= 5, 2000, `5 serverEvent pushes (got ${JSON.stringify(pushed)})`);
    assert.deepStrictEqual(pushed, [1, 2, 3, 4, 5].map((seq) => ({ seq })));
    const sent = c.outboundPackets().filter((p) => p.event === 'pushToMe');
    assert.equal(sent.length, 5);
    assert.ok(sent.every((p) => !('cid' in p)), `transmits carry no cid: ${JSON.stringify(sent)}`);
    // Nothing answers a transmit.
    await sleep(100);
    const rids = new Set(c.inboundPackets().filter((p) => p.rid != null).map((p) => p.rid));
    const cids = new Set(c.outboundPackets().filter((p) => p.cid != null).map((p) => p.cid));
    assert.deepStrictEqual([...rids].sort(), [...cids].sort(), 'replies only for invokes');
  }, { skip });

  suite.test(`${kind} error reply: name, message, extra preserved, no stack`, async (t) => {
    const c = await connectedClient(t, kind);
    const err = await rejection(c.invoke('fail', { why: 'test' }), 'fail');
    assert.ok(err instanceof Error, 'rehydrated as an Error');
    assert.equal(err.name, 'CustomError');
    assert.equal(err.message, 'bad thing');
    assert.equal(err.extra, 42);
    const request = c.outboundPackets().find((p) => p.event === 'fail');
    const reply = c.inboundPackets().find((p) => p.rid === request.cid);
    assert.ok(reply && reply.error, `error reply frame: ${JSON.stringify(reply)}`);
    assert.deepStrictEqual(
      Object.keys(reply.error).sort(),
      ['extra', 'message', 'name'],
      `error fields: ${JSON.stringify(reply.error)}`,
    );
    assert.ok(!('stack' in reply.error), 'no stack on the wire');
    // The connection is still usable afterwards.
    assert.equal(await c.invoke('echo', 1), 1);
  }, { skip });

  suite.test(`${kind} pings keep the connection open`, async (t) => {
    const c = await connectedClient(t, kind);
    const status = c.connects[0];
    // The client's own ping watchdog is the advertised pingTimeout: if it were longer than the
    // observation window, this test would prove nothing.
    assert.ok(
      status.pingTimeout <= 2000,
      `server must be started with a short ping interval (pingTimeout ${status.pingTimeout} ms > 2000 ms)`,
    );
    const windowMs = Math.max(2500, status.pingTimeout + 1000);
    await sleep(windowMs);
    assert.deepEqual(c.closes, [], `no close (e.g. 4000 from the client watchdog) in ${windowMs} ms`);
    assert.equal(c.state, 'open');
    assert.deepEqual(c.errors, [], 'no client errors');
    // v20 speaks protocol v2 (ping '' → pong ''), v14 protocol v1 (ping #1 → pong #2).
    const [ping, pong] = kind === 'v20' ? ['', ''] : ['#1', '#2'];
    const pings = c.count(c.inbound, ping);
    const pongs = c.count(c.outbound, pong);
    t.note(`${pings} pings ${JSON.stringify(ping)} in, ${pongs} pongs ${JSON.stringify(pong)} out, pingTimeout ${status.pingTimeout} ms`);
    if (isSockyard) {
      // Dual ping: the other generation's ping arrives too and is ignored as a raw message.
      const other = kind === 'v20' ? '#1' : '';
      t.note(`${c.count(c.inbound, other)} pings ${JSON.stringify(other)} of the other protocol version (ignored by the client)`);
    }
    assert.ok(pings >= 3, `at least 3 pings ${JSON.stringify(ping)} (got ${pings})`);
    assert.ok(pongs >= 3, `at least 3 pongs ${JSON.stringify(pong)} (got ${pongs})`);
    // The server accepted the pongs (its own pingTimeout is over) and still answers.
    assert.equal(await c.invoke('echo', 'still here'), 'still here');
  }, { skip, timeout: 15000 });

  suite.test(`${kind} server-initiated invoke: callClient → clientProc`, async (t) => {
    const c = await connectedClient(t, kind);
    c.procedure('clientProc', (data) => {
      if (data && data.fail) {
        const err = new Error('declined by client');
        err.name = 'ClientError';
        throw err;
      }
      return { answer: data.q + 1, got: data };
    });
    assert.deepStrictEqual(await c.invoke('callClient', { q: 1 }), { answer: 2, got: { q: 1 } });
    // The server's invoke used its own cid, answered by our {rid, data}.
    const request = c.inboundPackets().find((p) => p.event === 'clientProc');
    assert.equal(typeof request.cid, 'number', `server invoke has a numeric cid: ${JSON.stringify(request)}`);
    const answer = c.outboundPackets().find((p) => p.rid === request.cid);
    assert.deepStrictEqual(answer, { rid: request.cid, data: { answer: 2, got: { q: 1 } } });
    // An error from the client procedure comes back to the original caller.
    const err = await rejection(c.invoke('callClient', { fail: true }), 'callClient with fail');
    assert.equal(err.name, 'ClientError');
    assert.equal(err.message, 'declined by client');
  }, { skip });

  suite.test(`${kind} server transmit: pushToMe → serverEvent`, async (t) => {
    const c = await connectedClient(t, kind);
    const pushed = c.events('serverEvent');
    assert.equal(await c.invoke('pushToMe', { hello: 'world', n: [1, 2] }), undefined);
    await waitFor(() => pushed.length >= 1, 2000, 'serverEvent');
    assert.deepStrictEqual(pushed, [{ hello: 'world', n: [1, 2] }]);
    const frame = c.inboundPackets().find((p) => p.event === 'serverEvent');
    assert.ok(!('cid' in frame), `a server transmit has no cid: ${JSON.stringify(frame)}`);
  }, { skip });

  suite.test(`${kind} unknown procedure`, async (t) => {
    const ackTimeout = 1000;
    const c = await connectedClient(t, kind, { ackTimeout });
    const started = Date.now();
    const err = await rejection(c.invoke('noSuchProcedure', { x: 1 }, { ackTimeout }), 'unknown procedure');
    const elapsed = Date.now() - started;
    t.note(`${err.name}: ${err.message} after ${elapsed} ms`);
    if (isSockyard) {
      // Sockyard answers at once with a NotFound error.
      assert.equal(err.name, 'NotFound');
      assert.ok(elapsed < ackTimeout / 2, `answered fast, not by the client timeout (${elapsed} ms)`);
    } else {
      // By design difference: the official server never replies when no procedure consumer
      // exists, so the client gives up after ackTimeout with a TimeoutError.
      assert.equal(err.name, 'TimeoutError');
      assert.ok(elapsed >= ackTimeout - 50, `timed out by the client (${elapsed} ms)`);
    }
    assert.equal(await c.invoke('echo', 'ok'), 'ok', 'still usable');
  }, { skip });

  suite.test(`${kind} reconnect after a server close with 4001`, async (t) => {
    const c = client(t, kind, { autoReconnect: true });
    const first = await c.connected(1);
    t.note(await closeMe(c, { code: 4001, reason: 'go away briefly' }));
    const close = await c.closed(1);
    assert.equal(close.code, 4001);
    assert.equal(close.reason, 'go away briefly');
    // 4001 (like 4000 and 1005) makes the client reconnect at once.
    const second = await c.connected(2, 3000);
    assert.notEqual(second.id, first.id, 'a new socket id');
    assert.equal(await c.invoke('echo', 'back'), 'back');
  }, { skip });

  suite.test(`${kind} reconnect with backoff after 4100`, async (t) => {
    const c = client(t, kind, {
      autoReconnect: true,
      autoReconnectOptions: { initialDelay: 100, randomness: 0, multiplier: 1, maxDelay: 200 },
    });
    await c.connected(1);
    t.note(await closeMe(c, { code: 4100, reason: 'later' }));
    const close = await c.closed(1);
    assert.equal(close.code, 4100);
    await c.connected(2, 3000);
    assert.equal(await c.invoke('echo', 'back again'), 'back again');
  }, { skip });

  suite.test(`${kind} no reconnect after a close code >= 4500`, async (t) => {
    const c = client(t, kind, {
      autoReconnect: true,
      autoReconnectOptions: { initialDelay: 50, randomness: 0, multiplier: 1, maxDelay: 100 },
    });
    await c.connected(1);
    t.note(await closeMe(c, { code: 4500, reason: 'permanent' }));
    const close = await c.closed(1);
    assert.equal(close.code, 4500);
    assert.equal(close.reason, 'permanent');
    await sleep(500);
    assert.equal(c.connectingCount, 1, 'no reconnect attempt');
    assert.equal(c.connects.length, 1);
    assert.equal(c.state, 'closed');
    assert.ok(!c.pendingReconnect, 'no reconnect pending');
  }, { skip });
}

// Pub/sub and auth, with the helpers above.
const scenarioEnv = {
  KINDS,
  ENDPOINT,
  NO_V1,
  url,
  isSockyard,
  authKey,
  client,
  connectedClient,
  raw,
  rejection,
  closeMe,
};
require('./scenarios/pubsub').register(suite, scenarioEnv);
require('./scenarios/auth').register(suite, scenarioEnv);

suite.test('v20 batch: startBatch/flushBatch sends one array frame, handled in order', async (t) => {
  const c = await connectedClient(t, 'v20');
  const pushed = c.events('serverEvent');
  const framesBefore = c.outbound.length;
  c.socket.startBatch();
  const results = Promise.all([
    c.invoke('echo', 1),
    c.invoke('echo', { two: 2 }),
    (c.transmit('pushToMe', 'batched'), undefined),
    c.invoke('nothing'),
    c.invoke('echo', 'last'),
  ]);
  c.socket.flushBatch();
  assert.deepStrictEqual(await results, [1, { two: 2 }, undefined, undefined, 'last']);
  const frames = c.outbound.slice(framesBefore);
  assert.equal(frames.length, 1, `one frame sent: ${JSON.stringify(frames)}`);
  const batch = JSON.parse(frames[0]);
  assert.ok(Array.isArray(batch) && batch.length === 5, `a JSON array of 5 packets: ${frames[0]}`);
  await waitFor(() => pushed.length >= 1, 2000, 'serverEvent from the batched transmit');
  assert.deepStrictEqual(pushed, ['batched']);
});

// A v20 client set to protocolVersion 1 must get #1 pings (on Sockyard's dual endpoint it also
// sees '' pings, which it ignores as raw messages).
suite.test('v20 with protocolVersion 1: #1/#2 pings keep it open', async (t) => {
  const c = client(t, 'v20', { protocolVersion: 1 }, v1Url);
  const status = await c.connected();
  assert.ok(status.pingTimeout <= 2000, `short pingTimeout needed (${status.pingTimeout} ms)`);
  await sleep(Math.max(2500, status.pingTimeout + 1000));
  assert.deepEqual(c.closes, []);
  assert.deepEqual(c.errors, []);
  const pings = c.count(c.inbound, '#1');
  const pongs = c.count(c.outbound, '#2');
  t.note(`${pings} pings #1 in, ${pongs} pongs #2 out`);
  assert.ok(pings >= 3 && pongs >= 3, `pings ${pings}, pongs ${pongs}`);
  assert.equal(await c.invoke('echo', 'v1'), 'v1');
}, { skip: v1Url ? undefined : NO_V1, timeout: 15000 });

suite.test('raw: #handshake without cid closes with 4008', async (t) => {
  const r = raw(t);
  await r.opened;
  r.send(JSON.stringify({ event: '#handshake', data: { authToken: null } }));
  const close = await r.closed();
  assert.equal(close.code, 4008, `close ${JSON.stringify(close)}, frames ${JSON.stringify(r.frames)}`);
  assert.deepEqual(r.packets().filter((p) => p.rid != null), [], 'no reply to the handshake');
});

suite.test('raw: an invoke before the handshake closes with 4009', async (t) => {
  const r = raw(t);
  await r.opened;
  r.send(JSON.stringify({ event: 'echo', data: 1, cid: 1 }));
  const close = await r.closed();
  assert.equal(close.code, 4009, `close ${JSON.stringify(close)}, frames ${JSON.stringify(r.frames)}`);
  assert.deepEqual(r.packets(), [], 'no reply');
});

suite.test('raw: a transmit before the handshake closes with 4009', async (t) => {
  const r = raw(t);
  await r.opened;
  r.send(JSON.stringify({ event: 'pushToMe', data: 'early' }));
  const close = await r.closed();
  assert.equal(close.code, 4009, `close ${JSON.stringify(close)}, frames ${JSON.stringify(r.frames)}`);
  assert.deepEqual(r.packets(), [], 'nothing pushed');
});

suite.test('raw: a pong before the handshake closes with 4009', async (t) => {
  const r = raw(t);
  await r.opened;
  r.send('');
  const close = await r.closed();
  assert.equal(close.code, 4009, `close ${JSON.stringify(close)}, frames ${JSON.stringify(r.frames)}`);
});

// sc-formatter reads a frame that is not JSON, or JSON that is not a packet, as a raw message,
// and the server closes a socket whose first message is not the handshake with 4009 (with no
// reason; Sockyard gives "Message received before handshake").
suite.test('raw: a handshake that is not JSON closes with 4009', async (t) => {
  const frames = [
    'hello',
    '{"event":"#handshake","cid":1',
    '"#handshake"',
    'null',
    '[1]',
    Buffer.from([0xff, 0xfe, 0x00]),
    Buffer.from('{"event":"#handshake","cid":1'),
  ];
  for (const frame of frames) {
    const r = raw(t);
    await r.opened;
    r.send(frame);
    const close = await r.closed();
    const label = Buffer.isBuffer(frame) ? `binary ${frame.toString('hex')}` : JSON.stringify(frame);
    assert.equal(close.code, 4009, `${label}: close ${JSON.stringify(close)}, frames ${JSON.stringify(r.frames)}`);
    assert.deepEqual(r.packets(), [], `${label}: no reply`);
  }
});

// JSON.parse has no depth limit, so the official server echoes a call nested 1000 levels deep;
// Sockyard answers that call alone with InvalidMessageError (JSON nests at most 128 levels).
// Either way, the other calls of the batch are answered, in order.
suite.test('raw: a batch with one call nested 1000 levels deep answers every call', async (t) => {
  const r = raw(t);
  await r.handshake(1);
  const deep = JSON.parse('['.repeat(1000) + ']'.repeat(1000));
  r.send(JSON.stringify([
    { event: 'echo', data: 'first', cid: 2 },
    { event: 'echo', data: deep, cid: 3 },
    { event: 'echo', data: 'last', cid: 4 },
  ]));
  await waitFor(() => r.packets().filter((p) => p.rid >= 2).length >= 3, 3000, () => `replies 2..4 (got ${r.frames.length} frames)`);
  const replies = r.packets().filter((p) => p.rid >= 2);
  assert.deepStrictEqual(replies.map((p) => p.rid), [2, 3, 4], 'replies in request order');
  assert.deepStrictEqual(replies[0], { rid: 2, data: 'first' });
  if (isSockyard) {
    assert.equal(replies[1].error && replies[1].error.name, 'InvalidMessageError', JSON.stringify(replies[1]).slice(0, 200));
  } else {
    assert.deepStrictEqual(replies[1].data, deep);
  }
  assert.deepStrictEqual(replies[2], { rid: 4, data: 'last' });
});

// A JavaScript string may hold a lone surrogate; JSON.stringify writes it as an escape. The
// official server echoes it as it came; Sockyard reads it as U+FFFD.
suite.test('v20 echo of a string holding a lone surrogate is answered', async (t) => {
  const c = await connectedClient(t, 'v20');
  const value = { s: 'x\ud800y', '\udc00': 1 };
  const before = c.outbound.length;
  const echoed = await c.invoke('echo', value);
  assert.ok(c.outbound.slice(before).some((f) => f.includes('\\ud800')), 'the frame carries the escape');
  assert.deepStrictEqual(echoed, isSockyard ? { s: 'x\ufffdy', '\ufffd': 1 } : value);
});

suite.test('raw: a JSON array frame is a batch, handled in order', async (t) => {
  const r = raw(t);
  await r.handshake(1);
  r.send(JSON.stringify([
    { event: 'echo', data: 'first', cid: 2 },
    { event: 'pushToMe', data: 'pushed' },
    { event: 'echo', data: { second: [1, 2] }, cid: 3 },
    { event: 'nothing', cid: 4 },
    { event: 'fail', cid: 5 },
  ]));
  await waitFor(
    () => r.packets().filter((p) => p.rid >= 2).length >= 4 && r.packets().some((p) => p.event === 'serverEvent'),
    3000,
    `replies 2..5 and serverEvent (got ${JSON.stringify(r.frames)})`,
  );
  const replies = r.packets().filter((p) => p.rid >= 2);
  assert.deepStrictEqual(replies.map((p) => p.rid), [2, 3, 4, 5], 'replies in request order');
  assert.deepStrictEqual(replies[0], { rid: 2, data: 'first' });
  assert.deepStrictEqual(replies[1], { rid: 3, data: { second: [1, 2] } });
  assert.deepStrictEqual(replies[2], { rid: 4 });
  assert.equal(replies[3].error && replies[3].error.name, 'CustomError');
  assert.deepStrictEqual(
    r.packets().filter((p) => p.event === 'serverEvent'),
    [{ event: 'serverEvent', data: 'pushed' }],
  );
});

suite.test('raw: a string cid makes the packet a transmit', async (t) => {
  const r = raw(t);
  await r.handshake(1);
  r.send(JSON.stringify({ event: 'pushToMe', data: 'string cid', cid: '7' }));
  r.send(JSON.stringify({ event: 'echo', data: 'sync', cid: 8 }));
  await waitFor(() => r.packets().some((p) => p.rid === 8), 3000, 'reply 8');
  await waitFor(() => r.packets().some((p) => p.event === 'serverEvent'), 2000, 'serverEvent');
  await sleep(100);
  const replies = r.packets().filter((p) => p.rid != null && p.rid !== 1);
  assert.deepStrictEqual(replies, [{ rid: 8, data: 'sync' }], 'only the numeric cid is answered');
});

suite.test('raw: handshake reply has a numeric rid and id, pingTimeout, isAuthenticated', async (t) => {
  const r = raw(t);
  const reply = await r.handshake(17);
  assert.equal(reply.rid, 17, 'the client cid is echoed, whatever it is');
  assert.equal(typeof reply.data.id, 'string');
  assert.equal(typeof reply.data.pingTimeout, 'number');
  assert.equal(reply.data.isAuthenticated, false);
  assert.deepStrictEqual(Object.keys(reply.data).sort(), ['id', 'isAuthenticated', 'pingTimeout']);
});

// A promise rejected with nobody listening would otherwise end the process mid-run (Node's
// default); record it and fail the run at the end instead.
const unhandled = [];
process.on('unhandledRejection', (reason) => {
  unhandled.push(reason);
  console.log(`unhandled rejection: ${reason && reason.stack ? reason.stack : reason}`);
});

(async () => {
  console.log(`compat suite: server=${server} url=${url} v1-url=${v1Url || '(none)'}`);
  const failures = (await suite.run()) + unhandled.length;
  // Client sockets and streams may still hold the event loop; the verdict is in.
  process.exit(failures === 0 ? 0 : 1);
})().catch((err) => {
  console.error(err);
  process.exit(1);
});
