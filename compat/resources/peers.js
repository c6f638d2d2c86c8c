// One interface over the three clients the resource suite drives — socketcluster-client 20 and 14
// (through ../lib/clients) and the CTProto client (../ctproto/client) — so each resource scenario
// is written once: call a route and get its value or its error reply, subscribe and collect
// publications, publish. Every call is also matched with its reply on the wire, and the value or
// error the official client hands to the application must agree with that frame.

'use strict';

const assert = require('node:assert/strict');
const { CLIENTS, waitFor } = require('../lib/clients');
const { CTProtoClient } = require('../ctproto/client');

const KINDS = ['v20', 'v14', 'ctproto'];

// Upper bound for a reply to a CTProto request (the original client never times out).
const CT_CALL_TIMEOUT_MS = 3000;

// An error reply. `body` is the error as SocketCluster puts it on the wire — {name, message,
// ...extra} — for every kind (CTProto's {error, name, ...extra} payload is mapped to it);
// `wire` is the error exactly as it arrived; `name` and `message` are the body's.
class ReplyError extends Error {
  constructor(body, wire) {
    super(body.message);
    this.name = body.name;
    this.body = body;
    this.wire = wire;
  }
}

// A socketcluster-client (v20 or v14) connection.
class ScPeer {
  constructor(t, kind, url) {
    this.kind = kind;
    this.client = new CLIENTS[kind](url);
    t.defer(() => this.client.close());
  }

  async ready() {
    await this.client.connected();
    return this;
  }

  // Runs `start()` (which must send one invoke for `event`), waits for its outcome and checks it
  // against the reply frame: resolves with the data, or throws a ReplyError.
  async _settle(event, start) {
    const c = this.client;
    const before = c.outboundPackets().length;
    const promise = start();
    // Both clients write an invoke to the socket synchronously while it is open.
    const request = c.outboundPackets().slice(before).find((p) => p.event === event && p.cid != null);
    if (!request) {
      promise.catch(() => {});
      assert.fail(`${this.kind}: no ${event} invoke was sent (outbound: ${JSON.stringify(c.outbound.slice(-3))})`);
    }
    let value;
    let error = null;
    try {
      value = await promise;
    } catch (err) {
      error = err;
    }
    const reply = c.inboundPackets().find((p) => p.rid === request.cid);
    if (!reply) {
      // No reply at all (e.g. the client's TimeoutError): a failure, whatever the test expects.
      throw error || new Error(`${this.kind}: ${event} resolved without a reply frame`);
    }
    if (error) {
      assert.ok(reply.error && typeof reply.error === 'object', `${this.kind} ${event}: the client failed (${error.name}: ${error.message}) without an error reply: ${JSON.stringify(reply)}`);
      // What the application sees: the client's hydrated error carries every field of the wire error.
      assert.equal(error.name, reply.error.name, `${this.kind} ${event}: error name seen by the client`);
      assert.equal(error.message, reply.error.message, `${this.kind} ${event}: error message seen by the client`);
      for (const [key, field] of Object.entries(reply.error)) {
        assert.deepStrictEqual(error[key], field, `${this.kind} ${event}: error field ${key} seen by the client`);
      }
      throw new ReplyError({ ...reply.error }, reply.error);
    }
    assert.ok(!('error' in reply), `${this.kind} ${event}: resolved although the reply is an error: ${JSON.stringify(reply)}`);
    assert.deepStrictEqual(value, reply.data, `${this.kind} ${event}: the value the client resolved with is the reply's data`);
    return value;
  }

  // Invokes `route` with `data` (undefined: no data in the frame).
  call(route, data) {
    return this._settle(route, () => this.client.invoke(route, data));
  }

  // Subscribes and waits for the server's confirmation; returns the list the client pushes the
  // channel's publications to (what the application receives).
  async subscribe(channel) {
    const c = this.client;
    const mark = c.log.length;
    const messages = c.subscribe(channel);
    const entry = await waitFor(
      () => c.log.slice(mark).find((e) => (e.event === 'subscribe' || e.event === 'subscribeFail') && e.channel === channel),
      4000,
      () => `${this.kind}: subscribe or subscribeFail for ${channel} (log: ${c.logSummary()})`,
    );
    if (entry.event === 'subscribeFail') {
      assert.fail(`${this.kind}: subscribing to ${channel} failed: ${entry.error.name}: ${entry.error.message}`);
    }
    return messages;
  }

  // The publications for `channel` as they arrived on the wire (their data).
  wirePublications(channel) {
    return this.client.publications(channel).map((p) => p.data.data);
  }

  // Publishes as an invoke (v14: publish with a callback); resolves or throws a ReplyError.
  publish(channel, data) {
    return this._settle('#publish', () => this.client.invokePublish(channel, data));
  }

  // Publishes as a transmit: no cid, no reply.
  transmitPublish(channel, data) {
    this.client.transmitPublish(channel, data);
  }
}

// A CTProto connection through the original client's behaviour (../ctproto/client), authorized
// with {username}.
class CtPeer {
  constructor(t, url, username = 'resources') {
    this.kind = 'ctproto';
    this.outbound = [];
    this.inbound = [];
    this.auths = [];
    this.channels = new Map();
    this.client = new CTProtoClient({
      apiUrl: url,
      authRequestPayload: { username },
      disableLogs: true,
      onAuth: (data) => this.auths.push(data),
      onMessage: (message) => {
        if (message.type === '#publish' && message.payload && this.channels.has(message.payload.channel)) {
          this.channels.get(message.payload.channel).push(message.payload.data);
        }
      },
      onSocket: (socket) => {
        const send = socket.send.bind(socket);
        socket.send = (data, ...rest) => {
          this.outbound.push(typeof data === 'string' ? data : Buffer.from(data).toString());
          return send(data, ...rest);
        };
        // Registered before the client's own handler: a frame is recorded before it settles anything.
        socket.addEventListener('message', (event) => {
          this.inbound.push(typeof event.data === 'string' ? event.data : Buffer.from(event.data).toString());
        });
      },
    });
    t.defer(() => this.client.close());
  }

  async ready() {
    await waitFor(() => this.auths.length > 0, 4000, 'the CTProto authorize response');
    assert.deepStrictEqual(this.auths[0], { username: 'resources' }, 'onAuth gets the authorize payload back');
    return this;
  }

  inboundMessages() {
    return this.inbound.map((frame) => JSON.parse(frame));
  }

  // Sends a request of `type` (CTProto needs a payload: none is sent as {}); resolves with the
  // response's payload, or throws a ReplyError for an error frame.
  async call(type, payload = {}) {
    const before = this.outbound.length;
    const promise = this.client.send(type, payload);
    // The client transmits at once on an open socket.
    const sent = this.outbound.slice(before).map((f) => JSON.parse(f)).find((m) => m.type === type);
    assert.ok(sent, `ctproto: no ${type} request was sent (outbound: ${JSON.stringify(this.outbound.slice(-3))})`);
    let timer;
    const value = await Promise.race([
      promise,
      new Promise((resolve, reject) => {
        timer = setTimeout(() => reject(new Error(`ctproto: no response to ${type} ${JSON.stringify(payload)} within ${CT_CALL_TIMEOUT_MS} ms`)), CT_CALL_TIMEOUT_MS);
      }),
    ]).finally(() => clearTimeout(timer));
    const reply = this.inboundMessages().find((m) => m.messageId === sent.messageId);
    assert.ok(reply, `ctproto ${type}: resolved without a frame carrying ${sent.messageId}`);
    assert.deepStrictEqual(value, reply.payload, `ctproto ${type}: the client resolves with the frame's payload`);
    if (reply.type === 'error') {
      const { error, name, ...extra } = reply.payload;
      assert.equal(typeof error, 'string', `ctproto ${type}: the error payload's text: ${JSON.stringify(reply)}`);
      throw new ReplyError({ name, message: error, ...extra }, reply.payload);
    }
    assert.deepStrictEqual(Object.keys(reply).sort(), 'payload' in reply ? ['messageId', 'payload'] : ['messageId'], `ctproto ${type}: a response frame ${JSON.stringify(reply)}`);
    return value;
  }

  // Subscribes with `#subscribe`; returns the list of the channel's publications (their data).
  async subscribe(channel) {
    const messages = [];
    this.channels.set(channel, messages);
    assert.equal(await this.call('#subscribe', { channel }), undefined, `ctproto: #subscribe ${channel} answers without data`);
    return messages;
  }

  wirePublications(channel) {
    return this.inboundMessages()
      .filter((m) => m.type === '#publish' && m.payload && m.payload.channel === channel)
      .map((m) => m.payload.data);
  }

  publish(channel, data) {
    return this.call('#publish', { channel, data });
  }
}

// A connected, ready peer of `kind` ('v20', 'v14' or 'ctproto'), closed after the test.
function openPeer(t, kind, urls) {
  const peer = kind === 'ctproto' ? new CtPeer(t, urls.ct) : new ScPeer(t, kind, urls.sc);
  return peer.ready();
}

module.exports = { KINDS, ReplyError, openPeer };
