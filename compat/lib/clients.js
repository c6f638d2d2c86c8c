// Uniform wrappers around the official clients (socketcluster-client 20 with its stream API,
// 14 with its emit/on API) and a raw `ws` client, so each scenario is written once and run with
// both client generations. Every wrapper records connects, closes, errors, the raw frames in
// both directions and the client's pub/sub and auth events, which the tests assert on.

'use strict';

const sc20 = require('sc20');
const sc14 = require('sc14');
const WebSocket = require('ws');

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// A copy of `object` without its undefined fields.
function clean(object) {
  return Object.fromEntries(Object.entries(object).filter(([, value]) => value !== undefined));
}

// Polls `predicate` every 10 ms until it returns a truthy value, which is returned. `what`
// describes the wait in the timeout error; a function is called only then (to show late state).
async function waitFor(predicate, timeoutMs, what) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = predicate();
    if (value) {
      return value;
    }
    if (Date.now() >= deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${typeof what === 'function' ? what() : what}`);
    }
    await sleep(10);
  }
}

// ws://host:port/path → the hostname/port/path/secure options both clients take.
function urlOptions(url) {
  const parsed = new URL(url);
  const secure = parsed.protocol === 'wss:';
  return {
    hostname: parsed.hostname,
    port: Number(parsed.port || (secure ? 443 : 80)),
    path: parsed.pathname + parsed.search,
    secure,
  };
}

// Short timeouts so a broken server fails a test quickly instead of hanging it.
const COMMON_OPTIONS = {
  autoReconnect: false,
  ackTimeout: 2000,
  connectTimeout: 3000,
};

// An auth engine holding one token in memory, usable by both client generations (v20 awaits
// the returned promises, v14 passes callbacks). A test can preload the token the client sends
// in its handshake, and read what the client stored or removed.
class MemoryAuthEngine {
  constructor(token = null) {
    this.token = token;
  }

  saveToken(name, token, options, callback) {
    this.token = token;
    if (callback) {
      callback(null, token);
    }
    return Promise.resolve(token);
  }

  removeToken(name, callback) {
    const old = this.token;
    this.token = null;
    if (callback) {
      callback(null, old);
    }
    return Promise.resolve(old);
  }

  loadToken(name, callback) {
    if (callback) {
      callback(null, this.token);
    }
    return Promise.resolve(this.token);
  }
}

// Client events recorded in `client.log` as {event, ...fields}, with the same fields for both
// generations: subscribe/unsubscribe {channel}, subscribeFail {channel, error},
// kickOut {channel, message}, authenticate {signedAuthToken}, deauthenticate {},
// removeAuthToken {}.
const LOGGED_EVENTS = ['subscribe', 'subscribeFail', 'unsubscribe', 'kickOut', 'authenticate', 'deauthenticate', 'removeAuthToken'];

// Records every frame a client's WebSocket sends and receives, on the `ws` instance itself:
// `send` is wrapped, and our message listener runs right after the client's own handler in the
// same tick, so a frame is recorded before any promise it settles resumes a test.
function recordFrames(wsSocket, inbound, outbound) {
  if (!wsSocket || wsSocket.__compatRecorded) {
    return;
  }
  wsSocket.__compatRecorded = true;
  const send = wsSocket.send.bind(wsSocket);
  wsSocket.send = (data, ...rest) => {
    outbound.push(typeof data === 'string' ? data : Buffer.from(data).toString());
    return send(data, ...rest);
  };
  // ws 8 passes (Buffer, isBinary); ws 7 (used by the v14 client) passes a string for text.
  wsSocket.on('message', (data) => {
    inbound.push(typeof data === 'string' ? data : Buffer.from(data).toString());
  });
}

class BaseClient {
  constructor() {
    this.connects = []; // handshake statuses, in order
    this.closes = []; // {code, reason}
    this.errors = []; // Error objects from the client's error event
    this.inbound = []; // raw inbound frames (strings)
    this.outbound = []; // raw outbound frames (strings)
    this.connectingCount = 0;
    this.received = new Map(); // transmitted event name → data list
    this.log = []; // client events (LOGGED_EVENTS), in order
  }

  // Waits until `client.log` holds `n` entries of `event` matching `predicate`; returns the n-th.
  async logged(event, predicate = () => true, n = 1, timeoutMs = 4000) {
    const matching = () => this.log.filter((e) => e.event === event && predicate(e));
    await waitFor(() => matching().length >= n, timeoutMs, () => `${n} ${event} event(s) (log: ${this.logSummary()})`);
    return matching()[n - 1];
  }

  logSummary() {
    return JSON.stringify(this.log.map((e) => ({ ...e, error: e.error && `${e.error.name}: ${e.error.message}` })));
  }

  // The token the client's auth engine holds (null when none).
  get storedToken() {
    return this.socket.auth.token ?? null;
  }

  get authState() {
    return this.socket.authState;
  }

  // The payload of the client's token, as the client decoded it (null when unauthenticated).
  get authToken() {
    return this.socket.authToken;
  }

  get signedAuthToken() {
    return this.socket.signedAuthToken;
  }

  // Parsed inbound packets for `event` (e.g. '#publish'), in arrival order.
  inboundEvents(event) {
    return this.inboundPackets().filter((p) => p.event === event);
  }

  // The inbound #publish packets for `channel`.
  publications(channel) {
    return this.inboundEvents('#publish').filter((p) => p.data && p.data.channel === channel);
  }

  // Waits for the n-th successful handshake (1-based) and returns its status. Without
  // autoReconnect, a close before that handshake fails at once.
  async connected(n = 1, timeoutMs = 4000) {
    await waitFor(
      () => this.connects.length >= n || (!this.autoReconnect && this.closes.length > 0),
      timeoutMs,
      `handshake #${n}`,
    );
    if (this.connects.length < n) {
      const close = this.closes[this.closes.length - 1];
      throw new Error(
        `closed before handshake #${n}: ${JSON.stringify(close)}; errors: ${this.errorSummary()}`,
      );
    }
    return this.connects[n - 1];
  }

  // Waits for the n-th close (1-based) and returns it.
  async closed(n = 1, timeoutMs = 4000) {
    await waitFor(() => this.closes.length >= n, timeoutMs, `close #${n}`);
    return this.closes[n - 1];
  }

  // The data list for a server-transmitted event (filled as events arrive).
  events(name) {
    if (!this.received.has(name)) {
      this.received.set(name, []);
      this._listen(name, this.received.get(name));
    }
    return this.received.get(name);
  }

  // Parsed inbound JSON frames, batches flattened; pings and other non-JSON frames skipped.
  inboundPackets() {
    const packets = [];
    for (const frame of this.inbound) {
      if (!/^\s*[{[]/.test(frame)) {
        continue;
      }
      let parsed;
      try {
        parsed = JSON.parse(frame);
      } catch {
        continue;
      }
      packets.push(...(Array.isArray(parsed) ? parsed : [parsed]));
    }
    return packets;
  }

  // Parsed outbound JSON frames, batches flattened.
  outboundPackets() {
    const packets = [];
    for (const frame of this.outbound) {
      if (/^\s*[{[]/.test(frame)) {
        const parsed = JSON.parse(frame);
        packets.push(...(Array.isArray(parsed) ? parsed : [parsed]));
      }
    }
    return packets;
  }

  errorSummary() {
    return this.errors.length === 0 ? 'none' : this.errors.map((e) => `${e.name}: ${e.message}`).join('; ');
  }

  count(list, value) {
    return list.filter((item) => item === value).length;
  }
}

// socketcluster-client 20.0.2: protocol v2 by default, async-iterable streams.
class V20Client extends BaseClient {
  constructor(url, options = {}) {
    super();
    this.kind = 'v20';
    const merged = { ...urlOptions(url), ...COMMON_OPTIONS, authEngine: new MemoryAuthEngine(), ...options };
    this.autoReconnect = merged.autoReconnect;
    this.socket = sc20.create(merged);
    const s = this.socket;
    // The transport (and its WebSocket) is created synchronously by create() and by every
    // later connect(), right after the `connecting` event.
    recordFrames(s.transport && s.transport.socket, this.inbound, this.outbound);
    this.connectingCount = 1;
    this._consume('connect', (status) => this.connects.push(status));
    this._consume('close', ({ code, reason }) => this.closes.push({ code, reason }));
    this._consume('error', ({ error }) => this.errors.push(error));
    for (const event of LOGGED_EVENTS) {
      this._consume(event, (value) => {
        const { channel, error, message, signedAuthToken } = value || {};
        this.log.push(clean({ event, channel, error, message, signedAuthToken }));
      });
    }
    // Count reconnect attempts and record their frames: wrap connect().
    const connect = s.connect.bind(s);
    s.connect = (...args) => {
      const wasClosed = s.state === s.CLOSED;
      const result = connect(...args);
      if (wasClosed) {
        this.connectingCount += 1;
      }
      recordFrames(s.transport && s.transport.socket, this.inbound, this.outbound);
      return result;
    };
  }

  _consume(name, fn) {
    (async () => {
      for await (const value of this.socket.listener(name)) {
        fn(value);
      }
    })();
  }

  _listen(name, list) {
    (async () => {
      for await (const data of this.socket.receiver(name)) {
        list.push(data);
      }
    })();
  }

  get id() {
    return this.socket.id;
  }

  get state() {
    return this.socket.state;
  }

  get pendingReconnect() {
    return this.socket.pendingReconnect;
  }

  invoke(event, data, options) {
    return this.socket.invoke(event, data, options);
  }

  transmit(event, data) {
    this.socket.transmit(event, data);
  }

  // Serves a client procedure the server may invoke: `fn(data)` returns the answer or throws.
  procedure(name, fn) {
    (async () => {
      for await (const request of this.socket.procedure(name)) {
        Promise.resolve()
          .then(() => fn(request.data))
          .then(
            (answer) => request.end(answer),
            (err) => request.error(err),
          );
      }
    })();
  }

  // Subscribes (options: data, waitForAuth) and returns the list the channel's publications
  // are pushed to.
  subscribe(channel, options = {}) {
    const messages = [];
    const iterable = this.socket.subscribe(channel, options);
    (async () => {
      for await (const data of iterable) {
        messages.push(data);
      }
    })();
    return messages;
  }

  unsubscribe(channel) {
    this.socket.unsubscribe(channel);
  }

  // 'subscribed', 'pending' or 'unsubscribed'.
  channelState(channel) {
    return this.socket.getChannelState(channel);
  }

  invokePublish(channel, data) {
    return this.socket.invokePublish(channel, data);
  }

  transmitPublish(channel, data) {
    this.socket.transmitPublish(channel, data);
  }

  // Resolves with the auth status {isAuthenticated, authError}, rejects with the error reply.
  authenticate(signedToken) {
    return this.socket.authenticate(signedToken);
  }

  deauthenticate() {
    return this.socket.deauthenticate();
  }

  close() {
    const s = this.socket;
    s.disconnect();
    s.closeAllListeners();
    s.closeAllReceivers();
    s.closeAllProcedures();
    s.closeAllChannels();
  }
}

// socketcluster-client 14.3.2: protocol v1 (pings `#1`/`#2`), emit/on API.
class V14Client extends BaseClient {
  constructor(url, options = {}) {
    super();
    this.kind = 'v14';
    // multiplex:false gives a fresh socket even when another test uses the same URL.
    const merged = {
      ...urlOptions(url),
      ...COMMON_OPTIONS,
      multiplex: false,
      authEngine: new MemoryAuthEngine(),
      ...options,
    };
    this.autoReconnect = merged.autoReconnect;
    this.socket = sc14.create(merged);
    const s = this.socket;
    recordFrames(s.transport && s.transport.socket, this.inbound, this.outbound);
    this.connectingCount = 1;
    s.on('connecting', () => {
      this.connectingCount += 1;
      // The new transport is created right after this event is emitted.
      queueMicrotask(() => recordFrames(s.transport && s.transport.socket, this.inbound, this.outbound));
    });
    s.on('connect', (status) => this.connects.push(status));
    s.on('close', (code, reason) => this.closes.push({ code, reason }));
    s.on('error', (error) => this.errors.push(error));
    // v14 passes positional arguments; normalised to the v20 shapes.
    s.on('subscribe', (channel) => this.log.push({ event: 'subscribe', channel }));
    s.on('subscribeFail', (error, channel) => this.log.push({ event: 'subscribeFail', channel, error }));
    s.on('unsubscribe', (channel) => this.log.push({ event: 'unsubscribe', channel }));
    s.on('kickOut', (message, channel) => this.log.push({ event: 'kickOut', channel, message }));
    s.on('authenticate', (signedAuthToken) => this.log.push({ event: 'authenticate', signedAuthToken }));
    s.on('deauthenticate', () => this.log.push({ event: 'deauthenticate' }));
    s.on('removeAuthToken', () => this.log.push({ event: 'removeAuthToken' }));
  }

  _listen(name, list) {
    this.socket.on(name, (data) => list.push(data));
  }

  get id() {
    return this.socket.id;
  }

  get state() {
    return this.socket.state;
  }

  get pendingReconnect() {
    return this.socket.pendingReconnect;
  }

  // emit with a callback is an invoke (the frame gets a cid). `options.ackTimeout` is not
  // per-call in v14; create the client with the ackTimeout you need.
  invoke(event, data) {
    return new Promise((resolve, reject) => {
      this.socket.emit(event, data, (err, answer) => (err ? reject(err) : resolve(answer)));
    });
  }

  // emit without a callback is a transmit (no cid).
  transmit(event, data) {
    this.socket.emit(event, data);
  }

  procedure(name, fn) {
    this.socket.on(name, (data, respond) => {
      Promise.resolve()
        .then(() => fn(data))
        .then(
          (answer) => respond(null, answer),
          (err) => respond(err),
        );
    });
  }

  subscribe(channel, options = {}) {
    const messages = [];
    this.socket.subscribe(channel, options).watch((data) => messages.push(data));
    return messages;
  }

  unsubscribe(channel) {
    this.socket.unsubscribe(channel);
  }

  channelState(channel) {
    const entry = this.socket.channels[channel];
    return entry ? entry.state : 'unsubscribed';
  }

  // publish with a callback is an invoke; v14 has no separate name for it.
  invokePublish(channel, data) {
    return new Promise((resolve, reject) => {
      this.socket.publish(channel, data, (err, answer) => (err ? reject(err) : resolve(answer)));
    });
  }

  // publish without a callback is a transmit.
  transmitPublish(channel, data) {
    this.socket.publish(channel, data);
  }

  authenticate(signedToken) {
    return new Promise((resolve, reject) => {
      this.socket.authenticate(signedToken, (err, status) => (err ? reject(err) : resolve(status)));
    });
  }

  deauthenticate() {
    return new Promise((resolve, reject) => {
      this.socket.deauthenticate((err) => (err ? reject(err) : resolve()));
    });
  }

  close() {
    // destroy() disconnects and forgets the socket in the client factory.
    this.socket.destroy();
    this.socket.off();
  }
}

const CLIENTS = { v20: V20Client, v14: V14Client };

// A raw WebSocket that records every frame and the close, for exact-frame tests.
class RawClient {
  constructor(url) {
    this.frames = [];
    this.close = null;
    this.ws = new WebSocket(url);
    this.ws.on('message', (data, isBinary) => {
      this.frames.push(isBinary ? Buffer.from(data) : data.toString());
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

  send(text) {
    this.ws.send(text);
  }

  // Parsed JSON packets received so far (pings skipped, batches flattened).
  packets() {
    const packets = [];
    for (const frame of this.frames) {
      if (typeof frame !== 'string' || !/^\s*[{[]/.test(frame)) {
        continue;
      }
      const parsed = JSON.parse(frame);
      packets.push(...(Array.isArray(parsed) ? parsed : [parsed]));
    }
    return packets;
  }

  async handshake(cid = 1) {
    await this.opened;
    this.send(JSON.stringify({ event: '#handshake', data: { authToken: null }, cid }));
    return waitFor(() => this.packets().find((p) => p.rid === cid), 3000, 'handshake reply');
  }

  async closed(timeoutMs = 4000) {
    return waitFor(() => this.close, timeoutMs, 'close frame');
  }

  // Sends `packet` as JSON and, when it has a cid, waits for the packet answering it.
  async call(packet, timeoutMs = 3000) {
    this.send(JSON.stringify(packet));
    if (packet.cid == null) {
      return undefined;
    }
    return waitFor(
      () => this.packets().find((p) => p.rid === packet.cid),
      timeoutMs,
      `reply to ${JSON.stringify(packet)} (frames: ${JSON.stringify(this.frames)})`,
    );
  }

  terminate() {
    this.ws.terminate();
  }
}

module.exports = { CLIENTS, V20Client, V14Client, RawClient, MemoryAuthEngine, waitFor, sleep, urlOptions };
