// The protobuf contract of the codec tests, shared by the client side and reference-server.js:
// the application's .proto texts and the events registered after socketcluster-api's #api, in
// order (sockyard/tests/compat.rs registers the same list on Sockyard's protobuf endpoint).

'use strict';

const fs = require('node:fs');
const path = require('node:path');
const { ScApi } = require('../lib/scapi');

const APP_PROTO = fs.readFileSync(path.join(__dirname, 'app.proto'), 'utf8');
const EVENTS_PROTO = fs.readFileSync(path.join(__dirname, 'events.proto'), 'utf8');

// [event, request type, response type]: ids 10/11, 12/13 and 14 after #api's 8/9.
const EVENTS = [
  ['echo', '.compat.EchoRequest', '.compat.EchoResponse'],
  ['pushToMe', '.compat.PushRequest', '.compat.PushResponse'],
  ['serverEvent', '.compat.ServerEvent', undefined],
];

// A fresh codec (with its own request/response bookkeeping) and socketcluster-api helper.
function protobufApi() {
  const api = new ScApi([APP_PROTO, EVENTS_PROTO]);
  for (const [event, request, response] of EVENTS) {
    api.addEvent(event, request, response);
  }
  return api;
}

module.exports = { APP_PROTO, EVENTS_PROTO, EVENTS, protobufApi };
