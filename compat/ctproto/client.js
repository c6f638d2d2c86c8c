// A stand-in for the original CTProto client (codex-team/ctproto 0.0.13, src/client/client.ts),
// whose npm package is not available: it reproduces that client's wire behaviour as described in
// shared/reference/ctproto-sockful.md (Table A, §1.4 and §1.7), so the compatibility suite can
// drive Sockyard's `ctproto` endpoints the way existing CTProto applications do.
//
// Behaviour kept from the original, on purpose, even where it is odd:
// - the socket is opened on construction; on open the client sends `authorize` with
//   `authRequestPayload` through the ordinary `send` path, waits for its response, calls
//   `onAuth(authData)`, then flushes the messages queued while the socket was not open, each with
//   a NEW messageId and its original callback;
// - `send(type, payload)` returns a Promise of the response's `payload`. It transmits at once
//   while the socket is OPEN, even before the authorize response has arrived. Otherwise it
//   queues, and on a CLOSED socket it also starts a reconnect;
// - every incoming frame is parsed; a frame with a `type` key goes to `onMessage(wholeMessage)`
//   (pushes and `type:"error"` frames alike), and independently a frame whose `messageId`
//   matches a request resolves that request with the frame's `payload`. Requests are never
//   removed from the list and the promise never rejects (no timeout);
// - message ids are 10 characters of [A-Za-z0-9_-] (nanoid(10)); messages are serialised with
//   JSON.stringify in the key order type, payload, messageId;
// - reconnect happens only from `send` on a CLOSED socket: up to 5 attempts in total over the
//   client's life (the counter is never reset), 5 s apart after an attempt that failed with a
//   socket error. A refused authorization (close 1008) neither resolves nor fails an attempt.
//
// Test hooks, not part of the original's API: `onSocket(ws)` is called with every WebSocket the
// client creates (before any of its events), and `WebSocket` selects the implementation (the
// `ws` package by default; the original uses the browser global).

'use strict';

const crypto = require('node:crypto');
const WebSocket = require('ws');

const ID_LENGTH = 10;
const ID_ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-';
const MAX_RECONNECT_ATTEMPTS = 5;
const RECONNECT_DELAY_MS = 5000;
const LOG_PREFIX = 'CTProto 💖';

// A fresh message id: 10 random characters of the 64-character URL-safe alphabet.
function createMessageId() {
  const bytes = crypto.randomBytes(ID_LENGTH);
  let id = '';
  for (const byte of bytes) {
    id += ID_ALPHABET[byte & 63];
  }
  return id;
}

// The serialised new-message envelope: {type, payload, messageId}.
function createMessage(type, payload) {
  return JSON.stringify({ type, payload, messageId: createMessageId() });
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

class CTProtoClient {
  // options: {apiUrl, authRequestPayload, onAuth(authData), onMessage(message), disableLogs,
  //           onSocket(ws), WebSocket}
  constructor(options) {
    this.options = options;
    this.WebSocket = options.WebSocket || WebSocket;
    // {messageId, cb}: every request sent, answered or not.
    this.requests = [];
    // {type, payload, cb}: messages waiting for an open, authorized socket.
    this.queue = [];
    this.reconnectAttempts = 0;
    this.reconnecting = null;
    this.socket = null;
    this.init().catch((err) => this.log('Initialization failed', err && err.message));
  }

  // Opens a socket and authorizes on it. Resolves once the authorize response has arrived and
  // the queue has been flushed; rejects on a socket `error` event.
  init() {
    return new Promise((resolve, reject) => {
      const socket = new this.WebSocket(this.options.apiUrl);
      this.socket = socket;
      if (this.options.onSocket) {
        this.options.onSocket(socket);
      }
      socket.onopen = async () => {
        const authData = await this.send('authorize', this.options.authRequestPayload);
        if (this.options.onAuth) {
          await this.options.onAuth(authData);
        }
        const queued = this.queue;
        this.queue = [];
        for (const message of queued) {
          this.transmit(message.type, message.payload, message.cb);
        }
        resolve();
      };
      socket.onmessage = (event) => this.onSocketMessage(event);
      socket.onclose = () => this.log('Connection closed');
      socket.onerror = (event) => {
        this.log('Error', event && event.message);
        reject(new Error((event && event.message) || 'WebSocket error'));
      };
    });
  }

  onSocketMessage(event) {
    const message = JSON.parse(typeof event.data === 'string' ? event.data : Buffer.from(event.data).toString());
    if (message !== null && typeof message === 'object' && 'type' in message) {
      if (this.options.onMessage) {
        this.options.onMessage(message);
      }
    }
    const messageId = message === null ? undefined : message.messageId;
    const request = this.requests.find((r) => r.messageId === messageId);
    if (request) {
      request.cb(message.payload);
    }
  }

  // Sends a request; the promise resolves with the payload of the frame carrying its id.
  send(type, payload) {
    return new Promise((resolve) => {
      const socket = this.socket;
      if (socket && socket.readyState === this.WebSocket.OPEN) {
        this.transmit(type, payload, resolve);
        return;
      }
      this.queue.push({ type, payload, cb: resolve });
      if (socket && socket.readyState === this.WebSocket.CLOSED) {
        this.reconnect();
      }
    });
  }

  transmit(type, payload, cb) {
    const message = createMessage(type, payload);
    this.requests.push({ messageId: JSON.parse(message).messageId, cb });
    this.socket.send(message);
  }

  reconnect() {
    if (this.reconnecting) {
      return this.reconnecting;
    }
    this.reconnecting = (async () => {
      while (this.reconnectAttempts < MAX_RECONNECT_ATTEMPTS) {
        this.reconnectAttempts += 1;
        this.log(`Reconnecting, attempt ${this.reconnectAttempts}`);
        try {
          await this.init();
          return;
        } catch {
          await sleep(RECONNECT_DELAY_MS);
        }
      }
      this.log('Reconnection attempts exhausted');
    })().finally(() => {
      this.reconnecting = null;
    });
    return this.reconnecting;
  }

  // Not in the original, which never closes its socket: lets tests clean up.
  close() {
    if (this.socket) {
      this.socket.onclose = null;
      this.socket.onerror = null;
      this.socket.terminate ? this.socket.terminate() : this.socket.close();
    }
  }

  log(text, context) {
    if (this.options.disableLogs) {
      return;
    }
    if (context === undefined) {
      console.log(`${LOG_PREFIX} ${text}`);
    } else {
      console.log(`${LOG_PREFIX} ${text}`, context);
    }
  }
}

module.exports = { CTProtoClient, createMessageId, createMessage, ID_ALPHABET, ID_LENGTH };
