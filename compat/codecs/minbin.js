// sc-codec-min-bin scenarios of the codec suite: socketcluster-client 20 with the official
// MessagePack codec against a min-bin endpoint. Checks the values a client gets back, and the
// binary frames themselves against what msgpack-lite (with sc-codec-min-bin's options) makes of
// the expected compact packet: {e:[event, data, cid?]}, {p:[channel, data, cid?]} and
// {r:[rid, error, data]}.

'use strict';

const assert = require('node:assert/strict');
const jwt = require('jsonwebtoken');
const {
  packMsgpack,
  unpackMsgpack,
  hex,
  containsHex,
  codecClient,
  binaryFrames,
  textFrames,
  minbinCodec,
  waitFor,
  sleep,
} = require('./common');

const ECHO_VALUES = [
  ['object', { a: 1, b: 'two', c: true }],
  ['string', 'hello'],
  ['empty string', ''],
  ['unicode string', 'héllo wörld ✓ 日本語 \u{1F600}'],
  ['string of 40 bytes (str8)', 'x'.repeat(40)],
  ['string of 300 bytes (str16)', 'y'.repeat(300)],
  ['integer', 42],
  ['uint8', 200],
  ['uint16', 60000],
  ['uint32', 4000000000],
  ['negative fixint', -5],
  ['int8', -100],
  ['int32', -2147483648],
  ['negative float', -3.25],
  ['zero', 0],
  ['large integer (2^53 - 1)', 9007199254740991],
  ['true', true],
  ['false', false],
  ['null', null],
  ['empty object', {}],
  ['empty array', []],
  ['array', [1, 'two', null, { three: 3 }]],
  ['nested', { level1: { level2: { level3: { list: [[1, 2], [3, [4, { deep: 'yes' }]]] } } }, n: null }],
  ['object with 20 keys (map16)', Object.fromEntries(Array.from({ length: 20 }, (_, i) => [`k${i}`, i]))],
];

// An ArrayBuffer holding `bytes`.
const arrayBuffer = (bytes) => new Uint8Array(bytes).buffer;

function register(suite, env) {
  const { url, isSockyard, authKey } = env;

  const client = (t, options) => codecClient(t, url, minbinCodec(), options);

  async function connected(t, options) {
    const c = client(t, options);
    await c.connected();
    return c;
  }

  // The inbound compact packets of a client (pings and undecodable frames skipped).
  function inboundCompact(c) {
    const packets = [];
    for (const frame of binaryFrames(c, 'in')) {
      try {
        const value = unpackMsgpack(frame.bytes);
        packets.push(...(Array.isArray(value) ? value : [value]));
      } catch {
        // not a packet
      }
    }
    return packets;
  }

  // The inbound binary frame answering call `rid` ({r:[rid, …]}).
  function replyFrame(c, rid) {
    return binaryFrames(c, 'in').find((f) => {
      try {
        const value = unpackMsgpack(f.bytes);
        return value && Array.isArray(value.r) && value.r[0] === rid;
      } catch {
        return false;
      }
    });
  }

  // The outbound compact packets of a client, batches flattened.
  function outboundCompact(c) {
    const packets = [];
    for (const frame of binaryFrames(c, 'out')) {
      const value = unpackMsgpack(frame.bytes);
      packets.push(...(Array.isArray(value) ? value : [value]));
    }
    return packets;
  }

  // The cid of the client's n-th outbound invoke of `event` ({e:[event, data, cid]}).
  function cidOf(c, event, n = 1) {
    const sent = outboundCompact(c).filter((p) => p.e && p.e[0] === event);
    assert.ok(sent[n - 1], `outbound ${event} #${n} among ${JSON.stringify(outboundCompact(c))}`);
    return sent[n - 1].e[2];
  }

  suite.test('minbin handshake: binary frames, compact #handshake and {r:[rid, nil, status]}', async (t) => {
    const c = client(t);
    const status = await c.connected();
    assert.equal(typeof status.id, 'string');
    assert.ok(status.id.length > 0);
    assert.equal(status.isAuthenticated, false);
    assert.equal(typeof status.pingTimeout, 'number');
    // What the official codec sends (SocketCluster notes §7.3): a binary frame.
    const [request] = binaryFrames(c, 'out');
    assert.equal(
      hex(request.bytes),
      '81 a1 65 93 aa 23 68 61 6e 64 73 68 61 6b 65 81 a9 61 75 74 68 54 6f 6b 65 6e c0 01',
      'the handshake request frame',
    );
    const frame = replyFrame(c, 1);
    assert.ok(frame, `a binary {r:[1, …]} reply among ${binaryFrames(c, 'in').map((f) => hex(f.bytes)).join(' | ')}`);
    const reply = unpackMsgpack(frame.bytes);
    assert.deepStrictEqual(Object.keys(reply), ['r'], 'one key, r');
    assert.equal(reply.r.length, 3, 'r always has three items');
    assert.equal(reply.r[1], null, 'no error (nil)');
    assert.deepStrictEqual(Object.keys(reply.r[2]).sort(), ['id', 'isAuthenticated', 'pingTimeout']);
    assert.equal(reply.r[2].id, status.id);
    // Only the v2 ping '' travels as text.
    const texts = textFrames(c, 'in').filter((f) => f.text !== '');
    assert.deepStrictEqual(texts.map((f) => f.text), [], 'no other text frames');
    assert.deepStrictEqual(c.errors, [], 'no client errors');
  });

  suite.test('minbin echo: every value type round-trips; exact {r:[rid, nil, data]} frames', async (t) => {
    const c = await connected(t);
    for (const [label, value] of ECHO_VALUES) {
      assert.deepStrictEqual(await c.invoke('echo', value), value, `echo of ${label}`);
      const rid = cidOf(c, 'echo', ECHO_VALUES.findIndex(([l]) => l === label) + 1);
      const frame = replyFrame(c, rid);
      assert.ok(frame, `reply frame for ${label}`);
      assert.equal(hex(frame.bytes), hex(packMsgpack({ r: [rid, null, value] })), `reply frame for ${label}`);
    }
    // Concurrent invokes are matched to their replies by rid.
    const many = Array.from({ length: 20 }, (_, i) => ({ i, s: `v${i}` }));
    assert.deepStrictEqual(await Promise.all(many.map((v) => c.invoke('echo', v))), many);
    // No data: the client sends {e:['echo', nil, cid]} and reads the reply's nil data as null.
    const empty = await c.invoke('echo');
    assert.equal(empty, null, 'echo without data');
    const rid = cidOf(c, 'echo', ECHO_VALUES.length + many.length + 1);
    t.note(`echo without data: reply frame ${hex(replyFrame(c, rid).bytes)}`);
    assert.deepStrictEqual(c.errors, [], 'no client errors');
  });

  suite.test('minbin error reply: name, message, extra; wire {r:[rid, {name, message, extra}, nil]}', async (t) => {
    const c = await connected(t);
    let err;
    try {
      await c.invoke('fail', { why: 'test' });
    } catch (e) {
      err = e;
    }
    assert.ok(err, 'fail rejects');
    assert.equal(err.name, 'CustomError');
    assert.equal(err.message, 'bad thing');
    assert.equal(err.extra, 42);
    const rid = cidOf(c, 'fail');
    const reply = unpackMsgpack(replyFrame(c, rid).bytes);
    assert.equal(reply.r.length, 3);
    assert.equal(reply.r[0], rid);
    assert.deepStrictEqual(Object.keys(reply.r[1]).sort(), ['extra', 'message', 'name'], 'exactly name, message, extra');
    assert.deepStrictEqual(reply.r[1], { ...reply.r[1], name: 'CustomError', message: 'bad thing', extra: 42 });
    assert.equal(reply.r[2], null, 'no data (nil)');
    // The server's key order differs (Sockyard: name first; socketcluster-server: message first).
    t.note(`error reply frame: ${hex(replyFrame(c, rid).bytes)}`);
  });

  suite.test('minbin batch: startBatch/flushBatch sends one binary array frame; every reply arrives', async (t) => {
    const c = await connected(t);
    const before = binaryFrames(c, 'out').length;
    c.socket.startBatch();
    const calls = [
      c.invoke('echo', 'first'),
      c.invoke('nothing', { ignored: true }),
      c.invoke('fail'),
      c.invoke('echo', { second: [1, 2] }),
    ];
    c.socket.flushBatch();
    const results = await Promise.allSettled(calls);
    const sent = binaryFrames(c, 'out').slice(before);
    assert.equal(sent.length, 1, `one frame for the batch, got ${sent.map((f) => hex(f.bytes)).join(' | ')}`);
    const batch = unpackMsgpack(sent[0].bytes);
    assert.ok(Array.isArray(batch), 'the frame is a msgpack array');
    assert.deepStrictEqual(batch.map((p) => p.e && p.e[0]), ['echo', 'nothing', 'fail', 'echo']);
    assert.deepStrictEqual(results[0], { status: 'fulfilled', value: 'first' });
    assert.equal(results[1].status, 'fulfilled');
    assert.equal(results[1].value, null, 'nothing: nil data');
    assert.equal(results[2].status, 'rejected');
    assert.equal(results[2].reason.name, 'CustomError');
    assert.deepStrictEqual(results[3], { status: 'fulfilled', value: { second: [1, 2] } });
    // The server answers each packet of the batch (in one frame each or batched: either is
    // SocketCluster behaviour); note what it did.
    const rids = batch.map((p) => p.e[2]);
    const replyFrames = binaryFrames(c, 'in').filter((f) => {
      const value = unpackMsgpack(f.bytes);
      const packets = Array.isArray(value) ? value : [value];
      return packets.some((p) => p && Array.isArray(p.r) && rids.includes(p.r[0]));
    });
    t.note(`replies to the batch came in ${replyFrames.length} frame(s)`);
  });

  suite.test('minbin server-initiated: invoke {e:[event, data, cid]} answered {r:[rid, error, data]}; transmit {e:[event, data]}', async (t) => {
    const c = await connected(t);
    c.procedure('clientProc', (data) => {
      if (data && data.fail) {
        const err = new Error('client says no');
        err.name = 'ClientError';
        throw err;
      }
      return { answer: 2, got: data };
    });
    assert.deepStrictEqual(await c.invoke('callClient', { q: 1 }), { answer: 2, got: { q: 1 } });
    const request = inboundCompact(c).find((p) => p.e && p.e[0] === 'clientProc');
    assert.equal(request.e.length, 3, `the server's invoke carries a cid: ${JSON.stringify(request)}`);
    assert.equal(typeof request.e[2], 'number');
    const answer = outboundCompact(c).find((p) => p.r && p.r[0] === request.e[2]);
    assert.deepStrictEqual(answer, { r: [request.e[2], null, { answer: 2, got: { q: 1 } }] }, 'the client answers {r:[rid, nil, data]}');
    // An error from the client goes back to the caller with its name and message.
    let err;
    try {
      await c.invoke('callClient', { fail: true });
    } catch (e) {
      err = e;
    }
    assert.ok(err, 'callClient rejects');
    assert.equal(err.name, 'ClientError');
    assert.equal(err.message, 'client says no');

    // A server transmit: {e:[event, data]} with no cid.
    const pushed = c.events('serverEvent');
    c.transmit('pushToMe', { seq: 1 });
    assert.equal(await c.invoke('pushToMe', { seq: 2 }), null, 'pushToMe answers nil');
    await waitFor(() => pushed.length >= 2, 3000, 'two serverEvent pushes');
    assert.deepStrictEqual(pushed, [{ seq: 1 }, { seq: 2 }]);
    const frames = binaryFrames(c, 'in').map((f) => hex(f.bytes));
    for (const seq of [1, 2]) {
      const expected = hex(packMsgpack({ e: ['serverEvent', { seq }] }));
      assert.ok(frames.includes(expected), `serverEvent frame ${expected} among ${frames.join(' | ')}`);
    }
  });

  suite.test('minbin auth: login sends {e:["#setAuthToken", {token}]}; the token authenticates', async (t) => {
    const c = await connected(t);
    assert.deepStrictEqual(await c.invoke('login', { username: 'minbin-user' }), { username: 'minbin-user' });
    await waitFor(() => c.authState === 'authenticated', 3000, () => `authenticated (state ${c.authState})`);
    const set = inboundCompact(c).find((p) => p.e && p.e[0] === '#setAuthToken');
    assert.ok(set, 'a #setAuthToken packet');
    assert.equal(set.e.length, 2, 'a transmit (no cid)');
    assert.deepStrictEqual(Object.keys(set.e[1]), ['token']);
    assert.equal(set.e[1].token, c.signedAuthToken);
    assert.equal(c.authToken.username, 'minbin-user');
    const claims = await c.invoke('whoami');
    assert.equal(claims.username, 'minbin-user');
    // A new connection offering the token in its handshake is authenticated.
    const again = client(t);
    again.socket.auth.token = c.signedAuthToken;
    const status = await again.connected();
    assert.equal(status.isAuthenticated, true, `handshake status ${JSON.stringify(status)}`);
  });

  suite.test('minbin auth: an expired token gets authError in {r:[1, nil, status]} and {e:["#removeAuthToken", nil]}', async (t) => {
    const expired = jwt.sign({ username: 'ann', exp: Math.floor(Date.now() / 1000) - 60 }, authKey);
    const c = client(t);
    c.socket.auth.token = expired;
    const status = await c.connected();
    assert.equal(status.isAuthenticated, false);
    assert.equal(status.authError && status.authError.name, 'AuthTokenExpiredError', `status ${JSON.stringify(status)}`);
    const reply = unpackMsgpack(replyFrame(c, 1).bytes);
    assert.equal(reply.r[1], null, 'the handshake itself succeeded');
    assert.equal(reply.r[2].authError.name, 'AuthTokenExpiredError');
    assert.equal(reply.r[2].authError.message, 'jwt expired');
    await waitFor(() => c.storedToken === null, 3000, 'the client dropped its token');
    const remove = hex(packMsgpack({ e: ['#removeAuthToken', null] }));
    const frames = binaryFrames(c, 'in').map((f) => hex(f.bytes));
    assert.ok(frames.includes(remove), `#removeAuthToken frame ${remove} among ${frames.join(' | ')}`);
    assert.equal(c.state, 'open');
  });

  suite.test('minbin pub/sub: exact #subscribe, {p:[channel, data, cid]} and {p:[channel, data]} frames', async (t) => {
    const ch = `minbin-${Math.random().toString(36).slice(2, 10)}`;
    const [a, b] = await Promise.all([connected(t), connected(t)]);
    const aMessages = a.subscribe(ch);
    const bMessages = b.subscribe(ch, { data: { hello: 'b' } });
    await waitFor(() => a.channelState(ch) === 'subscribed' && b.channelState(ch) === 'subscribed', 3000, 'both subscribed');
    // The subscribe requests and their empty replies.
    for (const [c, expected] of [[a, { channel: ch }], [b, { channel: ch, data: { hello: 'b' } }]]) {
      const request = outboundCompact(c).find((p) => p.e && p.e[0] === '#subscribe');
      assert.deepStrictEqual(request.e[1], expected, 'subscribe data');
      const rid = request.e[2];
      assert.equal(hex(replyFrame(c, rid).bytes), hex(packMsgpack({ r: [rid, null, null] })), 'subscribe reply');
    }

    // invokePublish: the client sends {p:[channel, data, cid]}, the server answers
    // {r:[cid, nil, nil]} and every subscriber (the publisher too) gets {p:[channel, data]}.
    const first = { n: 1, s: 'first', list: [1, 2.5, -3], flag: false };
    await a.invokePublish(ch, first);
    const published = outboundCompact(a).find((p) => p.p);
    assert.equal(published.p.length, 3, `publish frame ${JSON.stringify(published)}`);
    assert.deepStrictEqual(published.p.slice(0, 2), [ch, first]);
    assert.equal(hex(replyFrame(a, published.p[2]).bytes), hex(packMsgpack({ r: [published.p[2], null, null] })), 'publish reply');
    await waitFor(() => aMessages.length >= 1 && bMessages.length >= 1, 3000, 'first publication');
    assert.deepStrictEqual(aMessages, [first]);
    assert.deepStrictEqual(bMessages, [first]);

    // transmitPublish: {p:[channel, data]}, no cid and no reply.
    a.transmitPublish(ch, 'second');
    await waitFor(() => aMessages.length >= 2 && bMessages.length >= 2, 3000, 'second publication');
    assert.deepStrictEqual(bMessages, [first, 'second']);
    const transmitted = outboundCompact(a).filter((p) => p.p);
    assert.deepStrictEqual(transmitted[1], { p: [ch, 'second'] }, 'the transmit has no cid');

    // The delivered frames, byte for byte.
    const expected = [hex(packMsgpack({ p: [ch, first] })), hex(packMsgpack({ p: [ch, 'second'] }))];
    for (const [name, c] of [['publisher', a], ['subscriber', b]]) {
      const frames = binaryFrames(c, 'in')
        .filter((f) => {
          const value = unpackMsgpack(f.bytes);
          return value && value.p;
        })
        .map((f) => hex(f.bytes));
      assert.deepStrictEqual(frames, expected, `${name}'s #publish frames`);
    }
    await sleep(100);
    const rids = inboundCompact(a).filter((p) => p.r).map((p) => p.r[0]);
    const cids = outboundCompact(a).map((p) => (p.e ? p.e[2] : p.p && p.p[2])).filter((cid) => cid != null);
    assert.deepStrictEqual(rids.sort(), cids.sort(), 'replies only for invokes');

    // Unsubscribe: {e:['#unsubscribe', channel]}, a transmit; no publication reaches b after it.
    b.unsubscribe(ch);
    const unsubscribe = outboundCompact(b).find((p) => p.e && p.e[0] === '#unsubscribe');
    assert.deepStrictEqual(unsubscribe, { e: ['#unsubscribe', ch] });
    await sleep(50);
    await a.invokePublish(ch, 'third');
    await waitFor(() => aMessages.length >= 3, 3000, 'third publication');
    await sleep(100);
    const bFrames = binaryFrames(b, 'in').map((f) => hex(f.bytes));
    assert.ok(!bFrames.includes(hex(packMsgpack({ p: [ch, 'third'] }))), 'nothing for b after its unsubscribe');

    // Kick-out: {e:['#kickOut', {channel, message}]}.
    await a.invoke('kickMe', { channel: ch, message: 'bye' });
    await a.logged('kickOut', (e) => e.channel === ch);
    const kick = inboundCompact(a).find((p) => p.e && p.e[0] === '#kickOut');
    assert.deepStrictEqual(kick, { e: ['#kickOut', { channel: ch, message: 'bye' }] }, 'the #kickOut packet');
    assert.equal(a.channelState(ch), 'unsubscribed');
  });

  suite.test('minbin binary: ArrayBuffer travels as bin8/bin32 and comes back as ArrayBuffer; Buffer as an index map', async (t) => {
    const c = await connected(t);
    // A small ArrayBuffer: bin8 (c4 03 01 02 03) both ways.
    const small = await c.invoke('echo', { buf: arrayBuffer([1, 2, 3]), tag: 'small' });
    const smallRid = cidOf(c, 'echo', 1);
    assert.ok(containsHex(binaryFrames(c, 'out').at(-1).bytes, 'c4 03 01 02 03'), 'the request carries bin8');
    assert.ok(containsHex(replyFrame(c, smallRid).bytes, 'c4 03 01 02 03'), `the reply carries bin8: ${hex(replyFrame(c, smallRid).bytes)}`);
    assert.ok(small.buf instanceof ArrayBuffer, `an ArrayBuffer comes back, got ${Object.prototype.toString.call(small.buf)}`);
    assert.deepStrictEqual([...new Uint8Array(small.buf)], [1, 2, 3]);
    assert.equal(small.tag, 'small');

    // 70000 bytes: bin32 (c6 00 01 11 70).
    const bytes = Array.from({ length: 70000 }, (_, i) => (i * 7) % 256);
    const big = await c.invoke('echo', arrayBuffer(bytes));
    const bigRid = cidOf(c, 'echo', 2);
    assert.ok(containsHex(replyFrame(c, bigRid).bytes.subarray(0, 16), 'c6 00 01 11 70'), 'the reply carries bin32');
    assert.ok(big instanceof ArrayBuffer, 'an ArrayBuffer comes back');
    assert.equal(big.byteLength, 70000);
    assert.ok(Buffer.from(new Uint8Array(big)).equals(Buffer.from(bytes)), 'the same bytes come back');

    // An empty ArrayBuffer: c4 00.
    const empty = await c.invoke('echo', arrayBuffer([]));
    assert.ok(empty instanceof ArrayBuffer && empty.byteLength === 0, 'an empty ArrayBuffer comes back');

    // A Node Buffer is not binary to min-bin (preset:false): it travels as a map of index to
    // byte, and an object comes back.
    const fromBuffer = await c.invoke('echo', Buffer.from([1, 2, 3]));
    assert.ok(containsHex(binaryFrames(c, 'out').at(-1).bytes, '83 a1 30 01 a1 31 02 a1 32 03'), 'the Buffer travels as a map');
    assert.deepStrictEqual(fromBuffer, { 0: 1, 1: 2, 2: 3 });
    t.note(`Buffer echo reply frame: ${hex(replyFrame(c, cidOf(c, 'echo', 4)).bytes)}`);

    // An ArrayBuffer in a publication.
    const ch = `minbin-bin-${Math.random().toString(36).slice(2, 10)}`;
    const messages = c.subscribe(ch);
    await waitFor(() => c.channelState(ch) === 'subscribed', 3000, 'subscribed');
    await c.invokePublish(ch, { blob: arrayBuffer([9, 8, 7]) });
    await waitFor(() => messages.length >= 1, 3000, 'publication');
    assert.ok(messages[0].blob instanceof ArrayBuffer, 'the subscriber gets an ArrayBuffer');
    assert.deepStrictEqual([...new Uint8Array(messages[0].blob)], [9, 8, 7]);
  });

  suite.test('minbin binary: a plain {base64: true, data} object is an object, not binary', async (t) => {
    // sc-formatter (JSON) writes binary as {base64: true, data: "<base64>"}; min-bin has a real
    // binary type, so such an object sent by a min-bin client is just a map and must come back
    // as the same map: 82 a6 "base64" c3 a4 "data" a4 "AQID".
    const c = await connected(t);
    for (const value of [{ base64: true, data: 'AQID' }, { nested: { base64: true, data: 'AAEC' } }]) {
      const back = await c.invoke('echo', value);
      const frame = replyFrame(c, outboundCompact(c).filter((p) => p.e && p.e[0] === 'echo').at(-1).e[2]);
      t.note(`reply frame: ${hex(frame.bytes)}`);
      assert.deepStrictEqual(back, value, `echo of ${JSON.stringify(value)}: reply frame ${hex(frame.bytes)}, expected ${hex(packMsgpack({ r: [unpackMsgpack(frame.bytes).r[0], null, value] }))}`);
    }
  });

  suite.test('minbin pings: v2 pings keep a min-bin client connected', async (t) => {
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
    assert.deepStrictEqual(c.closes, []);
    const pings = textFrames(c, 'in').filter((f) => f.text === '').length;
    const pongs = textFrames(c, 'out').filter((f) => f.text === '').length;
    assert.ok(pings >= 3, `at least 3 text '' pings, got ${pings}`);
    assert.equal(pongs, pings, 'the client answered every ping');
    // Protocol-v1 pings through the codec (the msgpack string "#1") mean nothing to a v2
    // client, which hands them to its `raw` listener.
    const v1Pings = binaryFrames(c, 'in').filter((f) => hex(f.bytes) === 'a2 23 31').length;
    t.note(`${pings} '' pings; ${v1Pings} binary "#1" pings (a2 23 31); ${raws.length} raw events ${[...new Set(raws.map((m) => (typeof m === 'string' ? JSON.stringify(m) : `<${hex(new Uint8Array(m))}>`)))].join(', ')}`);
    if (!isSockyard) {
      assert.equal(v1Pings, 0, 'a protocol-v2 server sends no #1');
    }
    assert.equal(await c.invoke('echo', 'still here'), 'still here');
  }, { timeout: 8000 });
}

module.exports = { register };
