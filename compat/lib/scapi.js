// A socketcluster-api client for the codec compatibility tests (socketcluster-api is not on npm):
// it builds the sc-codec-protobuf codec with socketcluster-api's own message types and `#api`
// event, and gives a socketcluster-client 20 socket get/post/put/delete methods that travel as
// `#api` invokes, as described for socketcluster-api HEAD in the SocketCluster notes (§8).
//
//   const api = new ScApi([appProtoText]);
//   const socket = sc20.create({ ..., codecEngine: api.codec });
//   api.defineEndpoints(socket);
//   const reply = await socket.get('/resource', '.app.RequestMessage', { a: 'x', b: 'y' });
//
// A call encodes the plain object as `dataType` into `buffer`, invokes `#api` with
// {resource, method, dataType, buffer}, decodes the reply's `buffer` as the reply's `dataType`,
// and resolves with it, or rejects with an ApiCallError carrying it when the reply has
// `isError`. A SocketCluster-level failure (timeout, closed socket) rejects as it is.

'use strict';

const createCodec = require('sc-codec-protobuf');

// socketcluster-api's built-in types (package socketclusterapi). ApiCall numbers its fields
// differently from sc-codec-protobuf's built-ins: cid is field 1.
const API_PROTO = `
syntax = "proto3";
package socketclusterapi;

message ApiCall {
  uint32 cid = 1;
  string event = 2;
  message Data {
    string resource = 1;
    string method = 2;
    string dataType = 3;
    bytes buffer = 4;
  }
  Data data = 3;
}

message ApiResponse {
  uint32 rid = 1;
  message Data {
    bool isError = 1;
    string dataType = 2;
    bytes buffer = 3;
  }
  Data data = 2;
}

message ApiError {
  uint32 code = 1;
  string reason = 2;
  string description = 3;
}
`;

const API_EVENT = '#api';
const API_ERROR_TYPE = '.socketclusterapi.ApiError';
const METHODS = ['get', 'post', 'put', 'delete'];

// A reply marked `isError`: `dataType` names its message type and `data` is the decoded message.
class ApiCallError extends Error {
  constructor(dataType, data) {
    super(`${dataType}: ${JSON.stringify(data)}`);
    this.name = 'ApiCallError';
    this.dataType = dataType;
    this.data = data;
  }
}

class ScApi {
  // `protos`: the application's .proto texts. The codec registers the built-in events
  // (ids 0-7), then `#api` (8/9).
  constructor(protos = []) {
    this.codec = createCodec(...protos, API_PROTO);
    this.codec.messageTypes.addEvent(API_EVENT, '.socketclusterapi.ApiCall', '.socketclusterapi.ApiResponse');
    this.pbRoot = this.codec.pbRoot;
  }

  // Registers a further event after `#api` (the next free ids), as an application would.
  addEvent(event, request, response) {
    this.codec.messageTypes.addEvent(event, request, response);
  }

  type(dataType) {
    return this.pbRoot.lookupType(dataType);
  }

  // `plain` as protobuf bytes of type `dataType` (fields the type lacks are dropped).
  encodeMessage(dataType, plain) {
    const type = this.type(dataType);
    return type.encode(type.create(plain)).finish();
  }

  // Protobuf bytes of type `dataType` as a plain object (fields at their default are left out).
  decodeMessage(dataType, buffer) {
    const type = this.type(dataType);
    return type.toObject(type.decode(buffer || new Uint8Array(0)));
  }

  // The `#api` request data for one call.
  request(method, resource, dataType, plain) {
    const data = { resource, method };
    if (dataType) {
      data.dataType = dataType;
      data.buffer = this.encodeMessage(dataType, plain || {});
    }
    return data;
  }

  // Decodes an `#api` reply {isError, dataType, buffer}: resolves the message, or throws an
  // ApiCallError for an error reply.
  response(reply) {
    const body = reply || {};
    const data = body.dataType ? this.decodeMessage(body.dataType, body.buffer) : {};
    if (body.isError) {
      throw new ApiCallError(body.dataType, data);
    }
    return data;
  }

  // One call through a v20 socket (`invoke`); `options` are the invoke's ({ackTimeout}).
  async call(socket, method, resource, dataType, plain, options) {
    const reply = await socket.invoke(API_EVENT, this.request(method, resource, dataType, plain), options);
    return this.response(reply);
  }

  // Adds get/post/put/delete(resource, [dataType, plain, options]) to a v20 socket.
  defineEndpoints(socket) {
    for (const method of METHODS) {
      socket[method] = (resource, dataType, plain, options) => this.call(socket, method, resource, dataType, plain, options);
    }
    return socket;
  }
}

module.exports = { ScApi, ApiCallError, API_PROTO, API_EVENT, API_ERROR_TYPE, METHODS };
