// Bad binary input through a real socket, for both codecs: MessagePack bombs (lengths of
// gigabytes, deep nesting), garbage, truncated protobuf messages and unknown type ids. The server
// must survive them: after each bad frame the same socket still gets replies, other clients too,
// and the bad socket gets nothing but pings in between — except that Sockyard answers a broken
// call whose cid it can still read with an InvalidMessageError reply, where the official server
// answers nothing. Before the handshake a bad frame closes the socket with 4009, as the official
// server does.

'use strict';

const assert = require('node:assert/strict');
const { protobufApi } = require('./protos');
const { hex, fromHex, rawCodecClient, codecClient, minbinCodec, packMsgpack, sleep } = require('./common');

// MessagePack frames that do not decode; each declares more than it holds or is not msgpack.
const MSGPACK_GARBAGE = [
  ['bin32 declaring 4 GiB', 'c6 ff ff ff ff 01 02 03'],
  ['str32 declaring 4 GiB', 'db ff ff ff ff 61 62'],
  ['array32 declaring 4 billion items', 'dd ff ff ff ff 01'],
  ['map32 declaring 2 billion pairs', 'df 7f ff ff ff a1 61 01'],
  ['array16 declaring 65535 items', 'dc ff ff 01 02'],
  // {e:['echo', <bin32 declaring 4 GiB>, 50]}: an invoke that must get no reply.
  ['an echo invoke carrying a bin32 bomb', '81 a1 65 93 a4 65 63 68 6f c6 ff ff ff ff 01 02 32'],
  ['truncated map', '82 a1 65'],
  ['the never-used byte c1', 'c1'],
  ['an extension type', 'd4 01 02'],
  ['trailing garbage after a packet', '81 a1 65 92 a4 65 63 68 6f 01 ff ff'],
];

// 100 000 nested arrays (1 byte each): deeper than any decoder should recurse.
const DEEP_NESTING = Buffer.alloc(100000, 0x91);

function register(minbinSuite, protobufSuite, env) {
  const { minbinUrl, protobufUrl, isSockyard } = env;

  // Frames the server sent from index `from` on that are neither pings nor replies to
  // `expectedRids`.
  function unexpected(r, from, expectedRids) {
    return r.frames.slice(from).filter((f) => {
      if (!f.binary) {
        return f.text !== '';
      }
      let decoded;
      try {
        decoded = r.codec.decode(f.bytes);
      } catch {
        return true;
      }
      if (decoded === '#1') {
        return false; // a protocol-v1 ping through the codec (Sockyard's dual-ping endpoints)
      }
      return !(decoded && expectedRids.includes(decoded.rid));
    });
  }

  // Whether `f` is Sockyard's protobuf error reply to call `rid` named InvalidMessageError: an
  // `ErrorResponse` (type 255, which sc-codec-protobuf cannot decode) starting with the rid.
  const invalidMessageReply = (f, rid) => f.binary
    && f.bytes.subarray(0, 4).equals(Buffer.from([0x01, 0xff, 0x08, rid]))
    && f.bytes.includes('InvalidMessageError');

  // Sends every bad frame in turn on a handshaken socket; after each one the same socket must
  // answer `probe(cid)` (which returns the packet to send and checks the reply). A frame given
  // with a third element, a cid, is a broken call that Sockyard answers with an error.
  async function survive(r, badFrames, probe) {
    let cid = 10;
    for (const [label, bytes, answered] of badFrames) {
      const from = r.frames.length;
      r.sendBytes(bytes);
      cid += 1;
      const { packet, check } = probe(cid);
      r.sendPacket(packet);
      const reply = await r.waitReply(cid).catch((err) => {
        throw new assert.AssertionError({ message: `after ${label}: ${err.message}; close: ${JSON.stringify(r.close)}` });
      });
      check(reply, label);
      let extra = unexpected(r, from, [cid]);
      if (isSockyard && answered != null) {
        // Calls are answered in order: the error reply came before the probe's.
        assert.ok(extra.some((f) => invalidMessageReply(f, answered)), `after ${label}, an InvalidMessageError reply to ${answered}`);
        extra = extra.filter((f) => !invalidMessageReply(f, answered));
      }
      assert.deepStrictEqual(extra.map((f) => (f.binary ? hex(f.bytes) : f.text)), [], `after ${label}, nothing but the reply`);
    }
    assert.equal(r.close, null, 'the socket stays open');
  }

  minbinSuite.test('bad input minbin: msgpack bombs and garbage are ignored; the socket and others keep working', async (t) => {
    const r = rawCodecClient(t, minbinUrl, minbinCodec());
    await r.handshake(1);
    const frames = [...MSGPACK_GARBAGE.map(([label, text]) => [label, fromHex(text)]), ['100 000 nested arrays', DEEP_NESTING]];
    await survive(r, frames, (cid) => ({
      packet: { event: 'echo', data: { cid }, cid },
      check: (reply, label) => assert.deepStrictEqual(reply.data, { cid }, `echo after ${label}`),
    }));
    // The bomb-carrying invoke (cid 50) got no reply.
    await sleep(100);
    assert.equal(r.reply(50), undefined, 'no reply to an undecodable invoke');
    // Another client is served too.
    const other = codecClient(t, minbinUrl, minbinCodec());
    await other.connected();
    assert.equal(await other.invoke('echo', 'other client'), 'other client');
  });

  minbinSuite.test('bad input minbin: a bomb before the handshake closes with 4009', async (t) => {
    for (const [label, bytes] of [['bin32 bomb', fromHex('c6 ff ff ff ff 01')], ['deep nesting', DEEP_NESTING]]) {
      const r = rawCodecClient(t, minbinUrl, minbinCodec());
      await r.opened;
      r.sendBytes(bytes);
      const close = await r.closed();
      assert.equal(close.code, 4009, `${label}: close ${JSON.stringify(close)}`);
    }
    // A valid compact handshake still works on a fresh socket.
    const ok = rawCodecClient(t, minbinUrl, minbinCodec());
    await ok.opened;
    ok.sendBytes(packMsgpack({ e: ['#handshake', { authToken: null }, 1] }));
    const reply = await ok.waitReply(1);
    assert.equal(typeof reply.data.id, 'string');
  });

  // A valid `#api` call frame for GET /resource {a, b}.
  const apiCall = (api, cid, a) => api.codec.encode({
    event: '#api',
    data: api.request('get', '/resource', '.app.RequestMessage', { a, b: 'ok' }),
    cid,
  });

  protobufSuite.test('bad input protobuf: truncated frames, unknown type ids, huge lengths are ignored; the socket and others keep working', async (t) => {
    const api = protobufApi();
    const r = rawCodecClient(t, protobufUrl, api.codec);
    await r.handshake(1);
    const whole = Buffer.from(apiCall(api, 90, 'truncated'));
    const frames = [
      ['an #api frame cut in half', whole.subarray(0, Math.floor(whole.length / 2)), 90],
      ['an #api frame missing its last byte', whole.subarray(0, whole.length - 1), 90],
      ['unknown type id 200', fromHex('01 c8 08 01')],
      ['unknown type id 127 without a body', fromHex('01 7f')],
      ['a frame of one byte (no type id)', fromHex('01')],
      ['an empty binary frame', Buffer.alloc(0)],
      ['a length varint of 5 before the id', fromHex('05 08 0a 04 23 61 70 69')],
      ['ApiCall.data declaring 4 GiB', fromHex('01 08 08 5b 1a ff ff ff ff 0f 0a 01 2f'), 91],
      ['ApiCall.event declaring 2 GiB', fromHex('01 08 08 5c 12 ff ff ff ff 07 23'), 92],
      ['a varint that never ends', fromHex('01 08 08 ff ff ff ff ff ff ff ff ff ff ff')],
      ['field number 0', fromHex('01 08 00 01')],
      ['wire type 7', fromHex('01 08 0f 01')],
      ['text under the binary codec', 'not a packet'],
    ];
    await survive(r, frames, (cid) => ({
      packet: { event: '#api', data: api.request('get', '/resource', '.app.RequestMessage', { a: `probe${cid}`, b: 'ok' }), cid },
      check: (reply, label) => assert.deepStrictEqual(api.response(reply.data), { c: `probe${cid} ok` }, `#api after ${label}`),
    }));
    for (const cid of [90, 91, 92]) {
      // (Sockyard's error replies are of a type the codec cannot decode.)
      assert.equal(r.reply(cid), undefined, `no decodable reply to the broken call ${cid}`);
    }
    // Another client is served too.
    const otherApi = protobufApi();
    const other = codecClient(t, protobufUrl, otherApi.codec);
    otherApi.defineEndpoints(other.socket);
    await other.connected();
    assert.deepStrictEqual(await other.socket.get('/resource', '.app.RequestMessage', { a: 'other', b: 'client' }), { c: 'other client' });
  });

  protobufSuite.test('bad input protobuf: a reply to nothing (01 09 with an unknown rid) is ignored', async (t) => {
    const api = protobufApi();
    const r = rawCodecClient(t, protobufUrl, api.codec);
    await r.handshake(1);
    const type = api.type('.socketclusterapi.ApiResponse');
    const stray = Buffer.concat([Buffer.from([1, 9]), type.encode(type.create({ rid: 777, data: { isError: false } })).finish()]);
    const from = r.frames.length;
    r.sendBytes(stray);
    r.sendBytes(apiCall(api, 5, 'after'));
    const reply = await r.waitReply(5);
    assert.deepStrictEqual(api.response(reply.data), { c: 'after ok' });
    assert.deepStrictEqual(unexpected(r, from, [5]).map((f) => hex(f.bytes)), []);
  });

  protobufSuite.test('bad input protobuf: a bad frame before the handshake closes with 4009', async (t) => {
    // sc-codec-protobuf never throws: socketcluster-server 20 gets `undefined`, which is not a
    // handshake, and closes with 4009 like for any other message before the handshake.
    for (const [label, bytes] of [['truncated handshake', fromHex('01 00 0a 0a 23 68 61')], ['unknown type id 200', fromHex('01 c8 08 01')]]) {
      const r = rawCodecClient(t, protobufUrl, protobufApi().codec);
      await r.opened;
      r.sendBytes(bytes);
      const close = await r.closed();
      assert.equal(close.code, 4009, `${label}: close ${JSON.stringify(close)}`);
    }
  });
}

module.exports = { register };
