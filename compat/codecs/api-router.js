// The server side of socketcluster-api for reference-server.js (`--codec protobuf`): an `#api`
// procedure with socketcluster-api HEAD's router semantics, serving the routes of Sockyard's demo
// (GET /resource, GET /fail), so the codec tests can run their #api checks against the official
// socketcluster-server too.
//
// Semantics kept from socketcluster-api (SocketCluster notes §8): a route matches on exact
// method and full path, first registered wins; the request body is decoded only when `dataType`
// is set (otherwise the handler gets {}); a handler returns {dataType, responseData}; every
// outcome is a successful SocketCluster reply {dataType, buffer, isError}; no route gives
// ApiError {code: 404, reason: 'Not Found', description}; and any error a handler throws becomes
// the generic ApiError 500 (the original's typed-error branch is dead code). Sockyard answers
// a typed error instead, on purpose; the tests check whichever the server under test does.

'use strict';

const { API_ERROR_TYPE } = require('../lib/scapi');

class ApiRouter {
  constructor(api) {
    this.api = api; // a ScApi: its protobuf types encode and decode the buffers
    this.routes = [];
  }

  use(method, path, handler) {
    if (!['get', 'post', 'put', 'delete'].includes(method)) {
      throw new Error(`unsupported method ${method}`);
    }
    this.routes.push({ method, path: path.startsWith('/') ? path : `/${path}`, handler });
    return this;
  }

  get(path, handler) {
    return this.use('get', path, handler);
  }

  apiError(code, reason, description) {
    return {
      dataType: API_ERROR_TYPE,
      buffer: this.api.encodeMessage(API_ERROR_TYPE, { code, reason, description }),
      isError: true,
    };
  }

  // The reply data for one `#api` request.
  async handle(socket, data) {
    const { resource, method, dataType, buffer } = data || {};
    const route = this.routes.find((r) => r.method === method && r.path === resource);
    if (!route) {
      return this.apiError(404, 'Not Found', `Requested resource '${method} ${resource}' has no handler defined.`);
    }
    try {
      const plain = dataType ? this.api.decodeMessage(dataType, buffer) : {};
      const result = await route.handler(plain, socket);
      return {
        dataType: result.dataType,
        buffer: this.api.encodeMessage(result.dataType, result.responseData),
        isError: false,
      };
    } catch {
      return this.apiError(500, 'Internal Server Error', 'The resource threw an unexpected error.');
    }
  }

  // Serves `#api` on one socket until it closes.
  async serve(socket) {
    for await (const request of socket.procedure('#api')) {
      this.handle(socket, request.data).then((reply) => request.end(reply));
    }
  }
}

// The demo's routes: GET /resource ({a, b} → {c: "a b"}) and GET /fail (always throws).
function demoRouter(api) {
  return new ApiRouter(api)
    .get('/resource', async ({ a = '', b = '' }) => ({
      dataType: '.app.ResponseMessage',
      responseData: { c: `${a} ${b}`.trim() },
    }))
    .get('/fail', async () => {
      // What socketcluster-api's README shows; the original router still answers a generic 500.
      throw { dataType: '.app.SomeError', data: { code: 500, message: 'this route always fails' } };
    });
}

module.exports = { ApiRouter, demoRouter };
