// Helpers shared by the codec scenarios: v20 clients with a codec engine whose WebSocket frames
// are recorded as bytes (lib/clients.js records text only), a raw `ws` client that speaks a
// codec, msgpack-lite configured as sc-codec-min-bin configures it (to read and build exact
// frames), and hex formatting.

'use strict';

const path = require('node:path');
const WebSocket = require('ws');
const minbin = require('sc-codec-min-bin');
const { V20Client, waitFor, sleep } = require('../lib/clients');

// The msgpack-lite that sc-codec-min-bin itself uses, with its options, so an expected frame
// built here is byte-for-byte what the official codec would send.
const msgpack = require(require.resolve('msgpack-lite', { paths: [path.dirname(require.resolve('sc-codec-min-bin'))] }));
const MSGPACK_OPTIONS = { codec: msgpack.createCodec({ binarraybuffer: true, preset: false }) };

// A compact min-bin packet ({e:[…]}, {p:[…]}, {r:[…]}) as bytes, and bytes as the compact packet
// (without sc-codec-min-bin's expansion to {event, data, cid}).
const packMsgpack = (value) => Buffer.from(msgpack.encode(value, MSGPACK_OPTIONS));
const unpackMsgpack = (bytes) => msgpack.decode(new Uint8Array(bytes), MSGPACK_OPTIONS);

const hex = (bytes) => Buffer.from(bytes).toString('hex').replace(/(..)(?!$)/g, '$1 ');
const fromHex = (text) => Buffer.from(text.replace(/\s+/g, ''), 'hex');

// Whether `haystack` contains the bytes of `needle` (a hex string).
const containsHex = (haystack, needle) => Buffer.from(haystack).includes(fromHex(needle));

function toBuffer(data) {
  if (typeof data === 'string') {
    return Buffer.from(data);
  }
  if (data instanceof ArrayBuffer) {
    return Buffer.from(new Uint8Array(data));
  }
  return Buffer.from(data.buffer ? new Uint8Array(data.buffer, data.byteOffset, data.byteLength) : data);
}

// Records every frame of a `ws` socket in `frames` as {dir: 'in'|'out', binary, bytes, text}.
// The client's own message handler was attached first, so a frame is recorded before any
// promise it settles resumes a test.
function tapFrames(wsSocket, frames) {
  const send = wsSocket.send.bind(wsSocket);
  wsSocket.send = (data, ...rest) => {
    const binary = typeof data !== 'string';
    frames.push({ dir: 'out', binary, bytes: toBuffer(data), text: binary ? null : data });
    return send(data, ...rest);
  };
  wsSocket.on('message', (data, isBinary) => {
    const bytes = toBuffer(data);
    frames.push({ dir: 'in', binary: isBinary, bytes, text: isBinary ? null : bytes.toString() });
  });
}

// A socketcluster-client 20 with `codecEngine`, closed after the test; `c.frames` holds its
// frames as bytes.
function codecClient(t, url, codecEngine, options = {}) {
  const c = new V20Client(url, { codecEngine, ...options });
  c.frames = [];
  tapFrames(c.socket.transport.socket, c.frames);
  t.defer(() => c.close());
  return c;
}

// Inbound or outbound binary frames of a codec client.
const binaryFrames = (c, dir) => c.frames.filter((f) => f.dir === dir && f.binary);
// Inbound text frames other than the v2 ping ''.
const textFrames = (c, dir) => c.frames.filter((f) => f.dir === dir && !f.binary);

// A raw WebSocket speaking a codec: packets go through `codec.encode`, and bytes can be sent as
// they are. Every inbound frame is recorded; `packets()` decodes the binary ones (frames the
// codec cannot decode are skipped) and skips text frames (pings).
class RawCodecClient {
  constructor(url, codec) {
    this.codec = codec;
    this.frames = [];
    this.close = null;
    this.ws = new WebSocket(url);
    this.ws.binaryType = 'nodebuffer';
    this.ws.on('message', (data, isBinary) => {
      this.frames.push({ binary: isBinary, bytes: Buffer.from(data), text: isBinary ? null : data.toString() });
    });
    this.ws.on('close', (code, reason) => {
      this.close = { code, reason: reason.toString() };
    });
    this.ws.on('error', (err) => {
      this.error = err;
    });
    this.opened = new Promise((resolve, reject) => {
      this.ws.once('open', resolve);
      this.ws.once('error', reject);
    });
  }

  sendPacket(packet) {
    this.ws.send(this.codec.encode(packet));
  }

  // Sends `bytes` as a binary frame, or a string as a text frame.
  sendBytes(bytes) {
    this.ws.send(bytes, { binary: typeof bytes !== 'string' });
  }

  // Answers the server's v2 pings, as a client must to stay connected.
  answerPings() {
    this.ws.on('message', (data, isBinary) => {
      if (!isBinary && data.length === 0 && this.ws.readyState === WebSocket.OPEN) {
        this.ws.send('');
      }
    });
  }

  packets() {
    const packets = [];
    for (const frame of this.frames) {
      if (!frame.binary) {
        continue;
      }
      let decoded;
      try {
        decoded = this.codec.decode(frame.bytes);
      } catch {
        continue;
      }
      if (decoded && typeof decoded === 'object') {
        packets.push(...(Array.isArray(decoded) ? decoded : [decoded]));
      }
    }
    return packets;
  }

  reply(rid) {
    return this.packets().find((p) => p.rid === rid);
  }

  async waitReply(rid, timeoutMs = 3000) {
    return waitFor(() => this.reply(rid), timeoutMs, () => `reply ${rid} (frames: ${this.describeFrames()})`);
  }

  async handshake(cid = 1) {
    await this.opened;
    this.answerPings();
    this.sendPacket({ event: '#handshake', data: { authToken: null }, cid });
    return this.waitReply(cid);
  }

  async closed(timeoutMs = 4000) {
    return waitFor(() => this.close, timeoutMs, () => `close frame (frames: ${this.describeFrames()})`);
  }

  describeFrames(frames = this.frames) {
    return frames.map((f) => (f.binary ? `<${hex(f.bytes)}>` : JSON.stringify(f.text))).join(', ') || 'none';
  }

  terminate() {
    this.ws.terminate();
  }
}

function rawCodecClient(t, url, codec) {
  const r = new RawCodecClient(url, codec);
  t.defer(() => r.terminate());
  return r;
}

// An sc-codec-min-bin engine: the module is the codec (it keeps no state).
const minbinCodec = () => minbin;

module.exports = {
  msgpack,
  packMsgpack,
  unpackMsgpack,
  hex,
  fromHex,
  containsHex,
  tapFrames,
  codecClient,
  binaryFrames,
  textFrames,
  RawCodecClient,
  rawCodecClient,
  minbinCodec,
  waitFor,
  sleep,
};
